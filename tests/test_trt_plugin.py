"""The TensorRT plugin libremamber_trt_plugin.so in TensorRT-RTX, on CPU (no GPU needed to build).

What runs here: the library loads into TensorRT-RTX's plugin registry; ONNX graphs holding one
remamber::SelectiveScan node (every optional-input combination, fp32 and fp16 activations, dynamic
batch and L through an optimization profile) parse and build into serialized engines; malformed
nodes are refused at build time and the captured TensorRT log carries the plugin's own message;
`nm -D --defined-only` shows only getCreators and setLoggerFinder.
Engines are never deserialized or run: that needs a GPU.

TensorRT-RTX work runs in a subprocess (this file run as a script), because a broken TRT-RTX setup
aborts the whole process (see scripts/fix_trt_rtx.sh) and must not take pytest down with it.
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
ERROR_PREFIX = "remamber::SelectiveScan node 'scan0': "


# ---- graph construction (shared by the tests and the subprocess) ----------------------------------

def make_model(dtype="fp32", has_d=True, has_bias=True, *, channels=8, groups=4, nstate=1, a_type=None,
               u_rank=3, attrs=None, explicit_flags=True, empty_names=False, static=False):
    from onnx import TensorProto, helper

    elem = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}[dtype]
    a_type = TensorProto.FLOAT if a_type is None else a_type
    batch, length = (2, 64) if static else ("batch", "L")
    u_shape = [batch, channels, length] if u_rank == 3 else [channels, length]
    inputs = [
        helper.make_tensor_value_info("u", elem, u_shape),
        helper.make_tensor_value_info("delta", elem, u_shape),
        helper.make_tensor_value_info("A", a_type, [channels, nstate]),
        helper.make_tensor_value_info("B", elem, [batch, groups, nstate, length]),
        helper.make_tensor_value_info("C", elem, [batch, groups, nstate, length]),
    ]
    names = ["u", "delta", "A", "B", "C"]
    if empty_names:
        names += ["D" if has_d else "", "delta_bias" if has_bias else ""]
    else:
        names += (["D"] if has_d else []) + (["delta_bias"] if has_bias else [])
    if has_d:
        inputs.append(helper.make_tensor_value_info("D", TensorProto.FLOAT, [channels]))
    if has_bias:
        inputs.append(helper.make_tensor_value_info("delta_bias", TensorProto.FLOAT, [channels]))
    node_attrs = {"delta_softplus": 1}
    if explicit_flags:
        node_attrs.update(has_D=int(has_d), has_delta_bias=int(has_bias))
    node_attrs.update(attrs or {})
    node = helper.make_node("SelectiveScan", names, ["y"], domain="remamber", name="scan0", **node_attrs)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, u_shape)
    graph = helper.make_graph([node], "scan", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("remamber", 1)])
    return model.SerializeToString()


# ---- subprocess side --------------------------------------------------------------------------------

def _recording_logger(trt):
    """A TensorRT-RTX logger that keeps every message, so results can carry the builder's log."""

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
    handle = registry.get_creator("SelectiveScan", "1", PLUGIN_NAMESPACE)
    results = []
    for path in model_paths:
        logger.lines = []
        record = {"model": path, "loaded": handle is not None, "parsed": False, "engine_bytes": 0}  # creator registered
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        with open(path, "rb") as f:
            record["parsed"] = bool(parser.parse(f.read()))
        record["parser_errors"] = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        if record["parsed"]:
            config = builder.create_builder_config()
            profile = builder.create_optimization_profile()
            for i in range(network.num_inputs):
                tensor = network.get_input(i)
                shape = list(tensor.shape)
                # dynamic axes: batch 1..4 (opt 2), L 1..65,536 (opt 4,096)
                def pick(values):
                    return [values[0] if k == 0 else values[1] for k in range(len(shape))]
                lo, opt, hi = [], [], []
                for k, d in enumerate(shape):
                    if d != -1:
                        lo.append(d); opt.append(d); hi.append(d)
                    elif k == 0:
                        lo.append(1); opt.append(2); hi.append(4)
                    else:
                        lo.append(1); opt.append(4096); hi.append(65536)
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
    creator = registry.get_creator("SelectiveScan", "1", PLUGIN_NAMESPACE)
    def field(name, value):  # strings as TensorRT passes ONNX string attributes: kCHAR bytes
        if isinstance(value, str):
            return trt.PluginField(name, np.frombuffer(value.encode(), dtype=np.int8), trt.PluginFieldType.CHAR)
        return trt.PluginField(name, np.array([value], dtype=np.int32), trt.PluginFieldType.INT32)

    fc = trt.PluginFieldCollection([field(k, v) for k, v in fields.items()])
    plugin = creator.create_plugin("scan0", fc, trt.TensorRTPhase.BUILD)
    return {"created": plugin is not None, "found_creator": creator is not None, "log": logger.lines}


if __name__ == "__main__":  # subprocess entry: python test_trt_plugin.py <mode> <plugin> <json args>
    mode, plugin, arg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    out = _build_all(plugin, arg) if mode == "build" else _create_plugin_direct(plugin, arg)
    print("RESULT " + json.dumps(out))
    sys.exit(0)


# ---- pytest side ----------------------------------------------------------------------------------

def _trt_rtx_ready() -> str:
    """Plugin library path, or skip with the reason TensorRT-RTX cannot be exercised here."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("tensorrt_rtx_libs")
    except Exception:  # pragma: no cover
        spec = None
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


def _run(mode: str, plugin: str, arg) -> object:
    proc = subprocess.run(
        [sys.executable, __file__, mode, plugin, json.dumps(arg)],
        capture_output=True, text=True, timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"TensorRT-RTX subprocess failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    result = json.loads(lines[-1][len("RESULT "):])
    # The plugin logs through TensorRT's logger when the logger finder yields one; TensorRT-RTX 1.7's
    # yields none, so its messages land on stderr. Both count as the captured log.
    return result, proc.stderr


@pytest.fixture(scope="module")
def plugin_path():
    return _trt_rtx_ready()


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="remamber_trt_test_")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _write(workdir, name, data) -> str:
    path = workdir / f"{name}.onnx"
    path.write_bytes(data)
    return str(path)


VALID = {
    f"{dtype}-D{int(d)}-bias{int(b)}": dict(dtype=dtype, has_d=d, has_bias=b)
    for dtype in ("fp32", "fp16") for d in (True, False) for b in (True, False)
}
VALID["fp32-N16-G2"] = dict(nstate=16, groups=2)
VALID["fp16-N3-G8"] = dict(dtype="fp16", nstate=3, groups=8)
VALID["fp32-positional-no-flags"] = dict(explicit_flags=False)  # 7 inputs, no has_* attributes
VALID["fp32-D-only-no-flags"] = dict(has_bias=False, explicit_flags=False)  # 6th input = D by position
# the exporter's form: plugin_namespace / plugin_version, which TensorRT < 10.10 needs to find the plugin
VALID["fp16-plugin-lookup-attrs"] = dict(dtype="fp16", attrs={"plugin_namespace": "remamber", "plugin_version": "1"})


@pytest.fixture(scope="module")
def valid_results(plugin_path, workdir):
    paths = [_write(workdir, name, make_model(**kw)) for name, kw in VALID.items()]
    results, _ = _run("build", plugin_path, paths)
    return dict(zip(VALID, results))


@pytest.mark.parametrize("name", list(VALID))
def test_valid_graph_parses_and_builds(valid_results, name):
    r = valid_results[name]
    assert r["loaded"], "load_library returned None"
    assert r["parsed"], f"parse failed: {r['parser_errors']}\n" + "\n".join(r["log"][-20:])
    assert r["layers"] == ["PLUGIN_V3"]
    assert r["engine_bytes"] > 0, "no serialized engine:\n" + "\n".join(r["log"][-20:])


MALFORMED = {
    "wrong-rank": (dict(u_rank=2), "input u must have rank 3"),
    "G-not-dividing": (dict(groups=3), "group count G = 3 (B.shape[1]) must divide the channel count 8"),
    "N-17": (dict(nstate=17), "state size N = 17"),
    "A-not-float32": (dict(a_type=10), "input A must be float32, got float16"),  # 10 = TensorProto.FLOAT16
    "flags-contradict-inputs": (dict(has_bias=False, attrs={"has_delta_bias": 1}), "do not match the node's 6 inputs"),
    "bad-delta-softplus": (dict(attrs={"delta_softplus": 5}), "delta_softplus must be 0 or 1, got 5"),
}


@pytest.fixture(scope="module")
def malformed_results(plugin_path, workdir):
    # One subprocess per model, so each one's stderr is its own.
    out = {}
    for name, (kw, _) in MALFORMED.items():
        (result,), stderr = _run("build", plugin_path, [_write(workdir, "bad-" + name, make_model(**kw))])
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


def test_empty_name_optional_input_is_rejected_by_the_parser(plugin_path, workdir):
    """Documents why the node convention is 'compacted + has_* flags': TRT cannot take "" inputs."""
    path = _write(workdir, "empty-name", make_model(has_d=False, has_bias=True, empty_names=True))
    (r,), _ = _run("build", plugin_path, [path])
    assert not r["parsed"]


def test_unknown_field_refused_by_create_plugin(plugin_path):
    r, stderr = _run("create", plugin_path, {"delta_softplus": 1, "foo": 1})
    assert r["found_creator"] and not r["created"]
    assert any("unknown attribute 'foo'" in line for line in r["log"] + [stderr]), (r["log"], stderr)
    ok, _ = _run("create", plugin_path, {"delta_softplus": 1, "has_D": 1, "has_delta_bias": 1})
    assert ok["created"], ok["log"]


def test_parser_reads_plugin_version_attribute(plugin_path, workdir):
    """The ONNX parser itself consumes plugin_version: a node asking for version "2" finds no creator.

    (TensorRT-RTX, like TensorRT >= 10.10, falls back to the node's domain for the namespace, so a
    wrong plugin_namespace is not observable here; TensorRT 10.0-10.9 needs it to be right.)
    """
    path = _write(workdir, "version-2", make_model(attrs={"plugin_namespace": "remamber", "plugin_version": "2"}))
    (r,), _ = _run("build", plugin_path, [path])
    assert not r["parsed"]
    assert any("Plugin not found" in e for e in r["parser_errors"]), r["parser_errors"]


def test_create_plugin_accepts_lookup_attributes_naming_it(plugin_path):
    """A caller that forwards every node attribute (not the ONNX parser) may pass the lookup strings."""
    ok, _ = _run("create", plugin_path, {"delta_softplus": 1, "plugin_namespace": "remamber", "plugin_version": "1"})
    assert ok["created"], ok["log"]
    bad, stderr = _run("create", plugin_path, {"delta_softplus": 1, "plugin_namespace": "other"})
    assert bad["found_creator"] and not bad["created"]
    assert any("'plugin_namespace' must be the string \"remamber\"" in line for line in bad["log"] + [stderr])


def test_exports_only_entry_points(plugin_path):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run([nm, "-D", "--defined-only", plugin_path], capture_output=True, text=True, check=True).stdout
    symbols = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert symbols == ["getCreators", "setLoggerFinder"], symbols


def test_native_library_exports():
    """The ORT and CUDA libraries export only their C entry points (checked when built)."""
    from remamber import native
    from remamber.errors import NativeLibraryError

    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    expected = {
        "ort": ["RegisterCustomOps"],
        "cuda": sorted(["remamberSS2DScanForward", "remamberSS2DScanLastError", "remamberSS2DScanVersion",
                       "remamberSelectiveScanForward", "remamberSelectiveScanLastError", "remamberSelectiveScanVersion"]),
    }
    checked = 0
    for kind, names in expected.items():
        try:
            path = native.library_path(kind)
        except NativeLibraryError:
            continue
        out = subprocess.run([nm, "-D", "--defined-only", str(path)], capture_output=True, text=True, check=True).stdout
        assert sorted(line.split()[-1] for line in out.splitlines() if line.strip()) == names
        checked += 1
    if not checked:
        pytest.skip("neither libremamber_ort_ops.so nor libremamber_scan_cuda.so is built")
