"""Graph rewrite: a 3x3 convolution of a bilinear upsample, computed at the low resolution.

The ConvDecoder's neck upsamples (bilinear, align_corners, x2) and then runs a 3x3 convolution on
the upsampled map twice: 512 -> 512 channels at S/2 and 512 -> 1 at S. On ONNX Runtime's CPU EP
those two were 1.0 s of the base model's ~3 s at 480 (docs/PERF.md, CPU section), and three
quarters of their multiply-adds act on interpolated values. Both operators are linear, so (exactly,
up to float rounding)

    Conv3x3(U x) = sum_{a,b} (S_a U_h) (W_ab x) (S_b U_w)^T + bias

where U = U_h (x) U_w is the separable bilinear upsample, S_a shifts rows by a-1 with zero fill
(the conv's padding) and W_ab is the (O x C) tap (a, b) of the kernel. The rewrite computes the
channel mixing of all 9 taps at the input resolution with one MatMul on x viewed (N, w, C, h),
then contracts the column taps with the width (one MatMul by a (ow x 3w) matrix) and the row taps
with the height (one MatMul by a (3h x oh) matrix); the tap order (b, o, a) makes both steps plain
Reshapes, and one Transpose returns NCHW (ORT cancels it against the next rewrite's input
Transpose). For 512 -> 512 at S/2 that is 121 GFLOP of dense MatMul instead of 272 GFLOP of conv.
The weights and bias are the checkpoint's, rearranged in float64.

The first neck conv reads Concat(upsampled mixer output, c1): its kernel is split by input channels,
the upsampled part goes through the same rewrite and the rest stays a smaller direct Conv.

Applied only where it is exact: Resize mode linear, coordinate_transformation_mode align_corners,
no antialias, constant scales (1, 1, sh, sw), its output read only by a Conv with a constant 3x3
kernel, stride 1, dilation 1, group 1, pads 1 (directly or through a channel Concat that only
the Conv reads), and static spatial sizes recorded in the graph's
value_info (export is per resolution). The interpolation matrices are built in float64 from the
ONNX Resize formula. Meant for fp32 graphs: in fp16 the matrices' weights would be rounded.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 matrix of 1-D linear interpolation, align_corners (ONNX Resize)."""
    m = np.zeros((n_out, n_in))
    if n_out == 1 or n_in == 1:
        m[:, 0] = 1.0
        return m
    src = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    i0 = np.clip(np.floor(src).astype(int), 0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m


def shifted(m: np.ndarray, offset: int) -> np.ndarray:
    """Rows of m moved by offset (row i holds row i + offset), zero outside: the conv's zero padding."""
    out = np.zeros_like(m)
    n = m.shape[0]
    lo, hi = max(0, -offset), min(n, n - offset)
    out[lo:hi] = m[lo + offset:hi + offset]
    return out


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _const(graph_inits: dict, name: str):
    t = graph_inits.get(name)
    return None if t is None else numpy_helper.to_array(t)


def _static_hw(value_info: dict, name: str):
    shape = value_info.get(name)
    if shape is None or len(shape) != 4:
        return None
    h, w = shape[2], shape[3]
    return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


def _resize_ok(n, inits, consts) -> bool:
    if n.op_type != "Resize" or n.domain not in ("", "ai.onnx"):
        return False
    a = _attrs(n)
    if a.get("mode", b"nearest") not in (b"linear", "linear"):
        return False
    if a.get("coordinate_transformation_mode") not in (b"align_corners", "align_corners"):
        return False
    if a.get("antialias", 0) or len(n.input) < 3 or not n.input[2] or (len(n.input) > 3 and n.input[3]):
        return False
    scales = _scales(n, inits, consts)
    return scales is not None and scales.shape == (4,) and scales[0] == 1 and scales[1] == 1


def _scales(resize, inits, consts):
    scales = _const(inits, resize.input[2])
    if scales is None and resize.input[2] in consts:
        scales = numpy_helper.to_array(consts[resize.input[2]].attribute[0].t)
    return scales


def _conv_ok(conv, inits) -> bool:
    if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
        return False
    ca = _attrs(conv)
    w = _const(inits, conv.input[1])
    if w is None or w.ndim != 4 or w.shape[2:] != (3, 3):
        return False
    if ca.get("group", 1) != 1 or list(ca.get("strides", [1, 1])) != [1, 1]:
        return False
    if list(ca.get("dilations", [1, 1])) != [1, 1] or list(ca.get("pads", [0, 0, 0, 0])) != [1, 1, 1, 1]:
        return False
    if ca.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return False
    return not (len(conv.input) > 2 and conv.input[2] and _const(inits, conv.input[2]) is None)


def find_candidates(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto | None, onnx.NodeProto]]:
    """(Resize, Concat or None, Conv) triples the rewrite applies to exactly (module docstring).

    Concat: the Resize output is one input of a channel Concat (axis 1) that only the Conv reads;
    the Conv then splits by input channels: the upsampled part goes low resolution, the rest stays
    a (smaller) direct Conv, and the two are added (the ConvDecoder's first neck conv).
    """
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    found = []
    for n in g.node:
        if not _resize_ok(n, inits, consts):
            continue
        users = consumers.get(n.output[0], [])
        if len(users) != 1 or n.output[0] in outputs:
            continue
        concat, conv = None, users[0]
        if conv.op_type == "Concat":
            concat = conv
            if _attrs(concat).get("axis") != 1 or list(concat.input).count(n.output[0]) != 1:
                continue
            users = consumers.get(concat.output[0], [])
            if len(users) != 1 or concat.output[0] in outputs:
                continue
            conv = users[0]
            if conv.input[0] != concat.output[0]:
                continue
        elif conv.input[0] != n.output[0]:
            continue
        if _conv_ok(conv, inits):
            found.append((n, concat, conv))
    return found


def _lowres_conv(p, x, h, w, oh, ow, weight, bias, out_name, dtype):
    """Nodes and initializers computing Conv3x3(Upsample(x)) + bias into out_name (NCHW)."""
    o, c = weight.shape[:2]
    # Channel mixing of all 9 taps as one MatMul on x viewed (N, w, C, h): output (N, w, 9 O, h)
    # with the 9 O rows ordered (b, o, a), so a Reshape gives (N, [w, b], [o, a, h]) for the
    # width contraction and later (N, ow, o, [a, h]) for the height one: no Concat, no copy.
    w64 = weight.astype(np.float64)
    wmix = np.transpose(w64, (3, 0, 2, 1)).reshape(9 * o, c)  # [(b, o, a), c]
    uw = interpolation_matrix(w, ow)
    uh = interpolation_matrix(h, oh)
    # mw[j, k*3 + b] = (S_b U_w)[j, k]; mh[a*h + k, i] = (S_a U_h)[i, k]
    mw = np.stack([shifted(uw, b - 1) for b in range(3)], axis=2).reshape(ow, 3 * w)
    mh = np.concatenate([shifted(uh, a - 1) for a in range(3)], axis=1).T
    inits = [
        numpy_helper.from_array(wmix.astype(dtype), f"{p}/w_mix"),
        numpy_helper.from_array(mw.astype(dtype), f"{p}/m_w"),
        numpy_helper.from_array(mh.astype(dtype), f"{p}/m_h"),
        numpy_helper.from_array(np.array([0, 3 * w, 3 * o * h], np.int64), f"{p}/shape_wb"),
        numpy_helper.from_array(np.array([0, ow, o, 3 * h], np.int64), f"{p}/shape_ah"),
    ]
    nodes = [
        helper.make_node("Transpose", [x], [f"{p}/x_wch"], name=f"{p}/to_wch", perm=[0, 3, 1, 2]),
        helper.make_node("MatMul", [f"{p}/w_mix", f"{p}/x_wch"], [f"{p}/taps"], name=f"{p}/mix"),
        helper.make_node("Reshape", [f"{p}/taps", f"{p}/shape_wb"], [f"{p}/taps_wb"], name=f"{p}/view_wb"),
        helper.make_node("MatMul", [f"{p}/m_w", f"{p}/taps_wb"], [f"{p}/z_w"], name=f"{p}/contract_w"),
        helper.make_node("Reshape", [f"{p}/z_w", f"{p}/shape_ah"], [f"{p}/z_ah"], name=f"{p}/view_ah"),
        helper.make_node("MatMul", [f"{p}/z_ah", f"{p}/m_h"], [f"{p}/y_woh"], name=f"{p}/contract_h"),
    ]
    last = f"{p}/y_woh"
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.reshape(o, 1).astype(dtype), f"{p}/bias"))
        nodes.append(helper.make_node("Add", [last, f"{p}/bias"], [f"{p}/y_biased"], name=f"{p}/bias_add"))
        last = f"{p}/y_biased"
    nodes.append(helper.make_node("Transpose", [last], [out_name], name=f"{p}/to_nchw", perm=[0, 2, 3, 1]))
    return nodes, inits


def rewrite(model: onnx.ModelProto) -> int:
    """Rewrite every matching Resize [-> Concat] -> Conv of ``model`` in place; returns how many.

    Matches whose tensors lack static (N, C, h, w) shapes in value_info are left as they are.
    """
    g = model.graph
    found = find_candidates(model)
    if not found:
        return 0
    value_info = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        value_info[v.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    done = 0
    for resize, concat, conv in found:
        hw = _static_hw(value_info, resize.input[0])
        if hw is None:
            continue
        h, w = hw
        scales = _scales(resize, inits, consts)
        oh, ow = int(np.floor(h * float(scales[2]))), int(np.floor(w * float(scales[3])))
        weight = _const(inits, conv.input[1])
        dtype = weight.dtype
        bias = _const(inits, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        p = f"{conv.name or conv.output[0]}/lowres"
        if concat is None:
            nodes, new_inits = _lowres_conv(p, resize.input[0], h, w, oh, ow, weight, bias, conv.output[0], dtype)
        else:
            # split the kernel by the Concat's input channels (static channel counts needed)
            channels = []
            for name in concat.input:
                # the Resize keeps its input's channels (scales[1] == 1)
                shape = value_info.get(resize.input[0] if name == resize.output[0] else name)
                channels.append(shape[1] if shape and len(shape) == 4 and isinstance(shape[1], int) and shape[1] > 0 else None)
            if None in channels or sum(channels) != weight.shape[1]:
                continue
            k = list(concat.input).index(resize.output[0])
            lo = sum(channels[:k])
            w_up = weight[:, lo:lo + channels[k]]
            w_rest = np.concatenate([weight[:, :lo], weight[:, lo + channels[k]:]], axis=1)
            rest = [name for i, name in enumerate(concat.input) if i != k]
            nodes, new_inits = _lowres_conv(p, resize.input[0], h, w, oh, ow, w_up, None, f"{p}/y_up", dtype)
            if len(rest) > 1:
                nodes.append(helper.make_node("Concat", rest, [f"{p}/rest"], name=f"{p}/concat_rest", axis=1))
                rest_in = f"{p}/rest"
            else:
                rest_in = rest[0]
            new_inits.append(numpy_helper.from_array(w_rest.astype(dtype), f"{p}/w_rest"))
            conv_in = [rest_in, f"{p}/w_rest"]
            if bias is not None:
                new_inits.append(numpy_helper.from_array(bias.astype(dtype), f"{p}/b_rest"))
                conv_in.append(f"{p}/b_rest")
            nodes.append(helper.make_node("Conv", conv_in, [f"{p}/y_rest"], name=f"{p}/conv_rest",
                                          kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Add", [f"{p}/y_rest", f"{p}/y_up"], [conv.output[0]], name=f"{p}/sum"))
        # splice: the new nodes where the Conv was (all their inputs are ready there)
        idx = list(g.node).index(conv)
        for dead in (resize, concat, conv):
            if dead is not None:
                g.node.remove(dead)
        idx -= 1 + (concat is not None)
        for i, nd in enumerate(nodes):
            g.node.insert(idx + i, nd)
        g.initializer.extend(new_inits)
        done += 1
    # drop initializers nobody reads any more (the original kernels) and the removed tensors' shapes
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    produced = {o for n in g.node for o in n.output}
    keep_vi = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    return done
