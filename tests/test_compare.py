"""``remamber-deploy compare``: ORT (custom ops) against PyTorch with Polygraphy's comparator,
per-stage outputs, the verdict and the exit code."""

from __future__ import annotations

import numpy as np
import pytest

from remamber.errors import NativeLibraryError
from remamber.export import parity_check
from remamber.export.intermediates import default_intermediates

from test_export import exported, tiny_model


def _needs_ort_lib():
    from remamber import native

    try:
        native.library_path("ort")
    except NativeLibraryError as exc:
        pytest.skip(f"ONNX Runtime custom-op library missing: {exc}")


def test_compare_with_intermediates_passes():
    _needs_ort_lib()
    model = tiny_model("conv")
    result = exported("conv", 480)
    assert result.output_names == ["logits", "stage0", "stage1", "stage2", "stage3", "decoder"]
    report = parity_check.run_compare(result.path, model, batch=1, intermediates=default_intermediates(model))
    names = [o.name for o in report.outputs]
    assert names == result.output_names
    shapes = {o.name: o.shape for o in report.outputs}
    assert shapes["stage0"] == (1, 16, 120, 120) and shapes["stage3"] == (1, 128, 15, 15)
    assert report.passed, parity_check.format_report(report)
    assert report.first_divergence is None
    for o in report.outputs:
        assert o.polygraphy_pass and o.passed
        assert o.metrics.max_abs_error <= 1e-4 * o.metrics.logit_scale
        assert o.metrics.cosine_similarity > 0.999999
    text = parity_check.format_report(report)
    assert "PARITY PASS" in text and "stage2" in text


def test_compare_detects_divergence_and_where_it_starts():
    """A model whose stage-2 weights differ from the graph's: logits fail, stage0/1 still match,
    and the report names stage2 as the first divergent output."""
    import torch

    _needs_ort_lib()
    import copy

    model = copy.deepcopy(tiny_model("conv"))
    with torch.no_grad():
        block = model.backbone.layers[2] if hasattr(model.backbone, "layers") else None
        assert block is not None, "expected backbone.layers (official module names)"
        for p in block.parameters():
            p.mul_(1.05)
    result = exported("conv", 480)
    report = parity_check.run_compare(result.path, model, batch=1, intermediates=default_intermediates(model))
    verdict = {o.name: o.passed for o in report.outputs}
    assert verdict["stage0"] and verdict["stage1"]
    assert not verdict["stage2"]
    assert report.first_divergence == "stage2"
    assert not report.passed and any(f.startswith("logits:") for f in report.failures)


def test_judge_logits_rules():
    """The verdict rules on hand-made logits (independent of any runtime)."""
    from remamber.parity import compare_logits

    ref = np.linspace(-2, 2, 1001).reshape(1, 1, 7, 143)
    tol = parity_check.TOLERANCES["fp32"]
    assert parity_check.judge_logits(compare_logits(ref, ref + 1e-5), tol) == []
    assert any("max abs error" in f for f in parity_check.judge_logits(compare_logits(ref, ref + 1e-3), tol))
    flipped = ref.copy()
    flipped.flat[600] = -flipped.flat[600]  # a pixel far from the threshold changes sign
    assert any("mask pixels differ" in f for f in parity_check.judge_logits(compare_logits(ref, flipped), tol))
    near = ref.copy()
    i = int(np.argmin(np.abs(ref)))  # |ref| = 0 exactly: a flip within the margin is allowed
    near.flat[i] = 1e-5
    m = compare_logits(ref, near)
    assert m.mask_pixel_mismatch > 0 and m.mismatch_outside_margin == 0
    assert parity_check.judge_logits(m, tol) == []


def test_compare_cli_exit_codes(tmp_path, capsys):
    """Exit 0 on the graph's own weights (from its metadata), 1 with other weights (--seed 1)."""
    _needs_ort_lib()
    from remamber.cli import main

    path = exported("mamba", 480).path
    assert main(["compare", str(path)]) == 0
    out = capsys.readouterr().out
    assert "PARITY PASS" in out and "| logits" in out
    assert main(["compare", str(path), "--seed", "1"]) == 1
    out = capsys.readouterr().out
    assert "PARITY FAIL" in out and "max abs error" in out
    assert main(["compare", str(tmp_path / "missing.onnx")]) == 2
