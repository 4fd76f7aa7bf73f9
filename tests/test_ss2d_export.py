"""Fused export: `remamber-deploy export` writes one remamber::SS2DScan node per SS2D call by default.

Checked on the tiny conv (fp32) and mamba (fp16) models at 480 px, exported once per session:
- one SS2DScan node per SS2D forward (counted with forward hooks on the SS2D modules, not from the
  export), each with the contract's attributes and the model's layout (cross, or bidi for the Twister's
  channel scan), and no SelectiveScan left;
- no Flip/Concat/Transpose/Slice between the projections and the output norm (walked on the graph here,
  independently of export/graph_checks.py, whose own rule is also shown to fire on a doctored graph);
- ONNX Runtime on the fused graph matches PyTorch (fp32: the same bound as the v1 export tests);
- the fp16 graph keeps the scan's activations fp16 and A / D / delta_bias fp32;
- the CLI passes --scan-op through (selective keeps today's graphs: tests/test_export.py checks those).
"""

from __future__ import annotations

import atexit
import collections
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import remamber
from remamber.errors import NativeLibraryError
from remamber.export import graph_checks, ss2d_onnx
from remamber.export.onnx_export import INPUT_NAMES, example_inputs, export_onnx
from remamber.model.ss2d import SS2D
from remamber.parity import compare_logits

_TMP = Path(tempfile.mkdtemp(prefix="remamber-test-ss2d-export-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
RES = 480
LAYOUT_OPS = {"Transpose", "Concat", "Slice", "ReverseSequence"}


@functools.lru_cache(maxsize=None)
def model(variant):
    return remamber.build_model(variant, "tiny", seed=1)  # default scan_op: fused


@functools.lru_cache(maxsize=None)
def exported(variant, precision):
    path = _TMP / f"tiny_{variant}_{RES}_{precision}_fused.onnx"
    return export_onnx(model(variant), path, RES, precision, static_batch=1, progress=False)


@functools.lru_cache(maxsize=None)
def torch_run(variant):
    """Logits and the layout of every SS2D call, in call order (forward hooks on the SS2D modules)."""
    calls = []
    handles = [m.register_forward_hook(lambda mod, a, out: calls.append(mod.layout))
               for m in model(variant).modules() if isinstance(m, SS2D)]
    inputs = example_inputs(1, RES)
    try:
        with torch.no_grad():
            logits = model(variant)(*inputs)
    finally:
        for h in handles:
            h.remove()
    return inputs, logits.numpy(), calls


def ort_logits(path, inputs):
    from remamber.export.ort_session import make_session

    try:
        sess = make_session(path)
    except NativeLibraryError as exc:
        pytest.skip(f"ONNX Runtime custom-op library missing: {exc}")
    return sess.run(["logits"], {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)})[0]


def layout_ops_around(graph: onnx.GraphProto, scan: onnx.NodeProto) -> list[str]:
    """Layout ops between the scan's projections (Convs) and its output LayerNormalization."""
    producers = {o: n for n in graph.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    found = []
    stack = list(scan.input[:5])
    while stack:
        node = producers.get(stack.pop())
        if node is None:
            continue
        if node.op_type in LAYOUT_OPS:
            found.append(node.op_type)
        if node.op_type != "Conv":
            stack.extend(node.input)
    # forwards: the norm's own channel-last permute (a Transpose feeding only the LayerNormalization) is the norm
    (nxt,) = consumers[scan.output[0]]
    while nxt.op_type != "LayerNormalization":
        following = [c for o in nxt.output for c in consumers[o]]
        norm_permute = nxt.op_type == "Transpose" and all(c.op_type == "LayerNormalization" for c in following)
        if nxt.op_type in LAYOUT_OPS and not norm_permute:
            found.append(nxt.op_type)
        assert len(following) == 1, f"{nxt.op_type} {nxt.name} fans out before the norm"
        nxt = following[0]
    return found


@pytest.mark.parametrize("variant,precision", [("conv", "fp32"), ("mamba", "fp16")])
def test_fused_graph_structure(variant, precision):
    result = exported(variant, precision)
    graph = onnx.load(str(result.path))
    onnx.checker.check_model(str(result.path), full_check=True)
    scans = ss2d_onnx.scan_nodes(graph)
    _, _, calls = torch_run(variant)
    assert len(calls) > 0 and len(scans) == len(calls) == result.scan_nodes == result.scan_calls_traced
    assert not [n for n in graph.graph.node if n.op_type == "SelectiveScan"]
    assert collections.Counter(ss2d_onnx.node_layout(n) for n in scans) == collections.Counter(
        {"cross": 0, "bidi": 1}[c] for c in calls)
    for node in scans:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"layout": attrs["layout"], "delta_softplus": 1, "has_D": 1, "has_delta_bias": 1,
                         "plugin_namespace": b"remamber", "plugin_version": b"1"}
        assert ss2d_onnx.node_roles(node) == ["u", "delta", "A", "B", "C", "D", "delta_bias"]
        assert layout_ops_around(graph.graph, node) == [], node.name
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["remamber.scan_op"] == "remamber::SS2DScan v1"


def test_fp16_fused_graph_typing():
    inferred = graph_checks.infer(onnx.load(str(exported("mamba", "fp16").path)))
    assert graph_checks.fp16_typing_violations(inferred) == []
    types = graph_checks.value_types(inferred)
    for node in ss2d_onnx.scan_nodes(inferred):
        u, delta, A, B, C, D, db = node.input
        assert {types[t][0] for t in (u, delta, B, C)} == {onnx.TensorProto.FLOAT16}
        assert {types[t][0] for t in (A, D, db, node.output[0])} == {onnx.TensorProto.FLOAT}


def test_ort_runs_the_fused_graph_like_pytorch():
    inputs, ref, _ = torch_run("conv")
    out = ort_logits(exported("conv", "fp32").path, inputs)
    m = compare_logits(ref, out, margin=1e-3)
    assert m.nan_count == 0
    assert m.max_abs_error <= 1e-4 * m.logit_scale, m
    assert m.mismatch_outside_margin == 0, m


def test_ort_runs_the_fused_fp16_graph():
    inputs, ref, _ = torch_run("mamba")
    out = ort_logits(exported("mamba", "fp16").path, inputs)
    m = compare_logits(ref, out, margin=1e-2)
    assert m.nan_count == 0
    assert m.max_abs_error <= 2e-2 * m.logit_scale, m


def test_graph_check_flags_layout_ops_around_a_fused_scan():
    """export/graph_checks.py's rule fires when a Transpose pair is spliced in after an SS2DScan."""
    graph = onnx.load(str(exported("conv", "fp32").path))
    assert graph_checks.fused_layout_violations(graph) == []
    scan = ss2d_onnx.scan_nodes(graph)[0]
    out = scan.output[0]
    for node in graph.graph.node:
        node.input[:] = [f"{out}_moved" if i == out else i for i in node.input]
    graph.graph.node.extend([
        onnx.helper.make_node("Transpose", [out], [f"{out}_t"], perm=[0, 1, 3, 2], name="spliced_t1"),
        onnx.helper.make_node("Transpose", [f"{out}_t"], [f"{out}_moved"], perm=[0, 1, 3, 2], name="spliced_t2"),
    ])
    problems = graph_checks.fused_layout_violations(graph)
    assert len(problems) == 1 and "spliced_t1" in problems[0] and scan.name in problems[0], problems


def test_cli_passes_scan_op_through(monkeypatch, tmp_path):
    from remamber.cli import main
    from remamber.export import onnx_export

    seen = {}

    class Stop(Exception):
        pass

    def fake_export(model, path, resolution, precision, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export)
    for flag, expected in (([], "fused"), (["--scan-op", "selective"], "selective")):
        with pytest.raises(Stop):
            main(["export", "--preset", "tiny", "--quiet", "-o", str(tmp_path / "x.onnx"), *flag])
        assert seen["scan_op"] == expected
    with pytest.raises(SystemExit) as exc:
        main(["export", "--preset", "tiny", "--scan-op", "fast", "-o", str(tmp_path / "x.onnx")])
    assert exc.value.code == 2
