"""export/resize_conv.py: the low-resolution rewrite of Conv3x3(bilinear upsample) is exact.

The reference is independent of the rewrite: bilinear align_corners upsampling written from its
definition (output pixel i samples i * (n_in - 1) / (n_out - 1)) and a zero-padded 3x3
cross-correlation, both in float64 NumPy. The rewritten graph runs on ONNX Runtime; the original
Resize + Conv graph is run beside it as a second witness. Shapes are small so this takes seconds.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import resize_conv

ort = pytest.importorskip("onnxruntime")


def upsample_reference(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        sy = i * (h - 1) / (oh - 1) if oh > 1 else 0.0
        y0 = min(int(np.floor(sy)), h - 1)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for j in range(ow):
            sx = j * (w - 1) / (ow - 1) if ow > 1 else 0.0
            x0 = min(int(np.floor(sx)), w - 1)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            out[:, :, i, j] = ((1 - fy) * ((1 - fx) * x[:, :, y0, x0] + fx * x[:, :, y0, x1])
                               + fy * ((1 - fx) * x[:, :, y1, x0] + fx * x[:, :, y1, x1]))
    return out


def conv3x3_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2, w + 2))
    padded[:, :, 1:-1, 1:-1] = x
    out = np.zeros((n, weight.shape[0], h, w))
    for a in range(3):
        for b in range(3):
            out += np.einsum("oc,nchw->nohw", weight[:, :, a, b], padded[:, :, a:a + h, b:b + w])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def make_graph(c, o, h, w, scale, bias, *, mode="linear", ctm="align_corners", pads=(1, 1, 1, 1), extra_reader=False):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32) if bias else None
    oh, ow = int(h * scale[0]), int(w * scale[1])
    inits = [numpy_helper.from_array(np.array([1, 1, *scale], np.float32), "scales"),
             numpy_helper.from_array(weight, "weight")]
    conv_inputs = ["up", "weight"]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "bias"))
        conv_inputs.append("bias")
    nodes = [
        helper.make_node("Relu", ["x"], ["xr"]),
        helper.make_node("Resize", ["xr", "", "scales"], ["up"], mode=mode, coordinate_transformation_mode=ctm),
        helper.make_node("Conv", conv_inputs, ["y"], kernel_shape=[3, 3], pads=list(pads)),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", o, oh, ow])]
    if extra_reader:
        nodes.append(helper.make_node("Identity", ["up"], ["up_copy"]))
        outputs.append(helper.make_tensor_value_info("up_copy", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c, h, w])], outputs, inits,
        value_info=[helper.make_tensor_value_info("xr", TensorProto.FLOAT, ["batch", c, h, w])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model, weight, b


def run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["out"], {"x": x})[0]


def test_interpolation_matrix_matches_definition():
    x = np.random.default_rng(1).standard_normal((1, 1, 7, 1))
    m = resize_conv.interpolation_matrix(7, 13)
    ref = upsample_reference(np.repeat(x, 1, axis=3), 13, 1)[0, 0, :, 0]
    # width 1 -> 1 in the reference is the identity; the row direction is what is checked
    np.testing.assert_allclose(m @ x[0, 0, :, 0], ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("c,o,h,w,scale,bias", [
    (8, 6, 5, 7, (2.0, 2.0), True),    # the neck's case: x2, bias, non-square
    (16, 1, 6, 6, (2.0, 2.0), True),   # the logits conv: one output channel
    (4, 5, 4, 3, (3.0, 2.0), False),   # other scales, no bias
])
def test_rewrite_matches_float64_reference(c, o, h, w, scale, bias):
    model, weight, b = make_graph(c, o, h, w, scale, bias)
    x = np.random.default_rng(2).standard_normal((2, c, h, w)).astype(np.float32)
    before = run(model, x)
    assert resize_conv.rewrite(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "Resize" not in ops and "Conv" not in ops
    onnx.checker.check_model(model, full_check=True)
    after = run(model, x)
    oh, ow = int(h * scale[0]), int(w * scale[1])
    ref = np.maximum(conv3x3_reference(upsample_reference(np.maximum(x.astype(np.float64), 0), oh, ow),
                                       weight.astype(np.float64), None if b is None else b.astype(np.float64)), 0)
    scale_ref = np.abs(ref).max()
    assert np.abs(after - ref).max() <= 1e-5 * scale_ref
    assert np.abs(before - ref).max() <= 1e-5 * scale_ref  # the witness agrees with the reference too
    assert not np.array_equal(after, np.zeros_like(after))


@pytest.mark.parametrize("kwargs", [
    {"mode": "nearest"},
    {"ctm": "half_pixel"},
    {"pads": (0, 0, 0, 0)},
    {"extra_reader": True},
])
def test_rewrite_leaves_other_patterns_alone(kwargs):
    model, _, _ = make_graph(4, 3, 4, 4, (2.0, 2.0), True, **kwargs)
    before = model.SerializeToString()
    assert resize_conv.rewrite(model) == 0
    assert model.SerializeToString() == before


def test_rewrite_needs_static_spatial_shape():
    model, _, _ = make_graph(4, 3, 4, 4, (2.0, 2.0), True)
    del model.graph.value_info[:]
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"
    assert resize_conv.rewrite(model) == 0


@pytest.mark.parametrize("position,others", [(0, (3,)), (1, (2, 3))])
def test_rewrite_through_channel_concat(position, others):
    """Conv3x3(Concat(U x, z...)): the upsampled part goes low resolution, the rest stays a Conv."""
    rng = np.random.default_rng(3)
    c, o, h, w = 5, 4, 4, 6
    oh, ow = 2 * h, 2 * w
    total = c + sum(others)
    weight = rng.standard_normal((o, total, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    names = [f"z{i}" for i in range(len(others))]
    cat_inputs = list(names)
    cat_inputs.insert(position, "up")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c, h, w])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", k, oh, ow]) for n, k in zip(names, others)]
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="linear", coordinate_transformation_mode="align_corners"),
         helper.make_node("Concat", cat_inputs, ["cat"], axis=1),
         helper.make_node("Conv", ["cat", "weight", "bias"], ["out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        "g", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", o, oh, ow])],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
         numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    feeds = {"x": rng.standard_normal((2, c, h, w)).astype(np.float32)}
    feeds.update({n: rng.standard_normal((2, k, oh, ow)).astype(np.float32) for n, k in zip(names, others)})
    assert resize_conv.rewrite(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "Resize" not in ops and ops.count("Conv") == 1
    onnx.checker.check_model(model, full_check=True)
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["out"], feeds)[0]
    parts = [feeds[n].astype(np.float64) for n in names]
    parts.insert(position, upsample_reference(feeds["x"].astype(np.float64), oh, ow))
    ref = conv3x3_reference(np.concatenate(parts, axis=1), weight.astype(np.float64), bias.astype(np.float64))
    assert np.abs(after - ref).max() <= 1e-5 * np.abs(ref).max()
