"""Checks and a summary of an exported ReMamber ONNX graph.

- ``check_onnx``: the full ONNX checker (``full_check=True``: it also runs strict shape
  inference), shape inference with type checking and data propagation on the graph, the scan-node
  rule (one scan node, ``remamber::SelectiveScan`` or ``remamber::SS2DScan``, per traced scan call,
  no other non-standard op), the fused-graph rule (no Flip/Concat/Transpose/Slice between an
  SS2DScan's projections and its output norm) and, for fp16 graphs, the strong-typing rules of
  ``export/fp16.py``.
- ``summarize`` / ``format_summary``: nodes by op type, parameter bytes, opsets, inputs/outputs.

Works on files with external data: the checker is given the path, shape inference runs on the
graph loaded without the weights (it needs only shapes and the small inline constants).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from remamber.errors import RemamberError

from . import scan_onnx, ss2d_onnx

STANDARD_DOMAINS = ("", "ai.onnx")
SCAN_OP_TYPES = (scan_onnx.OP_TYPE, ss2d_onnx.OP_TYPE)
# Layout ops the fused graph must not have around an SS2DScan (ONNX writes torch.flip as Slice).
LAYOUT_OPS = frozenset({"Transpose", "Concat", "Slice", "ReverseSequence", "Flip"})
# Where the backward walk from an SS2DScan input stops: the projections (x_proj, dt_projs, the
# depthwise conv before SiLU) are Convs.
PROJECTION_OPS = frozenset({"Conv"})


class GraphCheckError(RemamberError):
    """An exported graph broke a rule; the message lists every violation."""


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]


def _elem_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type).lower() if elem_type else "?"


def load_graph(path: str | Path) -> onnx.ModelProto:
    """The graph without external weights (cheap for a multi-GB model)."""
    return onnx.load(str(path), load_external_data=False)


def register_schemas() -> None:
    scan_onnx.register_schema()
    ss2d_onnx.register_schema()


def all_scan_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Every scan node of the main graph, SelectiveScan and SS2DScan."""
    return [n for n in model.graph.node if n.domain == scan_onnx.DOMAIN and n.op_type in SCAN_OP_TYPES]


def node_roles(node: onnx.NodeProto) -> list[str]:
    """Input roles of either scan op (both follow the same optional-input convention)."""
    return (ss2d_onnx.node_roles if node.op_type == ss2d_onnx.OP_TYPE else scan_onnx.node_roles)(node)


def infer(model: onnx.ModelProto) -> onnx.ModelProto:
    register_schemas()
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def value_types(model: onnx.ModelProto) -> dict[str, tuple[int, list]]:
    """name -> (elem_type, dims) for every typed value (inputs, outputs, value_info, initializers)."""
    out: dict[str, tuple[int, list]] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        out[vi.name] = (vi.type.tensor_type.elem_type, _dims(vi))
    for init in model.graph.initializer:
        out[init.name] = (init.data_type, list(init.dims))
    return out


def scan_rule_violations(model: onnx.ModelProto, expected_scans: int | None) -> list[str]:
    problems = []
    scans = all_scan_nodes(model)
    if expected_scans is not None and len(scans) != expected_scans:
        problems.append(
            f"{len(scans)} scan nodes ({scan_onnx.DOMAIN}::{scan_onnx.OP_TYPE} or {ss2d_onnx.OP_TYPE}) but the "
            f"PyTorch model makes {expected_scans} scan calls"
        )
    others = collections.Counter(
        f"{n.domain}::{n.op_type}"
        for n in model.graph.node
        if n.domain not in STANDARD_DOMAINS and not (n.domain == scan_onnx.DOMAIN and n.op_type in SCAN_OP_TYPES)
    )
    allowed = " and ".join(f"{scan_onnx.DOMAIN}::{t}" for t in SCAN_OP_TYPES)
    for op, count in sorted(others.items()):
        problems.append(f"non-standard op {op} x{count} (only {allowed} may be custom)")
    functions = [f"{f.domain}::{f.name}" for f in model.functions]
    if functions:
        problems.append(f"model-local functions {functions} (runtimes expect a flat graph)")
    return problems


def fused_layout_violations(model: onnx.ModelProto) -> list[str]:
    """Layout ops left around SS2DScan nodes (the point of the fused op is that there are none).

    For every SS2DScan: walking back from u, delta, B and C to the projections (the Convs that
    compute them, through SiLU, Reshape, Split, Cast...) meets no Flip/Concat/Transpose/Slice, and
    walking forward from y to the output norm (LayerNormalization) meets none either, except the
    norm's own channel-last permute: a Transpose whose every consumer is the LayerNormalization.
    """
    producers = {out: n for n in model.graph.node for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for n in model.graph.node:
        for name in n.input:
            consumers[name].append(n)
    problems = []
    for scan in ss2d_onnx.scan_nodes(model):
        roles = ss2d_onnx.node_roles(scan)
        bad: list[str] = []
        stack = [name for name, role in zip(scan.input, roles) if role in ("u", "delta", "B", "C")]
        seen: set[str] = set()
        while stack:  # backwards to the projections
            node = producers.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in LAYOUT_OPS:
                bad.append(f"{node.op_type} {node.name} before it")
            if node.op_type in PROJECTION_OPS:
                continue
            stack.extend(node.input)
        reached_norm = False
        stack, seen = list(scan.output), set()
        while stack:  # forwards to the output norm
            for node in consumers.get(stack.pop(), []):
                if node.name in seen:
                    continue
                seen.add(node.name)
                if node.op_type == "LayerNormalization":
                    reached_norm = True
                    continue
                if node.op_type == "Transpose" and all(
                    c.op_type == "LayerNormalization" for out in node.output for c in consumers.get(out, [])
                ):
                    stack.extend(node.output)
                    continue
                if node.op_type in LAYOUT_OPS:
                    bad.append(f"{node.op_type} {node.name} after it")
                stack.extend(node.output)
                if len(seen) > 64:  # the norm follows within a few nodes; do not walk the whole graph
                    break
        if not reached_norm:
            bad.append("no LayerNormalization (output norm) after it")
        if bad:
            problems.append(f"SS2DScan {scan.name}: layout ops left in the fused graph: {', '.join(bad)}")
    return problems


def fp16_typing_violations(model: onnx.ModelProto) -> list[str]:
    """Strong-typing rules of an fp16 export (export/fp16.py); ``model`` must be shape-inferred."""
    types = value_types(model)
    producers = {out: n for n in model.graph.node for out in n.output}
    problems = []

    def elem(name):
        return types.get(name, (0, []))[0]

    def fp16_ancestor(name) -> str | None:
        # Walk back through the producers of a float32-only input: a float16 tensor anywhere on the
        # way means the value was rounded to fp16 before being widened again.
        stack, seen = [name], set()
        while stack:
            cur = stack.pop()
            if not cur or cur in seen:
                continue
            seen.add(cur)
            if elem(cur) == TensorProto.FLOAT16:
                return cur
            node = producers.get(cur)
            if node is not None:
                stack.extend(node.input)
        return None

    for inp in model.graph.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT16:
            problems.append(f"graph input {inp.name} is float16 (inputs must stay float32)")
    for out in model.graph.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            problems.append(f"graph output {out.name} is {_elem_name(out.type.tensor_type.elem_type)}, expected float32")
    for node in all_scan_nodes(model):
        try:
            roles = node_roles(node)
        except ValueError as exc:
            problems.append(f"scan {node.name}: {exc}")
            continue
        for name, role in zip(node.input, roles):
            if not name:
                continue
            if role in ("u", "delta", "B", "C"):
                if elem(name) != TensorProto.FLOAT16:
                    problems.append(f"scan {node.name}: {role} is {_elem_name(elem(name))}, expected float16")
            else:
                if elem(name) != TensorProto.FLOAT:
                    problems.append(f"scan {node.name}: {role} is {_elem_name(elem(name))}, expected float32")
                hit = fp16_ancestor(name)
                if hit:
                    problems.append(f"scan {node.name}: {role} is computed from the float16 tensor {hit}")
    for node in model.graph.node:
        if node.op_type == "LayerNormalization" and node.domain in STANDARD_DOMAINS:
            if elem(node.input[0]) != TensorProto.FLOAT:
                problems.append(f"LayerNormalization {node.name} runs in {_elem_name(elem(node.input[0]))}, expected float32")
    n_half = sum(1 for t, _ in types.values() if t == TensorProto.FLOAT16)
    if n_half == 0:
        problems.append("no float16 tensor in the graph: this is not an fp16 export")
    return problems


@dataclass
class CheckReport:
    scan_nodes: int
    inferred_outputs: dict[str, tuple[str, list]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_onnx(path: str | Path, expected_scans: int | None = None, precision: str | None = None,
               full_check: bool = True) -> CheckReport:
    """Run every check; raise GraphCheckError listing all violations."""
    path = Path(path)
    register_schemas()
    problems = []
    try:
        onnx.checker.check_model(str(path), full_check=full_check)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        problems.append(f"onnx.checker: {exc}")
    model = load_graph(path)
    try:
        inferred = infer(model)
    except onnx.shape_inference.InferenceError as exc:
        problems.append(f"shape inference: {exc}")
        inferred = model
    problems += scan_rule_violations(inferred, expected_scans)
    problems += fused_layout_violations(inferred)
    if precision == "fp16":
        problems += fp16_typing_violations(inferred)
    outputs = {o.name: (_elem_name(o.type.tensor_type.elem_type), _dims(o)) for o in inferred.graph.output}
    report = CheckReport(scan_nodes=len(all_scan_nodes(inferred)), inferred_outputs=outputs, problems=problems)
    if problems:
        raise GraphCheckError(f"{path}: the exported graph fails {len(problems)} check(s):\n  - " + "\n  - ".join(problems))
    return report


# ---- summary ------------------------------------------------------------------------------------

@dataclass
class GraphSummary:
    path: str
    ops: dict[str, int]
    parameter_count: int
    parameter_bytes: int
    parameter_bytes_by_dtype: dict[str, int]
    opsets: dict[str, int]
    inputs: list[tuple[str, str, list]]
    outputs: list[tuple[str, str, list]]
    external_data: list[str]
    file_bytes: int
    metadata: dict[str, str]


def _tensor_bytes(init: onnx.TensorProto) -> tuple[int, int]:
    count = int(np.prod(init.dims)) if len(init.dims) else 1
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    return count, count * itemsize


def summarize(path: str | Path) -> GraphSummary:
    path = Path(path)
    model = load_graph(path)
    ops = collections.Counter(
        (f"{n.domain}::{n.op_type}" if n.domain not in STANDARD_DOMAINS else n.op_type) for n in model.graph.node
    )
    by_dtype: dict[str, int] = collections.Counter()
    count = 0
    external = set()
    for init in model.graph.initializer:
        n, nbytes = _tensor_bytes(init)
        count += n
        by_dtype[_elem_name(init.data_type)] += nbytes
        if init.data_location == TensorProto.EXTERNAL:
            external.update(e.value for e in init.external_data if e.key == "location")
    file_bytes = path.stat().st_size + sum((path.parent / e).stat().st_size for e in external if (path.parent / e).exists())
    io = lambda vis: [(v.name, _elem_name(v.type.tensor_type.elem_type), _dims(v)) for v in vis]  # noqa: E731
    return GraphSummary(
        path=str(path),
        ops=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        parameter_count=count,
        parameter_bytes=sum(by_dtype.values()),
        parameter_bytes_by_dtype=dict(by_dtype),
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        inputs=io(model.graph.input),
        outputs=io(model.graph.output),
        external_data=sorted(external),
        file_bytes=file_bytes,
        metadata={p.key: p.value for p in model.metadata_props},
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_summary(s: GraphSummary) -> str:
    from tabulate import tabulate

    parts = [f"ONNX graph: {s.path}"]
    if s.metadata:
        parts.append(tabulate(sorted(s.metadata.items()), headers=["metadata", "value"], tablefmt="github"))
    parts.append(tabulate(
        [[name, dtype, "(" + ", ".join(map(str, dims)) + ")"] for name, dtype, dims in s.inputs]
        + [["", "", ""]]
        + [[name, dtype, "(" + ", ".join(map(str, dims)) + ")"] for name, dtype, dims in s.outputs],
        headers=["inputs / outputs", "dtype", "shape"], tablefmt="github"))
    parts.append(tabulate(sorted(s.opsets.items()), headers=["opset domain", "version"], tablefmt="github"))
    parts.append(tabulate(list(s.ops.items()) + [["total", sum(s.ops.values())]], headers=["op type", "nodes"], tablefmt="github"))
    rows = [[dtype, _mib(b)] for dtype, b in sorted(s.parameter_bytes_by_dtype.items())]
    rows.append(["total", f"{_mib(s.parameter_bytes)} ({s.parameter_count:,} values)"])
    rows.append(["on disk", _mib(s.file_bytes) + (f" (external data: {', '.join(s.external_data)})" if s.external_data else "")])
    parts.append(tabulate(rows, headers=["parameters", "bytes"], tablefmt="github"))
    return "\n\n".join(parts)
