"""The ONNX Runtime CPU op remamber::SS2DScan (libremamber_ort_ops.so) against independent references.

References: the float64 contract loop of tests/test_ss2d_op.py (own position maths) and the unfused
v1 route (cross_scan / bidi_scan -> selective_scan -> merge) in PyTorch. Graphs are built by hand with
onnx.helper and checked by onnx.checker with the schema of export/ss2d_onnx.py.

Coverage: both layouts, odd H != W, H = 1, N 1 and 16, batch 2, fp32 / fp16 / bf16 (bf16 through in-graph
Casts: numpy has no bfloat16), D / delta_bias present or absent in both optional-input conventions, the
model's stage-0 spatial size at 480 px (120 x 120), thread-count invariance (the channels are split over
ORT's pool; the result must not depend on it), and malformed nodes refused with the op's message.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.native

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from remamber import native  # noqa: E402
from remamber.errors import NativeLibraryError  # noqa: E402
from remamber.export import ss2d_onnx  # noqa: E402

from test_ss2d_op import float64_ss2d, make_inputs, unfused  # noqa: E402  (tests/ is on sys.path: rootdir conftest)

ELEM = {"fp32": (TensorProto.FLOAT, torch.float32), "fp16": (TensorProto.FLOAT16, torch.float16),
        "bf16": (TensorProto.BFLOAT16, torch.bfloat16)}


def _library():
    try:
        return native.library_path("ort")
    except NativeLibraryError as exc:
        pytest.skip(f"ORT custom-op library not built: {exc}")


def make_model(dtype, has_d, has_bias, layout, form="compacted", shapes=None, attrs=None, check=True) -> bytes:
    """One SS2DScan node; bf16 graphs take fp32 inputs and Cast them (numpy has no bfloat16)."""
    s = shapes or {"u": ["b", "d", "h", "w"], "delta": ["b", "d4", "h", "w"], "A": ["d4", "n"],
                   "B": ["b", 4, "n", "h", "w"], "D": ["d4"]}
    act = ELEM[dtype][0]
    feed = TensorProto.FLOAT if dtype == "bf16" else act
    inputs = [helper.make_tensor_value_info(n, feed, s[k]) for n, k in
              (("u", "u"), ("delta", "delta"), ("B", "B"), ("C", "B"))]
    inputs.append(helper.make_tensor_value_info("A", TensorProto.FLOAT, s["A"]))
    nodes = []
    names = {}
    for n in ("u", "delta", "B", "C"):
        if dtype == "bf16":
            nodes.append(helper.make_node("Cast", [n], [n + "_bf16"], to=TensorProto.BFLOAT16))
            names[n] = n + "_bf16"
        else:
            names[n] = n
    args = [names["u"], names["delta"], "A", names["B"], names["C"]]
    node_attrs = {"layout": layout, "delta_softplus": 1, "plugin_namespace": "remamber", "plugin_version": "1"}
    if form == "positional":
        args += ["D" if has_d else "", "delta_bias" if has_bias else ""]
        while args[-1] == "":
            args.pop()
    else:
        args += (["D"] if has_d else []) + (["delta_bias"] if has_bias else [])
        node_attrs.update(has_D=int(has_d), has_delta_bias=int(has_bias))
    for present, n in ((has_d, "D"), (has_bias, "delta_bias")):
        if present:
            inputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, s["D"]))
    node_attrs.update(attrs or {})
    nodes.append(helper.make_node("SS2DScan", args, ["y"], domain="remamber", name="ss2d0", **node_attrs))
    graph = helper.make_graph(nodes, "ss2d", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, s["u"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("remamber", 1)])
    if check:
        ss2d_onnx.register_schema()
        onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def session(model_bytes, threads=2):
    _library()
    return ort.InferenceSession(model_bytes, native.ort_session_options(threads=threads),
                                providers=["CPUExecutionProvider"])


def feeds(u, delta, A, B, C, D, bias, dtype):
    cast = (lambda t: t.float().numpy()) if dtype == "bf16" else (lambda t: t.numpy())
    out = {"u": cast(u), "delta": cast(delta), "A": A.numpy(), "B": cast(B), "C": cast(C)}
    if D is not None:
        out["D"] = D.numpy()
    if bias is not None:
        out["delta_bias"] = bias.numpy()
    return out


CASES = [
    # layout, batch, dim, H, W, N, dtype, D, bias, form
    (0, 2, 6, 5, 7, 1, "fp32", True, True, "compacted"),
    (0, 1, 5, 9, 4, 16, "fp32", False, True, "compacted"),
    (0, 2, 4, 3, 3, 1, "fp16", True, False, "positional"),
    (0, 1, 3, 6, 5, 4, "bf16", True, True, "compacted"),
    (1, 2, 9, 1, 13, 1, "fp32", True, True, "compacted"),
    (1, 1, 4, 1, 17, 16, "fp16", False, False, "compacted"),
    (1, 1, 4, 1, 10, 2, "bf16", False, True, "positional"),
    (0, 1, 8, 120, 120, 1, "fp32", True, True, "compacted"),  # base stage 0 at 480 px: L = 14,400
]


@pytest.mark.parametrize("layout,batch,dim,height,width,nstate,dtype,with_d,with_bias,form", CASES)
def test_ort_ss2d_matches_references(rng, layout, batch, dim, height, width, nstate, dtype, with_d, with_bias, form):
    u, delta, A, B, C, D, bias = make_inputs(rng, batch, dim, height, width, nstate, ELEM[dtype][1], with_d, with_bias)
    sess = session(make_model(dtype, with_d, with_bias, layout, form))
    (y,) = sess.run(["y"], feeds(u, delta, A, B, C, D, bias, dtype))
    assert y.dtype == np.float32 and y.shape == tuple(u.shape)
    name = ("cross", "bidi")[layout]
    v1 = unfused(u, delta, A, B, C, D, bias, True, name).numpy()
    scale = float(np.abs(v1).max())
    assert np.abs(y - v1).max() <= 1e-5 * scale
    if height * width <= 200:  # the python float64 loop is slow on long sequences
        ref = float64_ss2d(u, delta, A, B, C, D, bias, True, name)
        assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_thread_count_does_not_change_the_result(rng):
    u, delta, A, B, C, D, bias = make_inputs(rng, 2, 13, 17, 11, 1, torch.float32)
    model = make_model("fp32", True, True, 0)
    f = feeds(u, delta, A, B, C, D, bias, "fp32")
    (one,) = session(model, threads=1).run(["y"], f)
    (two,) = session(model, threads=2).run(["y"], f)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("shapes,attrs,expected", [
    (dict(u=[1, 2, 3, 4], delta=[1, 6, 3, 4], A=[8, 1], B=[1, 4, 1, 3, 4], D=[8]), None,
     "input delta (1, 6, 3, 4) must be (batch, 4*D, H, W) = (1, 8, 3, 4)"),
    (dict(u=[1, 2, 3, 4], delta=[1, 8, 3, 4], A=[8, 1], B=[1, 4, 1, 4, 3], D=[8]), None,
     "input B (1, 4, 1, 4, 3) must be (batch, 4, N, H, W) = (1, 4, 1, 3, 4)"),
    (dict(u=[1, 2, 3, 4], delta=[1, 8, 3, 4], A=[8, 17], B=[1, 4, 17, 3, 4], D=[8]), None,
     "state size N = 17"),
    (dict(u=[1, 2, 3, 4], delta=[1, 8, 3, 4], A=[8, 1], B=[1, 4, 1, 3, 4], D=[2]), None,
     "input D (2) must be (4*D,) = (8,)"),
    (dict(u=[1, 2, 3, 4], delta=[1, 8, 3, 4], A=[8, 1], B=[1, 4, 1, 3, 4], D=[8]), {"layout": 2},
     "attribute layout must be 0 (cross) or 1 (bidi), got 2"),
])
def test_malformed_nodes_are_refused_with_the_ops_message(shapes, attrs, expected):
    model = make_model("fp32", True, True, 0, shapes=shapes, attrs=attrs, check=False)
    with pytest.raises(Exception) as info:
        sess = session(model)
        f = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32) for i in sess.get_inputs()}
        sess.run(["y"], f)
    msg = str(info.value)
    assert "remamber::SS2DScan node 'ss2d0'" in msg and expected in msg, msg


def test_schema_rejects_a_bad_layout_in_the_checker():
    model = onnx.load_from_string(make_model("fp32", True, True, 0, check=False, attrs={"layout": 5}))
    ss2d_onnx.register_schema()
    with pytest.raises(Exception, match="layout must be 0"):
        onnx.checker.check_model(model, full_check=True)
