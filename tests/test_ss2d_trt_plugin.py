"""The TensorRT SS2DScan plugin (remamber::SS2DScan v1, in libremamber_trt_plugin.so) in TensorRT-RTX, on CPU.

What runs here: the library's getCreators lists the SS2DScan creator (namespace "remamber", version "1")
beside SelectiveScan; hand-built ONNX graphs (onnx.helper) with SS2DScan nodes for both layouts, every
attribute written (layout, delta_softplus, has_D, has_delta_bias, plugin_namespace, plugin_version),
fp32 and fp16 activations, with and without the optional inputs, dynamic batch / H / W through an
optimization profile, pass onnx.checker with the op's schema (export/ss2d_onnx.py), parse and build
into serialized engines; malformed nodes and bad fields are refused and the captured log carries the
plugin's own message. Engines are never deserialized or run: that needs a GPU (the kernel's maths is
checked on the CPU by plugins/tests/test_ss2d_kernel_emulation.cpp).

TensorRT-RTX work runs in a subprocess (this file run as a script) because a broken TensorRT-RTX setup
aborts the process (scripts/fix_trt_rtx.sh) and must not take pytest down with it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

pytestmark = pytest.mark.native

PLUGIN_NAMESPACE = "remamber"
PLUGIN_VERSION = "1"
NODE_NAME = "ss2d0"
ERROR_PREFIX = f"remamber::SS2DScan node '{NODE_NAME}': "


# ---- graph construction (shared by the tests and the subprocess) ----------------------------------

def make_model(dtype="fp32", has_d=True, has_bias=True, *, layout=0, dim=4, nstate=1, static=False, u_rank=4,
               a_rows=None, bc_dirs=4, a_type=None, attrs=None, drop_attrs=()):
    """One SS2DScan node over spatial inputs (contract: plugins/ss2dScanPlugin/README.md).

    Dynamic axes: batch, and H / W (cross) or W (bidi, H = 1), unless ``static``.
    """
    from onnx import TensorProto, helper

    elem = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}[dtype]
    a_type = TensorProto.FLOAT if a_type is None else a_type
    if static:
        batch, height, width = 2, (1 if layout == 1 else 6), 10
    else:
        batch, height, width = "batch", (1 if layout == 1 else "H"), "W"
    u_shape = [batch, dim, height, width] if u_rank == 4 else [batch, dim, width]
    k = 4
    a_rows = k * dim if a_rows is None else a_rows
    inputs = [
        helper.make_tensor_value_info("u", elem, u_shape),
        helper.make_tensor_value_info("delta", elem, [batch, k * dim, height, width]),
        helper.make_tensor_value_info("A", a_type, [a_rows, nstate]),
        helper.make_tensor_value_info("B", elem, [batch, bc_dirs, nstate, height, width]),
        helper.make_tensor_value_info("C", elem, [batch, bc_dirs, nstate, height, width]),
    ]
    names = ["u", "delta", "A", "B", "C"] + (["D"] if has_d else []) + (["delta_bias"] if has_bias else [])
    if has_d:
        inputs.append(helper.make_tensor_value_info("D", TensorProto.FLOAT, [k * dim]))
    if has_bias:
        inputs.append(helper.make_tensor_value_info("delta_bias", TensorProto.FLOAT, [k * dim]))
    node_attrs = dict(layout=layout, delta_softplus=1, has_D=int(has_d), has_delta_bias=int(has_bias),
                      plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION)
    node_attrs.update(attrs or {})
    for name in drop_attrs:
        node_attrs.pop(name)
    node = helper.make_node("SS2DScan", names, ["y"], domain="remamber", name=NODE_NAME, **node_attrs)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, u_shape)
    graph = helper.make_graph([node], "ss2d", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("remamber", 1)])
    return model


# ---- subprocess side --------------------------------------------------------------------------------

def _recording_logger(trt):
    """A TensorRT-RTX logger that keeps every message, so results carry the builder's log."""

    class Logger(trt.ILogger):
        def __init__(self):
            super().__init__()
            self.lines = []

        def log(self, severity, msg):
            self.lines.append(f"[{severity.name}] {msg}")

    return Logger()


def _build_all(plugin_path: str, model_paths: list[str]) -> list[dict]:
    import tensorrt_rtx as trt

    logger = _recording_logger(trt)
    os.environ["REMAMBER_TRT_PLUGIN_LIB"] = plugin_path
    from remamber.native import load_trt_plugin

    registry = load_trt_plugin(trt)  # raises NativeLibraryError if TensorRT refuses the library
    creators = {
        name: registry.get_creator(name, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None
        for name in ("SS2DScan", "SelectiveScan")
    }
    results = []
    for path in model_paths:
        logger.lines = []
        record = {"model": path, "creators": creators, "parsed": False, "engine_bytes": 0}
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        with open(path, "rb") as f:
            record["parsed"] = bool(parser.parse(f.read()))
        record["parser_errors"] = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        if record["parsed"]:
            config = builder.create_builder_config()
            profile = builder.create_optimization_profile()
            # Dynamic axes: batch 1..2 (opt 1), H 1..64 (opt 32), W 1..256 (opt 32); the bidi layout's
            # H is the static 1. Axis roles by position: 0 batch, last W, second to last H.
            for i in range(network.num_inputs):
                tensor = network.get_input(i)
                shape = list(tensor.shape)
                lo, opt, hi = [], [], []
                for axis, d in enumerate(shape):
                    if d != -1:
                        lo.append(d); opt.append(d); hi.append(d)
                    elif axis == 0:
                        lo.append(1); opt.append(1); hi.append(2)
                    elif axis == len(shape) - 1:
                        lo.append(1); opt.append(32); hi.append(256)
                    else:
                        lo.append(1); opt.append(32); hi.append(64)
                profile.set_shape(tensor.name, lo, opt, hi)
            config.add_optimization_profile(profile)
            engine = builder.build_serialized_network(network, config)
            record["engine_bytes"] = 0 if engine is None else int(engine.nbytes)
            record["layers"] = [network.get_layer(i).type.name for i in range(network.num_layers)]
        record["log"] = logger.lines
        results.append(record)
    return results


def _create_plugin_direct(plugin_path: str, fields: dict) -> dict:
    import numpy as np
    import tensorrt_rtx as trt

    logger = _recording_logger(trt)
    trt.Builder(logger)  # makes `logger` the logger the plugin library finds
    registry = trt.get_plugin_registry()
    registry.load_library(plugin_path)
    creator = registry.get_creator("SS2DScan", PLUGIN_VERSION, PLUGIN_NAMESPACE)
    record = {"found_creator": creator is not None, "created": False, "log": []}
    if creator is not None:
        record["field_names"] = sorted(f.name for f in creator.field_names)
        fc = trt.PluginFieldCollection(
            [trt.PluginField(k, np.array([v], dtype=np.int32), trt.PluginFieldType.INT32) for k, v in fields.items()]
        )
        plugin = creator.create_plugin(NODE_NAME, fc, trt.TensorRTPhase.BUILD)
        record["created"] = plugin is not None
    record["log"] = logger.lines
    return record


if __name__ == "__main__":  # subprocess entry: python test_ss2d_trt_plugin.py <mode> <plugin> <json args>
    mode, plugin, arg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    out = _build_all(plugin, arg) if mode == "build" else _create_plugin_direct(plugin, arg)
    print("RESULT " + json.dumps(out))
    sys.exit(0)


# ---- pytest side ----------------------------------------------------------------------------------

def _trt_rtx_ready() -> str:
    """Plugin library path, or skip with the reason TensorRT-RTX cannot be exercised here."""
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_rtx_libs")
    if spec is None or importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13==1.7.1.116)")
    libdir = pathlib.Path(list(spec.submodule_search_locations)[0])
    if not (libdir / "libtensorrt_rtx.so").exists():
        pytest.skip(
            f"{libdir}/libtensorrt_rtx.so is missing: TensorRT-RTX's ONNX parser would abort the process; "
            "run `bash scripts/fix_trt_rtx.sh`"
        )
    from remamber import native
    from remamber.errors import NativeLibraryError

    try:
        return str(native.library_path("trt"))
    except NativeLibraryError as exc:
        pytest.skip(f"TensorRT plugin library not built: {exc}")


def _run(mode: str, plugin: str, arg):
    proc = subprocess.run(
        [sys.executable, __file__, mode, plugin, json.dumps(arg)],
        capture_output=True, text=True, timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"TensorRT-RTX subprocess failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    # TensorRT-RTX 1.7's logger finder yields no logger, so the plugin's messages land on stderr.
    return json.loads(lines[-1][len("RESULT "):]), proc.stderr


@pytest.fixture(scope="module")
def plugin_path():
    return _trt_rtx_ready()


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="remamber_ss2d_trt_test_")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _write(workdir, name, model) -> str:
    path = workdir / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


VALID = {
    f"{dtype}-{layout_name}-D{int(d)}-bias{int(b)}": dict(dtype=dtype, layout=layout, has_d=d, has_bias=b)
    for dtype in ("fp32", "fp16")
    for layout_name, layout in (("cross", 0), ("bidi", 1))
    for d, b in ((True, True), (False, False), (False, True))
}
VALID["fp32-cross-N16"] = dict(nstate=16)
VALID["fp16-bidi-N3-softplus0"] = dict(dtype="fp16", layout=1, nstate=3, attrs={"delta_softplus": 0})
VALID["fp32-cross-D-only"] = dict(has_d=True, has_bias=False)
VALID["fp32-cross-static"] = dict(static=True)


def test_hand_built_graphs_pass_the_onnx_checker():
    """The graphs below are valid ONNX for SS2DScan's schema (export/ss2d_onnx.py), so the plugin is tested
    on the node form the exporter writes, not on something only TensorRT accepts."""
    import onnx

    from remamber.export import ss2d_onnx

    ss2d_onnx.register_schema()
    for name, kw in VALID.items():
        model = make_model(**kw)
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        y = [v for v in inferred.graph.output if v.name == "y"][0]
        assert y.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, name


@pytest.fixture(scope="module")
def valid_results(plugin_path, workdir):
    paths = [_write(workdir, name, make_model(**kw)) for name, kw in VALID.items()]
    results, _ = _run("build", plugin_path, paths)
    return dict(zip(VALID, results))


def test_library_lists_both_creators(valid_results):
    creators = next(iter(valid_results.values()))["creators"]
    assert creators == {"SS2DScan": True, "SelectiveScan": True}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_graph_parses_and_builds(valid_results, name):
    r = valid_results[name]
    assert r["parsed"], f"parse failed: {r['parser_errors']}\n" + "\n".join(r["log"][-20:])
    assert r["layers"] == ["PLUGIN_V3"], r["layers"]
    assert r["engine_bytes"] > 0, "no serialized engine:\n" + "\n".join(r["log"][-20:])


MALFORMED = {
    "u-rank-3": (dict(u_rank=3), "input u must have rank 4"),
    "A-rows-not-4D": (dict(a_rows=6), "input A (6, 1) must be (4*D, N) with 4*D = 4 * u.shape[1] = 16"),
    "B-three-directions": (dict(bc_dirs=3), "input B"),
    "N-17": (dict(nstate=17), "state size N = 17"),
    "A-not-float32": (dict(a_type=10), "input A must be float32, got float16"),  # 10 = TensorProto.FLOAT16
    "flags-contradict-inputs": (dict(has_bias=False, attrs={"has_delta_bias": 1}), "do not match the node's 6 inputs"),
    "bad-layout": (dict(attrs={"layout": 2}), "attribute layout must be 0 (cross) or 1 (bidi), got 2"),
    "bad-delta-softplus": (dict(attrs={"delta_softplus": 5}), "attribute delta_softplus must be 0 or 1, got 5"),
}


@pytest.fixture(scope="module")
def malformed_results(plugin_path, workdir):
    # One subprocess per model, so each one's stderr is its own.
    out = {}
    for name, (kw, _) in MALFORMED.items():
        (result,), stderr = _run("build", plugin_path, [_write(workdir, "bad-" + name, make_model(static=True, **kw))])
        result["stderr"] = stderr
        out[name] = result
    return out


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_node_refused_with_plugin_message(malformed_results, name):
    r = malformed_results[name]
    expected = MALFORMED[name][1]
    assert not (r["parsed"] and r["engine_bytes"] > 0), f"{name}: an engine was built from a malformed node"
    log = "\n".join(r["log"] + r["parser_errors"] + [r["stderr"]])
    assert ERROR_PREFIX in log and expected in log, f"{name}: plugin message missing from the log:\n{log[-3000:]}"


def test_fields_declared_and_unknown_field_refused(plugin_path):
    r, stderr = _run("create", plugin_path, {"layout": 0, "foo": 1})
    assert r["found_creator"] and not r["created"]
    assert r["field_names"] == ["delta_softplus", "has_D", "has_delta_bias", "layout"]
    assert any(ERROR_PREFIX + "unknown attribute 'foo'" in line for line in r["log"] + [stderr]), (r["log"], stderr)
    ok, _ = _run("create", plugin_path, {"layout": 1, "delta_softplus": 0, "has_D": 0, "has_delta_bias": 1})
    assert ok["created"], ok["log"]
    bad, stderr = _run("create", plugin_path, {"layout": -1})
    assert not bad["created"]
    assert "attribute layout must be 0 (cross) or 1 (bidi), got -1" in "\n".join(bad["log"] + [stderr])
