"""ReMamber (PyTorch) -> ONNX with one scan node per SS2D call.

Which node depends on the model's scan path (``remamber.model.set_scan_op``, or ``scan_op=`` here):
"fused" (the default) writes one ``remamber::SS2DScan`` per SS2D (export/ss2d_onnx.py) with no
layout ops around it; "selective" writes today's v1 graphs, one ``remamber::SelectiveScan`` per
SS2D between the cross-scan / merge layout ops (export/scan_onnx.py).

Route: ``torch.export.export`` (non-strict) of a thin wrapper that fixes the I/O names, then
``torch.onnx.export(exported_program, dynamo=True, custom_translation_table=...)`` which maps
``torch.ops.remamber.ss2d_scan.default`` / ``selective_scan.default`` to the custom nodes, then the
exporter's optimizer (constant folding, e.g. A = -exp(A_logs) becomes one fp32 initializer),
then (fp32 graphs, ``upsample_conv="auto"``) export/resize_conv.py's rewrite of each 3x3 conv of a
bilinear upsample into low-resolution MatMuls (exact up to rounding; the ConvDecoder's neck), then an
atomic save and the checks of export/graph_checks.py.

Graph I/O (COMMON.md): image (batch,3,S,S) float32, input_ids (batch,20) int64,
attention_mask (batch,20) int64 -> logits (batch,1,S,S) float32; ``batch`` is symbolic.

Dynamic batch: torch.export specialises a size-1 example dimension to the constant 1, so the
trace always uses an example batch of 2 and declares the batch dimension dynamic; the ONNX graph
has no guard on it and runs batch 1 (tested). ``static_batch=N`` traces and fixes batch N.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from remamber.errors import InputError

from . import graph_checks, scan_onnx, ss2d_onnx
from remamber.atomic import atomic_folder

PRECISIONS = ("fp32", "fp16")
UPSAMPLE_CONV = ("auto", "lowres", "direct")
NUM_TOKENS = 20
INPUT_NAMES = ("image", "input_ids", "attention_mask")
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
TWO_GIB = 2 * 1024**3
TRACE_BATCH = 2  # see module docstring


def validate_resolution(resolution: int) -> int:
    if not isinstance(resolution, int) or resolution <= 0 or resolution % 32:
        raise InputError(
            f"resolution {resolution!r} is not a positive multiple of 32 (the decoder concatenates stage "
            f"features at S/4..S/32); use e.g. 480 or 1024"
        )
    return resolution


def validate_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not supported; use one of {', '.join(PRECISIONS)}")
    return precision


def example_inputs(batch: int, resolution: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic model inputs: a normalised-image-like tensor and a CLIP-like token sequence
    (BOS, 7 word tokens, EOS, EOS padding; mask 1 on the first 9 slots)."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, resolution, resolution, generator=gen)
    ids = torch.full((batch, NUM_TOKENS), 49407, dtype=torch.int64)
    ids[:, 0] = 49406
    ids[:, 1:8] = torch.randint(300, 40000, (batch, 7), generator=gen)
    mask = torch.zeros(batch, NUM_TOKENS, dtype=torch.int64)
    mask[:, :9] = 1
    return image, ids, mask


class ExportWrapper(nn.Module):
    """Names the graph I/O and, when asked, returns marked intermediate tensors as extra outputs.

    ``intermediates`` maps an output name to a submodule of ``model`` or to ``(submodule, index)``
    for a module that returns a list/tuple; a forward hook keeps that output and it becomes a
    float32 graph output. The same wrapper run eagerly gives the PyTorch reference tensors.
    """

    def __init__(self, model: nn.Module, intermediates: dict | None = None):
        super().__init__()
        self.model = model
        self.names = list(intermediates or {})
        self._store: dict[str, torch.Tensor] = {}
        self._handles = []
        for name, target in (intermediates or {}).items():
            module, index = target if isinstance(target, tuple) else (target, None)
            self._handles.append(module.register_forward_hook(self._keeper(name, index)))

    def _keeper(self, name, index):
        def hook(module, args, output):
            if index is not None:
                output = output[index]
            elif isinstance(output, (tuple, list)):
                output = output[0]
            self._store[name] = output
        return hook

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def forward(self, image, input_ids, attention_mask):
        self._store.clear()
        logits = self.model(image, input_ids, attention_mask)
        if not self.names:
            return logits
        return (logits, *[self._store[n].float() for n in self.names])


@dataclass
class ExportResult:
    path: Path
    precision: str
    resolution: int
    scan_calls_traced: int
    scan_nodes: int
    output_names: list[str]
    external_data: bool
    seconds: dict[str, float] = field(default_factory=dict)
    summary: graph_checks.GraphSummary | None = None


def traced_scan_ops(exported: torch.export.ExportedProgram) -> dict[str, int]:
    """Calls of each scan op in the traced PyTorch program (one FX node per call), by ONNX op type."""
    targets = {
        torch.ops.remamber.selective_scan.default: scan_onnx.OP_TYPE,
        torch.ops.remamber.ss2d_scan.default: ss2d_onnx.OP_TYPE,
    }
    counts = {scan_onnx.OP_TYPE: 0, ss2d_onnx.OP_TYPE: 0}
    for n in exported.graph.nodes:
        if n.op == "call_function" and n.target in targets:
            counts[targets[n.target]] += 1
    return counts


def count_traced_scans(exported: torch.export.ExportedProgram) -> int:
    """Scan calls (either op) in the traced PyTorch program."""
    return sum(traced_scan_ops(exported).values())


def scan_op_metadata(counts: dict[str, int]) -> str:
    """'remamber::SS2DScan v1' (or SelectiveScan, or both joined by ' + ') for the graph metadata."""
    versions = {scan_onnx.OP_TYPE: scan_onnx.OP_VERSION, ss2d_onnx.OP_TYPE: ss2d_onnx.OP_VERSION}
    used = [f"{scan_onnx.DOMAIN}::{op} v{versions[op]}" for op, n in counts.items() if n] or ["none"]
    return " + ".join(used)


def _rename_symbolic_dim(ir_model, old: str, new: str) -> None:
    import onnx_ir as ir

    def fix(value):
        if value is None or value.shape is None:
            return
        dims = list(value.shape)
        if any(isinstance(d, ir.SymbolicDim) and d.value == old for d in dims):
            value.shape = ir.Shape([new if isinstance(d, ir.SymbolicDim) and d.value == old else d for d in dims])

    for v in ir_model.graph.inputs:
        fix(v)
    for node in ir.traversal.RecursiveGraphIterator(ir_model.graph):
        for v in node.outputs:
            fix(v)


def _lowres_upsample_convs(ir_model):
    """export/resize_conv.py's rewrite on a proto round trip of the IR model (weights are copied once);
    returns the model and how many convs were rewritten."""
    import onnx_ir as ir

    from . import resize_conv

    proto = ir.to_proto(ir_model)
    count = resize_conv.rewrite(proto)
    return (ir.from_proto(proto) if count else ir_model), count


def export_onnx(
    model: nn.Module,
    path: str | Path,
    resolution: int,
    precision: str = "fp32",
    *,
    static_batch: int | None = None,
    intermediates: dict | None = None,
    opset: int | None = None,
    external_data: bool | None = None,
    progress: bool = True,
    check: bool = True,
    metadata: dict[str, str] | None = None,
    scan_op: str | None = None,
    upsample_conv: str = "auto",
) -> ExportResult:
    """Export ``model`` (eval mode, fp32 weights) to ``path``; returns what was written and checked.

    precision "fp16" converts a copy of the model with export/fp16.py (fp32 I/O, fp32 islands).
    external_data None: external weights only when they exceed 2 GiB (ONNX's protobuf limit);
    True forces ``<path>.data`` beside the graph. ``scan_op`` "fused" / "selective" sets the model's
    scan path for this export (None: as the model is set; built models default to "fused").
    ``upsample_conv``: "lowres" rewrites each 3x3 conv of a bilinear upsample (export/resize_conv.py),
    "direct" keeps the Resize + Conv, "auto" = lowres for fp32 and direct for fp16 (whose rounded
    interpolation weights would cost accuracy). Raises InputError for bad arguments and
    graph_checks.GraphCheckError when the written graph breaks a rule (the file is then removed).
    """
    from tqdm import tqdm

    validate_resolution(resolution)
    validate_precision(precision)
    if upsample_conv not in UPSAMPLE_CONV:
        raise InputError(f"upsample_conv must be one of {', '.join(UPSAMPLE_CONV)}, got {upsample_conv!r}")
    lowres = upsample_conv == "lowres" or (upsample_conv == "auto" and precision == "fp32")
    path = Path(path)
    if path.suffix != ".onnx":
        raise InputError(f"output path {path} must end in .onnx")
    if static_batch is not None and static_batch < 1:
        raise InputError(f"static batch {static_batch} must be >= 1")

    if scan_op is not None:
        from remamber.model import set_scan_op

        set_scan_op(model, scan_op)
    source = model
    if precision == "fp16":
        from .fp16 import to_half_precision

        source = to_half_precision(model)
        if intermediates:
            # map the caller's modules onto the fp16 copy by their qualified names
            names = {m: n for n, m in model.named_modules()}
            copied = dict(source.model.named_modules())
            intermediates = {
                k: ((copied[names[t[0]]], t[1]) if isinstance(t, tuple) else copied[names[t]])
                for k, t in intermediates.items()
            }
    wrapper = ExportWrapper(source, intermediates).eval()
    output_names = [OUTPUT_NAME, *wrapper.names]

    steps = ["trace (torch.export)", "translate + optimize (torch.onnx)", "save", "check"]
    seconds: dict[str, float] = {}
    bar = tqdm(total=len(steps), desc=f"export {path.name}", unit="step", disable=not progress, leave=True)
    try:

        def step(i):
            bar.set_postfix_str(steps[i])

        t0 = time.perf_counter()
        step(0)
        batch = static_batch or TRACE_BATCH
        args = example_inputs(batch, resolution)
        dynamic = None
        if static_batch is None:
            dim = torch.export.Dim(BATCH_DIM, min=2, max=4096)
            dynamic = ({0: dim}, {0: dim}, {0: dim})
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # the intermediate-output hooks keep tensors in a dict on the wrapper, by design
            warnings.filterwarnings("ignore", message="The tensor attribute")
            exported = torch.export.export(wrapper, args, dynamic_shapes=dynamic, strict=False)
        traced_ops = traced_scan_ops(exported)
        traced_scans = sum(traced_ops.values())
        seconds["trace"] = time.perf_counter() - t0
        bar.update()

        t0 = time.perf_counter()
        step(1)
        # "torchvision is not installed. Skipping torchvision::nms" etc.: irrelevant to ReMamber
        logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                exported,
                dynamo=True,
                custom_translation_table=ss2d_onnx.custom_translation_table(),
                input_names=list(INPUT_NAMES),
                output_names=output_names,
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
        ir_model = program.model
        if static_batch is None:
            sym = ir_model.graph.inputs[0].shape[0]
            _rename_symbolic_dim(ir_model, str(getattr(sym, "value", sym)), BATCH_DIM)
        import remamber

        props = {
            "remamber.version": remamber.__version__,
            "remamber.variant": str(getattr(model, "variant", "")),
            "remamber.preset": str(getattr(model, "preset", "")),
            "remamber.resolution": str(resolution),
            "remamber.precision": precision,
            "remamber.scan_op": scan_op_metadata(traced_ops),
            "remamber.scan_calls": str(traced_scans),
            "remamber.outputs": ",".join(output_names),
            **(metadata or {}),
        }
        rewritten = 0
        if lowres:
            ir_model, rewritten = _lowres_upsample_convs(ir_model)
        props["remamber.upsample_conv"] = f"lowres ({rewritten} convs)" if rewritten else "direct"
        ir_model.metadata_props.update(props)
        ir_model.producer_name = "remamber-deploy"
        seconds["translate"] = time.perf_counter() - t0
        bar.update()

        t0 = time.perf_counter()
        step(2)
        weight_bytes = sum(v.const_value.nbytes for v in ir_model.graph.initializers.values() if v.const_value is not None)
        use_external = bool(external_data) if external_data is not None else weight_bytes > TWO_GIB - 64 * 2**20
        import onnx_ir as ir

        with atomic_folder(path) as tmp_dir:
            tmp = tmp_dir / path.name
            if use_external:
                ir.save(ir_model, tmp, external_data=path.name + ".data")
            else:
                ir.save(ir_model, tmp)
            seconds["save"] = time.perf_counter() - t0
            bar.update()
            t0 = time.perf_counter()
            step(3)
            report = None
            if check:
                report = graph_checks.check_onnx(tmp, expected_scans=traced_scans, precision=precision)
            seconds["check"] = time.perf_counter() - t0
            bar.update()
    finally:
        wrapper.remove_hooks()
        bar.close()
    summary = graph_checks.summarize(path)
    return ExportResult(
        path=path,
        precision=precision,
        resolution=resolution,
        scan_calls_traced=traced_scans,
        scan_nodes=report.scan_nodes if report else len(graph_checks.all_scan_nodes(graph_checks.load_graph(path))),
        output_names=output_names,
        external_data=use_external,
        seconds=seconds,
        summary=summary,
    )
