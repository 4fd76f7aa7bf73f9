"""The TensorRT SS2DScan plugin (remamber::SS2DScan v1, in libremamber_trt_plugin.so) in TensorRT-RTX, on CPU.

What runs here: the library's getCreators lists the SS2DScan creator (namespace "remamber", version "1")
beside SelectiveScan; hand-built ONNX graphs (onnx.helper) with SS2DScan nodes for both layouts, every
attribute written (layout, delta_softplus, has_D, has_delta_bias, plugin_namespace, plugin_version),
fp32 and fp16 activations, with and without the optional inputs, dynamic batch / H / W through an
optimization profile, pass onnx.checker with the op's schema (export/ss2d_onnx.py), parse and build
into serialized engines; malformed nodes and bad fields are refused and the captured log carries the
plugin's own message. Engines are never deserialized or run: that needs a GPU (the kernel's maths is
checked on the CPU by plugins/tests/test_ss2d_kernel_emulation.cpp).

TensorRT-RTX work runs in a subprocess (tests/_plugin_helpers.py run as a script, the harness shared with
tests/test_trt_plugin.py) because a broken TensorRT-RTX setup aborts the process (scripts/fix_trt_rtx.sh)
and must not take pytest down with it.
"""

from __future__ import annotations

import pytest
from _plugin_helpers import PLUGIN_NAMESPACE, PLUGIN_VERSION, assert_built, assert_refused_with_message, build_each
from _plugin_helpers import plugin_runner, write_model
from _plugin_helpers import plugin_path, workdir  # noqa: F401  (pytest fixtures, used by name)

pytestmark = pytest.mark.native

NODE_NAME = "ss2d0"
ERROR_PREFIX = f"remamber::SS2DScan node '{NODE_NAME}': "
CREATORS = ["SS2DScan", "SelectiveScan"]
# Dynamic axes: batch 1..2 (opt 1), H 1..64 (opt 32), W (the last) 1..256 (opt 32); the bidi layout's H is
# the static 1.
PROFILE = {"batch": [1, 1, 2], "last": [1, 32, 256], "other": [1, 32, 64]}


# ---- graph construction ---------------------------------------------------------------------------

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


# ---- pytest side ----------------------------------------------------------------------------------

_run = plugin_runner("SS2DScan", NODE_NAME, CREATORS, PROFILE)


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
    paths = [write_model(workdir, name, make_model(**kw).SerializeToString()) for name, kw in VALID.items()]
    results, _ = _run("build", plugin_path, paths)
    return dict(zip(VALID, results))


def test_library_lists_both_creators(valid_results):
    creators = next(iter(valid_results.values()))["creators"]
    assert creators == {"SS2DScan": True, "SelectiveScan": True}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_graph_parses_and_builds(valid_results, name):
    assert_built(valid_results[name])


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
    paths = {name: write_model(workdir, "bad-" + name, make_model(static=True, **kw).SerializeToString())
             for name, (kw, _) in MALFORMED.items()}
    return build_each(plugin_path, paths, CREATORS, PROFILE)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_node_refused_with_plugin_message(malformed_results, name):
    assert_refused_with_message(malformed_results[name], name, ERROR_PREFIX, MALFORMED[name][1])


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
