"""The ONNX side of ``remamber::SelectiveScan`` v1: schema, shape inference and export translation.

torch 2.13's dynamo exporter maps ``torch.ops.remamber.selective_scan.default`` through
``CUSTOM_TRANSLATION_TABLE`` onto exactly one ONNX node (domain ``remamber``, op_type
``SelectiveScan``). onnxscript needs an ``onnx.defs.OpSchema`` to emit a node of a foreign domain
(TOOLCHAIN.md); registering the same schema with ONNX also lets ``onnx.checker`` validate the
node's arity/attributes and lets shape inference carry the output type (float32) and shape
(= u's shape) through the graph, instead of stopping at the first scan.

Optional inputs follow plugins/selectiveScanPlugin/README.md, the convention both runtimes accept:
the TensorRT(-RTX) ONNX parser cannot hand an empty-name ("") input to a plugin, so the node lists
only the PRESENT optional inputs after C (D before delta_bias) and always carries the int
attributes ``has_D`` and ``has_delta_bias`` (0/1) that say which they are. ReMamber always passes
both (7 inputs, has_D=1, has_delta_bias=1). ``input_roles`` maps positions back to names.

Every node also carries the string attributes ``plugin_namespace="remamber"`` and
``plugin_version="1"``. They are for the TensorRT ONNX parser itself, not for the op: TensorRT
10.0-10.9 (JetPack 6 ships 10.3) looks a plugin up by these two attributes only (namespace
default "", version default "1"); only TensorRT >= 10.10 and TensorRT-RTX fall back to the node's
ONNX domain. ONNX Runtime ignores them; the plugin creator does not list them, so the parser does not
forward them. ``PLUGIN_NAMESPACE`` / ``PLUGIN_VERSION`` are shared with the other remamber ops.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto
from onnx.defs import OpSchema

DOMAIN = "remamber"
OP_TYPE = "SelectiveScan"
OP_VERSION = 1
# Read by the TensorRT ONNX parser to find the plugin creator (see the module docstring). They equal
# the plugin's getPluginNamespace() / getPluginVersion() (plugins/selectiveScanPlugin/selectiveScanPlugin.h).
PLUGIN_NAMESPACE = "remamber"
PLUGIN_VERSION = "1"
INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")
MAX_STATE = 16

_ACTIVATION_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]


def _infer(ctx) -> None:
    """Type/shape inference: y is float32 with u's shape; ranks and fp32-only inputs are checked.

    Raising here makes ``onnx.shape_inference`` (strict mode) and ``onnx.checker`` (full_check)
    reject a malformed scan node with a message that names the input.
    """
    def elem_and_dims(i):
        if i >= ctx.get_num_inputs() or not ctx.has_input(i):
            return None, None
        t = ctx.get_input_type(i)
        if t is None or not t.HasField("tensor_type"):
            return None, None
        tt = t.tensor_type
        dims = list(tt.shape.dim) if tt.HasField("shape") else None
        return tt.elem_type, dims

    def int_attr(name):
        a = ctx.get_attribute(name)
        return None if a is None else a.i

    for name, expected in plugin_lookup_kwargs().items():
        a = ctx.get_attribute(name)
        if a is not None and a.s.decode("utf-8", "replace") != expected:
            raise onnx.shape_inference.InferenceError(
                f"{DOMAIN}::{OP_TYPE}: attribute {name} must be {expected!r} (TensorRT finds the plugin by it), "
                f"got {a.s.decode('utf-8', 'replace')!r}"
            )
    try:
        roles = input_roles(ctx.get_num_inputs(), int_attr("has_D"), int_attr("has_delta_bias"))
    except ValueError as exc:
        raise onnx.shape_inference.InferenceError(f"{DOMAIN}::{OP_TYPE}: {exc}") from None
    expected_rank = {"u": 3, "delta": 3, "A": 2, "B": 4, "C": 4, "D": 1, "delta_bias": 1}
    for i, role in enumerate(roles):
        elem, dims = elem_and_dims(i)
        if dims is not None and len(dims) != expected_rank[role]:
            raise onnx.shape_inference.InferenceError(
                f"{DOMAIN}::{OP_TYPE}: input {role} must have rank {expected_rank[role]}, got rank {len(dims)}"
            )
        if role in ("A", "D", "delta_bias") and elem not in (None, TensorProto.FLOAT):
            raise onnx.shape_inference.InferenceError(
                f"{DOMAIN}::{OP_TYPE}: input {role} must be float32, got {TensorProto.DataType.Name(elem)}"
            )
    y = onnx.TypeProto()
    y.tensor_type.elem_type = TensorProto.FLOAT
    _, u_dims = elem_and_dims(0)
    if u_dims is not None:
        y.tensor_type.shape.dim.extend(u_dims)
    ctx.set_output_type(0, y)


def input_roles(num_inputs: int, has_D: int | None = None, has_delta_bias: int | None = None) -> list[str]:
    """Role of each node input: u, delta, A, B, C, then the present optional inputs.

    Without the has_* attributes the positional ONNX meaning applies (6 inputs = D only).
    """
    if not 5 <= num_inputs <= 7:
        raise ValueError(f"expected 5 to 7 inputs (u, delta, A, B, C, [D], [delta_bias]), got {num_inputs}")
    extra = num_inputs - 5
    if has_D is None and has_delta_bias is None:
        optional = ["D", "delta_bias"][:extra]
    else:
        d = (extra == 2 or (extra == 1 and has_delta_bias != 1)) if has_D is None else bool(has_D)
        db = (extra == 2 or (extra == 1 and not d)) if has_delta_bias is None else bool(has_delta_bias)
        optional = (["D"] if d else []) + (["delta_bias"] if db else [])
        if len(optional) != extra:
            raise ValueError(f"has_D={has_D}, has_delta_bias={has_delta_bias} do not match {num_inputs} inputs")
    return ["u", "delta", "A", "B", "C", *optional]


def plugin_lookup_attributes() -> list[OpSchema.Attribute]:
    """Schema entries for ``plugin_namespace`` / ``plugin_version`` (strings, for TensorRT's parser).

    Any remamber op schema adds these, so ``onnx.checker`` accepts the attributes on its nodes.
    """
    return [
        OpSchema.Attribute("plugin_namespace", onnx.helper.make_attribute("plugin_namespace", PLUGIN_NAMESPACE),
                           "TensorRT plugin namespace; TensorRT < 10.10 finds the plugin by it, not by the domain"),
        OpSchema.Attribute("plugin_version", onnx.helper.make_attribute("plugin_version", PLUGIN_VERSION),
                           "TensorRT plugin version the TensorRT ONNX parser asks the plugin registry for"),
    ]


def plugin_lookup_kwargs() -> dict[str, str]:
    """The two attributes every exported remamber node carries (keyword arguments for a node)."""
    return {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}


def make_schema() -> OpSchema:
    opt = OpSchema.FormalParameterOption.Optional
    schema = OpSchema(
        OP_TYPE,
        DOMAIN,
        OP_VERSION,
        doc="Selective scan (Mamba S6, VMamba 'oflex'): fp32 state and fp32 output. See DESIGN.md.",
        inputs=[
            OpSchema.FormalParameter("u", "T", "(batch, G*D, L)"),
            OpSchema.FormalParameter("delta", "T", "(batch, G*D, L)"),
            OpSchema.FormalParameter("A", "tensor(float)", "(G*D, N), N in 1..16"),
            OpSchema.FormalParameter("B", "T", "(batch, G, N, L)"),
            OpSchema.FormalParameter("C", "T", "(batch, G, N, L)"),
            OpSchema.FormalParameter("D", "tensor(float)", "(G*D,)", param_option=opt),
            OpSchema.FormalParameter("delta_bias", "tensor(float)", "(G*D,)", param_option=opt),
        ],
        outputs=[OpSchema.FormalParameter("y", "tensor(float)", "(batch, G*D, L), always float32")],
        type_constraints=[("T", _ACTIVATION_TYPES, "activation dtype of u, delta, B, C")],
        attributes=[
            OpSchema.Attribute(
                "delta_softplus",
                onnx.helper.make_attribute("delta_softplus", 1),
                "1: dt = softplus(delta + delta_bias) (threshold 20); 0: dt = delta + delta_bias",
            ),
            OpSchema.Attribute("has_D", onnx.helper.make_attribute("has_D", -1),
                               "1/0: whether D is among the inputs (-1: positional meaning)"),
            OpSchema.Attribute("has_delta_bias", onnx.helper.make_attribute("has_delta_bias", -1),
                               "1/0: whether delta_bias is among the inputs (-1: positional meaning)"),
            *plugin_lookup_attributes(),
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


def selective_scan_translation(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Translation of torch.ops.remamber.selective_scan.default: one remamber::SelectiveScan node.

    Absent optional inputs are left out (never ""), has_D/has_delta_bias say which are present.
    """
    optional = [t for t in (D, delta_bias) if t is not None]
    return _onnxscript_op()(
        u, delta, A, B, C, *optional,
        delta_softplus=int(bool(delta_softplus)),
        has_D=int(D is not None),
        has_delta_bias=int(delta_bias is not None),
        **plugin_lookup_kwargs(),
    )


def custom_translation_table() -> dict:
    import torch

    import remamber.ops  # noqa: F401  (registers torch.ops.remamber.selective_scan)

    return {torch.ops.remamber.selective_scan.default: selective_scan_translation}


def scan_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """All remamber::SelectiveScan nodes of the main graph."""
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE]


def node_roles(node: onnx.NodeProto) -> list[str]:
    """Role of each input of a SelectiveScan node (see ``input_roles``)."""
    attrs = {a.name: a.i for a in node.attribute if a.name in ("has_D", "has_delta_bias")}
    return input_roles(len(node.input), attrs.get("has_D"), attrs.get("has_delta_bias"))
