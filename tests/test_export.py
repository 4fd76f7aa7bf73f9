"""ONNX export: checker, shape inference, the scan-node rule, ORT parity (fp32/fp16), dynamic batch,
external data, atomic writes and the export CLI's errors.

The exported graphs are shared with tests/test_compare.py and tests/test_engine.py through
``exported()`` (one export per configuration and pytest session): export is the slow step.
ORT needs the custom-op library (``bash scripts/build_native.sh``); tests that run a session skip
with the reason when it is missing.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import remamber
import remamber.ops
from remamber.errors import NativeLibraryError

from remamber.export import graph_checks, scan_onnx
from remamber.export.intermediates import default_intermediates
from remamber.export.onnx_export import INPUT_NAMES, export_onnx, example_inputs
from remamber.export.parity_check import TOLERANCES, judge_logits
from remamber.parity import compare_logits

_TMP = Path(tempfile.mkdtemp(prefix="remamber-test-export-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def tiny_model(variant: str):
    """The v1 graphs (``scan_op="selective"``: SelectiveScan + layout ops) are what these tests, and
    test_compare.py / test_engine.py through ``exported()``, check; the fused default (SS2DScan) has its
    own export tests in tests/test_ss2d_export.py."""
    return remamber.build_model(variant, "tiny", seed=0, scan_op="selective")


def is_dynamic(variant: str, resolution: int, precision: str) -> bool:
    """Which test graphs keep the dynamic batch (the export default). A symbolic batch makes
    torch.export ~2.5x slower (measured: 70 s against 26 s for tiny conv 480), so only the
    conv/480/fp32 graph keeps it and the others are exported with a static batch of 1 to keep CI
    time down."""
    return (variant, resolution, precision) == ("conv", 480, "fp32")


def is_marked(variant: str, resolution: int, precision: str) -> bool:
    """The conv/480/fp32 graph also carries the per-stage outputs (used by test_compare.py)."""
    return (variant, resolution, precision) == ("conv", 480, "fp32")


@functools.lru_cache(maxsize=None)
def exported(variant: str, resolution: int, precision: str = "fp32"):
    """Export the tiny model once per configuration and session; returns the ExportResult."""
    model = tiny_model(variant)
    marks = default_intermediates(model) if is_marked(variant, resolution, precision) else None
    path = _TMP / f"tiny_{variant}_{resolution}_{precision}.onnx"
    return export_onnx(model, path, resolution, precision, intermediates=marks, progress=False,
                       static_batch=None if is_dynamic(variant, resolution, precision) else 1)


class ScanCounter(TorchDispatchMode):
    """Counts the scan-op calls the PyTorch model makes (independent of the export): remamber::selective_scan
    in the unfused model, remamber::ss2d_scan (one per SS2D) in the fused one."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.remamber.selective_scan.default, torch.ops.remamber.ss2d_scan.default):
            self.calls += 1
        return func(*args, **(kwargs or {}))


@functools.lru_cache(maxsize=None)
def torch_logits(variant: str, resolution: int, batch: int, seed: int = 0):
    """PyTorch fp32 logits on the shared inputs, and the number of scan calls of that forward."""
    inputs = example_inputs(batch, resolution, seed=seed)
    counter = ScanCounter()
    with torch.no_grad(), counter:
        logits = tiny_model(variant)(*inputs)
    return inputs, logits.numpy(), counter.calls


def ort_session(path):
    from remamber.export.ort_session import make_session

    try:
        return make_session(path)
    except NativeLibraryError as exc:
        pytest.skip(f"ONNX Runtime custom-op library missing: {exc}")


def run_ort(path, inputs):
    sess = ort_session(path)
    return sess.run(["logits"], {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)})[0]


def assert_fp32_parity(ref, out):
    m = compare_logits(ref, out, margin=1e-3)
    assert m.nan_count == 0
    assert m.max_abs_error <= 1e-4 * m.logit_scale, m
    # identical masks except where the PyTorch logit lies within 1e-3 of the threshold
    assert m.mismatch_outside_margin == 0, m
    return m


CONFIGS = [("conv", 480), ("mamba", 480), ("conv", 1024), ("mamba", 1024)]


@pytest.mark.parametrize("variant,resolution", CONFIGS)
def test_export_graph_rules(variant, resolution):
    result = exported(variant, resolution)
    path = result.path
    # the full checker and strict shape inference, run here independently of export_onnx's own checks
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    (logits,) = [o for o in inferred.graph.output if o.name == "logits"]
    b = "batch" if is_dynamic(variant, resolution, "fp32") else 1
    dims = [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim]
    assert dims == [b, 1, resolution, resolution]
    assert logits.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ins = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert ins == {"image": [b, 3, resolution, resolution], "input_ids": [b, 20], "attention_mask": [b, 20]}
    outs = [o.name for o in model.graph.output]
    assert outs == (["logits", "stage0", "stage1", "stage2", "stage3", "decoder"]
                    if is_marked(variant, resolution, "fp32") else ["logits"])
    # one SelectiveScan node per scan call the PyTorch model makes (counted by a dispatch mode)
    _, _, calls = torch_logits(variant, resolution, 1)
    nodes = scan_onnx.scan_nodes(model)
    assert calls > 0 and len(nodes) == calls
    assert result.scan_calls_traced == calls
    # no other non-standard op; cross-scan/merge are standard ops
    assert {(n.domain or "") for n in model.graph.node} <= {"", "ai.onnx", "remamber"}
    assert not model.functions
    for node in nodes:
        assert scan_onnx.node_roles(node) == ["u", "delta", "A", "B", "C", "D", "delta_bias"]
        assert "" not in node.input  # the TensorRT parser cannot take empty-name inputs
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        # plugin_namespace / plugin_version: TensorRT 10.0-10.9 (JetPack 6) finds the plugin by them only
        assert attrs == {"delta_softplus": 1, "has_D": 1, "has_delta_bias": 1,
                         "plugin_namespace": b"remamber", "plugin_version": b"1"}
    # A is constant-folded to an fp32 initializer holding -exp(A_logs)
    inits = {i.name: i for i in model.graph.initializer}
    a_init = inits[nodes[0].input[2]]
    assert a_init.data_type == onnx.TensorProto.FLOAT
    assert np.all(onnx.numpy_helper.to_array(a_init) < 0)
    assert result.summary.ops["remamber::SelectiveScan"] == calls


@pytest.mark.parametrize("variant,resolution", CONFIGS)
def test_ort_matches_pytorch_fp32(variant, resolution):
    path = exported(variant, resolution).path
    inputs, ref, _ = torch_logits(variant, resolution, 1)
    out = run_ort(path, inputs)
    assert out.shape == (1, 1, resolution, resolution)
    assert_fp32_parity(ref, out)


def test_dynamic_batch():
    """Batch 2 and 3 through a graph exported with the default (dynamic) batch, as users export it."""
    variant = "conv"
    path = exported(variant, 480).path
    sess = ort_session(path)
    for batch in (2, 3):
        inputs, ref, _ = torch_logits(variant, 480, batch, seed=batch)
        out = sess.run(["logits"], {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)})[0]
        assert out.shape == (batch, 1, 480, 480)
        assert_fp32_parity(ref, out)
        # the samples of a batch are independent: each equals its own batch-1 run
        single = sess.run(["logits"], {n: t[1:2].numpy() for n, t in zip(INPUT_NAMES, inputs)})[0]
        np.testing.assert_allclose(single[0], out[1], rtol=0, atol=1e-4 * float(np.abs(ref).max()))


# fp16: one resolution per variant keeps CI time down while covering both variants and sizes
FP16_CONFIGS = [("conv", 480), ("mamba", 1024)]


@pytest.mark.parametrize("variant,resolution", FP16_CONFIGS)
def test_fp16_export_typing_and_parity(variant, resolution):
    result = exported(variant, resolution, "fp16")
    model = onnx.load(str(result.path))
    inferred = graph_checks.infer(model)
    assert graph_checks.fp16_typing_violations(inferred) == []
    # the scan activations really are half precision and the op output float32
    types = graph_checks.value_types(inferred)
    for node in scan_onnx.scan_nodes(inferred):
        u, delta, A, B, C, D, db = node.input
        assert types[u][0] == onnx.TensorProto.FLOAT16 and types[B][0] == onnx.TensorProto.FLOAT16
        assert types[A][0] == types[D][0] == types[db][0] == onnx.TensorProto.FLOAT
        assert types[node.output[0]][0] == onnx.TensorProto.FLOAT
    assert result.scan_nodes == torch_logits(variant, resolution, 1)[2]
    fp32_bytes = exported(variant, resolution).summary.parameter_bytes if (variant, resolution) in CONFIGS else None
    if fp32_bytes:
        assert result.summary.parameter_bytes < 0.6 * fp32_bytes
    inputs, ref, _ = torch_logits(variant, resolution, 1)
    out = run_ort(result.path, inputs)
    m = compare_logits(ref, out, margin=1e-3)
    assert judge_logits(m, TOLERANCES["fp16"]) == [], m
    # and it is not accidentally fp32: some difference must exist
    assert m.max_abs_error > 0


def test_fp16_typing_check_catches_violations():
    """The checker that guards the fp16 rules fails on a graph that breaks them (hand-made graph)."""
    from onnx import TensorProto, helper

    scan_onnx.register_schema()
    u = helper.make_tensor_value_info("u", TensorProto.FLOAT16, [1, 8, 16])
    a16 = helper.make_tensor_value_info("A16", TensorProto.FLOAT16, [8, 1])
    bc = helper.make_tensor_value_info("B", TensorProto.FLOAT16, [1, 2, 1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16])
    nodes = [
        helper.make_node("Cast", ["A16"], ["A"], to=TensorProto.FLOAT),
        helper.make_node("SelectiveScan", ["u", "u", "A", "B", "B"], ["y"], domain="remamber",
                         delta_softplus=1, has_D=0, has_delta_bias=0),
    ]
    graph = helper.make_graph(nodes, "g", [u, a16, bc], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("remamber", 1)])
    problems = graph_checks.fp16_typing_violations(graph_checks.infer(model))
    assert any("A is computed from the float16 tensor A16" in p for p in problems), problems
    assert any("graph input u is float16" in p for p in problems), problems


def test_checker_rejects_malformed_scan_node(tmp_path):
    """Wrong rank / wrong dtype / inconsistent has_* are caught by the registered schema."""
    from onnx import TensorProto, helper

    def graph(u_shape, a_type=TensorProto.FLOAT, n_inputs=7, has_d=1):
        vis = [
            helper.make_tensor_value_info("u", TensorProto.FLOAT, u_shape),
            helper.make_tensor_value_info("A", a_type, [8, 1]),
            helper.make_tensor_value_info("B", TensorProto.FLOAT, [1, 2, 1, 16]),
            helper.make_tensor_value_info("D", TensorProto.FLOAT, [8]),
        ]
        ins = ["u", "u", "A", "B", "B", "D", "D"][:n_inputs]
        node = helper.make_node("SelectiveScan", ins, ["s"], domain="remamber", delta_softplus=1, has_D=has_d,
                                has_delta_bias=1)
        ident = helper.make_node("Identity", ["s"], ["y"])
        g = helper.make_graph([node, ident], "g", vis, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("remamber", 1)])
        p = tmp_path / "g.onnx"
        onnx.save(m, p)
        return p

    good = graph([1, 8, 16])
    assert graph_checks.check_onnx(good, expected_scans=1).scan_nodes == 1
    inferred = graph_checks.infer(onnx.load(str(good)))
    assert graph_checks.value_types(inferred)["s"] == (onnx.TensorProto.FLOAT, [1, 8, 16])
    with pytest.raises(graph_checks.GraphCheckError, match="input u must have rank 3, got rank 4"):
        graph_checks.check_onnx(graph([1, 8, 16, 1]))
    with pytest.raises(graph_checks.GraphCheckError, match="input A must be float32"):
        graph_checks.check_onnx(graph([1, 8, 16], a_type=TensorProto.FLOAT16))
    with pytest.raises(graph_checks.GraphCheckError, match="do not match 6 inputs"):
        graph_checks.check_onnx(graph([1, 8, 16], n_inputs=6, has_d=1))
    with pytest.raises(graph_checks.GraphCheckError, match=r"1 scan nodes \(remamber::SelectiveScan or SS2DScan\) but the PyTorch model makes 2 scan calls"):
        graph_checks.check_onnx(graph([1, 8, 16]), expected_scans=2)


class _OptionalInputs(torch.nn.Module):
    """Scan calls with D only, delta_bias only and neither (ReMamber always passes both)."""

    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(-torch.rand(8, 1) - 0.1)
        self.D = torch.nn.Parameter(torch.randn(8))
        self.bias = torch.nn.Parameter(torch.randn(8) * 0.1)

    def forward(self, image, input_ids, attention_mask):
        b = image.shape[0]
        x = image.reshape(b, 3, -1)[:, :, :64].repeat(1, 3, 1)[:, :8]  # (b, 8, 64)
        bc = x[:, :2].reshape(b, 2, 1, 64)
        y1 = remamber.ops.selective_scan(x, x.sigmoid(), self.A, bc, bc, self.D, None, True)
        y2 = remamber.ops.selective_scan(x, x.sigmoid(), self.A, bc, bc, None, self.bias, True)
        y3 = remamber.ops.selective_scan(x, x, self.A, bc, bc, None, None, False)
        s = (y1 + y2 + y3).mean(dim=(1, 2)) + attention_mask.sum(1) * 0 + input_ids.sum(1) * 0
        return s[:, None, None, None].expand(b, 1, 32, 32).contiguous()


def test_optional_inputs_and_external_data(tmp_path):
    """Absent optional inputs are left out with has_* attributes (plugin README convention), and
    the forced external-data path writes both files atomically and runs in ORT."""
    torch.manual_seed(0)
    model = _OptionalInputs().eval()
    out = tmp_path / "opt.onnx"
    result = export_onnx(model, out, 32, external_data=True, progress=False)
    assert result.external_data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt.onnx", "opt.onnx.data"]
    onnx.checker.check_model(str(out), full_check=True)
    nodes = scan_onnx.scan_nodes(onnx.load(str(out), load_external_data=False))
    roles = [scan_onnx.node_roles(n) for n in nodes]
    assert roles == [["u", "delta", "A", "B", "C", "D"], ["u", "delta", "A", "B", "C", "delta_bias"],
                     ["u", "delta", "A", "B", "C"]]
    lookup = {"plugin_namespace": b"remamber", "plugin_version": b"1"}  # for TensorRT < 10.10's parser
    assert [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes] == [
        {"delta_softplus": 1, "has_D": 1, "has_delta_bias": 0, **lookup},
        {"delta_softplus": 1, "has_D": 0, "has_delta_bias": 1, **lookup},
        {"delta_softplus": 0, "has_D": 0, "has_delta_bias": 0, **lookup},
    ]
    inputs = example_inputs(2, 32, seed=3)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    got = run_ort(out, inputs)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_failed_check_leaves_no_file(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise graph_checks.GraphCheckError("forced failure")

    monkeypatch.setattr(graph_checks, "check_onnx", broken)
    with pytest.raises(graph_checks.GraphCheckError):
        export_onnx(_OptionalInputs().eval(), tmp_path / "x.onnx", 32, external_data=True, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--resolution", "500"], "resolution 500 is not a positive multiple of 32"),
        (["--checkpoint", "{tmp}/nope.pth"], "does not exist"),
        (["--output", "{tmp}/x.onnx", "--resolution", "0"], "not a positive multiple of 32"),
    ],
)
def test_export_cli_bad_input(tmp_path, capsys, argv, message):
    from remamber.cli import main

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = tmp_path / "out.onnx"
    code = main(["export", "--preset", "tiny", "--output", str(out), *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_export_cli_unknown_variant(tmp_path, capsys):
    from remamber.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", "--preset", "tiny", "--variant", "transformer", "--output", str(tmp_path / "o.onnx")])
    assert exc.value.code == 2
    assert "invalid choice: 'transformer'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_cli_writes_and_summarises(tmp_path, capsys):
    """The CLI end to end on a checkpoint file (written by remamber.checkpoint)."""
    from remamber.checkpoint import save_checkpoint
    from remamber.cli import main

    ckpt = save_checkpoint(tiny_model("conv"), tmp_path / "tiny_conv.pth")
    out = tmp_path / "cli.onnx"
    code = main(["export", "--checkpoint", str(ckpt), "--preset", "tiny", "--variant", "conv",
                 "--resolution", "64", "--static-batch", "1", "--output", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    # the CLI's default is the fused op: one SS2DScan node per SS2D call (test_ss2d_export covers --scan-op)
    assert "remamber::SS2DScan" in text and "(1, 1, 64, 64)" in text and "parameters" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.onnx", "tiny_conv.pth"]
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert meta["remamber.variant"] == "conv" and meta["remamber.weights"] == str(ckpt.resolve())


@pytest.mark.slow
def test_base_conv_480_export_parity_and_rtx_build(tmp_path):
    """The published size end to end: export, ORT parity against PyTorch, TensorRT-RTX build."""
    import gc
    import importlib.util
    import time

    from remamber.export import engine_builder

    model = remamber.build_model("conv", "base", seed=0)
    path = tmp_path / "base_conv_480.onnx"
    t0 = time.perf_counter()
    result = export_onnx(model, path, 480, progress=False)
    export_s = time.perf_counter() - t0
    inputs = example_inputs(1, 480, seed=0)
    counter = ScanCounter()
    with torch.no_grad(), counter:
        ref = model(*inputs).numpy()
    assert counter.calls == result.scan_nodes == result.scan_calls_traced
    assert result.summary.parameter_bytes > 900e6 and not result.external_data
    del model
    gc.collect()
    sess = ort_session(path)
    out = sess.run(["logits"], {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)})[0]
    del sess
    m = assert_fp32_parity(ref, out)
    print(f"\nbase conv 480: export {export_s:.0f} s {result.seconds}; ORT parity max abs {m.max_abs_error:.3g} "
          f"(scale {m.logit_scale:.3g}), cosine {m.cosine_similarity:.8f}")
    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("export and ORT parity passed; tensorrt_rtx not installed, so no engine build")
    try:
        from remamber import native

        native.library_path("trt")
    except NativeLibraryError as exc:
        pytest.skip(f"export and ORT parity passed; TensorRT plugin library missing: {exc}")
    built = engine_builder.build_engine(path, tmp_path / "base.engine", flavour="tensorrt_rtx", progress=False)
    assert Path(built.engine_path).stat().st_size > 100e6
    print(f"TensorRT-RTX build {built.seconds:.1f} s")
