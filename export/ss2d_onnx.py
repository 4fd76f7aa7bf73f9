"""The ONNX side of ``remamber::SS2DScan`` v1: schema, shape inference and export translation.

Contract: plugins/ss2dScanPlugin/README.md. One node per SS2D call (cross-scan + selective scan of
four directions + merge, fused); torch's dynamo exporter maps ``torch.ops.remamber.ss2d_scan.default``
onto it through ``CUSTOM_TRANSLATION_TABLE`` exactly as export/scan_onnx.py does for SelectiveScan,
and the schema registered here lets ``onnx.checker`` validate the node and shape inference carry y
(float32, u's shape) through the graph.

Optional inputs follow the v1 convention (present ones after C, D before delta_bias, ``has_D`` /
``has_delta_bias`` always written: the TensorRT parser cannot pass an empty-name input), and every
node carries ``plugin_namespace`` / ``plugin_version`` for TensorRT 10.0-10.9's parser, shared with
SelectiveScan (``scan_onnx.PLUGIN_NAMESPACE`` / ``PLUGIN_VERSION``).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto
from onnx.defs import OpSchema

from . import scan_onnx
from .scan_onnx import PLUGIN_NAMESPACE, PLUGIN_VERSION  # noqa: F401  (re-exported: one plugin namespace)

DOMAIN = scan_onnx.DOMAIN
OP_TYPE = "SS2DScan"
OP_VERSION = 1
LAYOUTS = {"cross": 0, "bidi": 1}
EXPECTED_RANK = {"u": 4, "delta": 4, "A": 2, "B": 5, "C": 5, "D": 1, "delta_bias": 1}

_ACTIVATION_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]


def input_roles(num_inputs: int, has_D: int | None = None, has_delta_bias: int | None = None) -> list[str]:
    """Role of each node input: u, delta, A, B, C, then the present optional inputs (same rule as v1)."""
    return scan_onnx.input_roles(num_inputs, has_D, has_delta_bias)


def _infer(ctx) -> None:
    """y is float32 with u's shape; ranks, fp32-only inputs and attribute values are checked."""
    def elem_and_dims(i):
        if i >= ctx.get_num_inputs() or not ctx.has_input(i):
            return None, None
        t = ctx.get_input_type(i)
        if t is None or not t.HasField("tensor_type"):
            return None, None
        tt = t.tensor_type
        dims = list(tt.shape.dim) if tt.HasField("shape") else None
        return tt.elem_type, dims

    def attr(name):
        return ctx.get_attribute(name)

    def fail(message):
        raise onnx.shape_inference.InferenceError(f"{DOMAIN}::{OP_TYPE}: {message}")

    layout = attr("layout")
    if layout is not None and layout.i not in LAYOUTS.values():
        fail(f"attribute layout must be 0 (cross) or 1 (bidi), got {layout.i}")
    softplus = attr("delta_softplus")
    if softplus is not None and softplus.i not in (0, 1):
        fail(f"attribute delta_softplus must be 0 or 1, got {softplus.i}")
    for name, expected in scan_onnx.plugin_lookup_kwargs().items():
        a = attr(name)
        if a is not None and a.s.decode() != expected:
            fail(f"attribute {name} must be {expected!r} (TensorRT finds the plugin by it), got {a.s.decode()!r}")
    has_d, has_db = attr("has_D"), attr("has_delta_bias")
    try:
        roles = input_roles(ctx.get_num_inputs(), None if has_d is None else has_d.i,
                            None if has_db is None else has_db.i)
    except ValueError as exc:
        fail(str(exc))
    for i, role in enumerate(roles):
        elem, dims = elem_and_dims(i)
        if dims is not None and len(dims) != EXPECTED_RANK[role]:
            fail(f"input {role} must have rank {EXPECTED_RANK[role]}, got rank {len(dims)}")
        if role in ("A", "D", "delta_bias") and elem not in (None, TensorProto.FLOAT):
            fail(f"input {role} must be float32, got {TensorProto.DataType.Name(elem)}")
    y = onnx.TypeProto()
    y.tensor_type.elem_type = TensorProto.FLOAT
    _, u_dims = elem_and_dims(0)
    if u_dims is not None:
        y.tensor_type.shape.dim.extend(u_dims)
    ctx.set_output_type(0, y)


def make_schema() -> OpSchema:
    opt = OpSchema.FormalParameterOption.Optional
    schema = OpSchema(
        OP_TYPE,
        DOMAIN,
        OP_VERSION,
        doc="One SS2D: cross-scan (or bidi scan), selective scan of 4 directions, merge. "
            "fp32 state and output. See plugins/ss2dScanPlugin/README.md.",
        inputs=[
            OpSchema.FormalParameter("u", "T", "(batch, D, H, W)"),
            OpSchema.FormalParameter("delta", "T", "(batch, 4*D, H, W)"),
            OpSchema.FormalParameter("A", "tensor(float)", "(4*D, N), N in 1..16"),
            OpSchema.FormalParameter("B", "T", "(batch, 4, N, H, W)"),
            OpSchema.FormalParameter("C", "T", "(batch, 4, N, H, W)"),
            OpSchema.FormalParameter("D", "tensor(float)", "(4*D,)", param_option=opt),
            OpSchema.FormalParameter("delta_bias", "tensor(float)", "(4*D,)", param_option=opt),
        ],
        outputs=[OpSchema.FormalParameter("y", "tensor(float)", "(batch, D, H, W), always float32")],
        type_constraints=[("T", _ACTIVATION_TYPES, "activation dtype of u, delta, B, C")],
        attributes=[
            OpSchema.Attribute("layout", onnx.helper.make_attribute("layout", 0),
                               "0 = cross (4 spatial directions), 1 = bidi (fwd, fwd, rev, rev over row-major)"),
            OpSchema.Attribute("delta_softplus", onnx.helper.make_attribute("delta_softplus", 1),
                               "1: dt = softplus(delta + delta_bias) (threshold 20); 0: dt = delta + delta_bias"),
            OpSchema.Attribute("has_D", onnx.helper.make_attribute("has_D", -1),
                               "1/0: whether D is among the inputs (-1: positional meaning)"),
            OpSchema.Attribute("has_delta_bias", onnx.helper.make_attribute("has_delta_bias", -1),
                               "1/0: whether delta_bias is among the inputs (-1: positional meaning)"),
            *scan_onnx.plugin_lookup_attributes(),
        ],
    )
    schema.set_type_and_shape_inference_function(_infer)
    return schema


def register_schema() -> None:
    """Register the schema with ONNX (checker, shape inference). Idempotent."""
    try:
        onnx.defs.get_schema(OP_TYPE, OP_VERSION, DOMAIN)
        return
    except onnx.defs.SchemaError:
        pass
    onnx.defs.register_schema(make_schema())


def _onnxscript_op():
    from onnxscript import values

    register_schema()
    return values.Op(values.Opset(DOMAIN, OP_VERSION), OP_TYPE, onnx.defs.get_schema(OP_TYPE, OP_VERSION, DOMAIN))


def ss2d_scan_translation(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0):
    """Translation of torch.ops.remamber.ss2d_scan.default: one remamber::SS2DScan node."""
    optional = [t for t in (D, delta_bias) if t is not None]
    return _onnxscript_op()(
        u, delta, A, B, C, *optional,
        layout=int(layout),
        delta_softplus=int(bool(delta_softplus)),
        has_D=int(D is not None),
        has_delta_bias=int(delta_bias is not None),
        **scan_onnx.plugin_lookup_kwargs(),
    )


def custom_translation_table() -> dict:
    """Both scan ops: a model may use either path (remamber.model.set_scan_op)."""
    import torch

    import remamber.ops  # noqa: F401  (registers torch.ops.remamber.ss2d_scan)

    table = scan_onnx.custom_translation_table()
    table[torch.ops.remamber.ss2d_scan.default] = ss2d_scan_translation
    return table


def scan_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """All remamber::SS2DScan nodes of the main graph."""
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE]


def node_roles(node: onnx.NodeProto) -> list[str]:
    attrs = {a.name: a.i for a in node.attribute if a.name in ("has_D", "has_delta_bias")}
    return input_roles(len(node.input), attrs.get("has_D"), attrs.get("has_delta_bias"))


def node_layout(node: onnx.NodeProto) -> int:
    for a in node.attribute:
        if a.name == "layout":
            return a.i
    return 0
