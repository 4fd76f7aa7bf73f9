"""The GPU check's fused SS2DScan steps (bench/gpu/ss2d.py, ss2d_cases.py) on a machine without a GPU.

The shape inventory is checked against the ss2d_scan calls of real forwards (the base model on the
meta device at 480 and 1024, the tiny one on the CPU), the byte count against hand arithmetic from
the contract's "Compulsory bytes", and the steps' bookkeeping in a CPU rehearsal (reference for the
kernel: it measures nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

import remamber
from remamber.bench.gpu import shapes, ss2d, ss2d_cases  # noqa: E402  (bench/ is remamber.bench when installed)
from remamber.bench.gpu.common import Run
from remamber.bench.gpu.report import ss2d_targets, summary_text
from remamber.model import presets

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "bench" / "gpu_check.py"


def _recorded_calls(monkeypatch, variant: str, preset: str, resolution: int, device: str) -> Counter:
    """(D, H, W, layout, N) -> calls of remamber.ops.ss2d_scan in one forward of the real model."""
    from remamber.model import ss2d as ss2d_module
    from remamber.bench.gpu.e2e import e2e_inputs

    calls: Counter = Counter()
    original = ss2d_module.ops.ss2d_scan

    def record(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout="cross"):
        calls[(u.shape[1], u.shape[2], u.shape[3], layout, A.shape[1])] += 1
        return original(u, delta, A, B, C, D, delta_bias, delta_softplus, layout)

    monkeypatch.setattr(ss2d_module.ops, "ss2d_scan", record)
    with torch.device(device):
        model = remamber.build_model(variant, preset, seed=0).eval()
    image, ids, mask = e2e_inputs(resolution, torch.device(device), 0)
    with torch.inference_mode():
        model(image, ids, mask)
    return calls


def _inventory_calls(variant, resolution, config) -> Counter:
    got: Counter = Counter()
    for s in ss2d_cases.ss2d_inventory(variant, resolution, config):
        got[(s.dim, s.height, s.width, s.layout, s.nstate)] += s.calls
    return got


def test_inventory_equals_the_calls_of_a_real_forward(monkeypatch):
    # base on the meta device (shapes only, no maths) at both check resolutions; tiny really runs.
    for variant, preset, res, device, config in (("mamba", "base", 1024, "meta", None), ("conv", "base", 480, "meta", None),
                                                 ("mamba", "tiny", 64, "cpu", presets.TINY)):
        got = _recorded_calls(monkeypatch, variant, preset, res, device)
        assert got == _inventory_calls(variant, res, config), (variant, preset, res)


def test_inventory_matches_the_v1_scan_inventory():
    # Each SS2D call is one v1 scan call of 4*D channels over H*W steps, in the same order.
    for variant in ("conv", "mamba"):
        for res in (480, 1024):
            fused = ss2d_cases.ss2d_inventory(variant, res)
            v1 = shapes.scan_inventory(variant, res)
            assert [(s.calls, 4 * s.dim, s.height * s.width) for s in fused] == [(s.calls, s.channels, s.length) for s in v1]
            assert sum(s.calls for s in fused) == presets.BASE.scan_calls(variant)
    assert len(ss2d_cases.unique_ss2d_shapes()) == len(shapes.unique_scan_shapes()) == 12


def test_compulsory_bytes_match_hand_arithmetic():
    # base stage 0 at 1024: B=1, D=256, H=W=256 (L=65,536), N=1, fp32:
    # u 256*65536*4 = 67,108,864; delta 4x = 268,435,456; B+C 2*4*65536*4 = 2,097,152;
    # A, D, delta_bias 3*1024*4 = 12,288; y 67,108,864.
    fp32 = ss2d_cases.ss2d_bytes(1, 256, 256, 256)
    assert fp32["read"] == 67_108_864 + 268_435_456 + 2_097_152 + 12_288
    assert fp32["write"] == 67_108_864
    assert fp32["total"] == 404_762_624
    # The same call unfused moves u four times and writes four outputs: v1 bytes minus 3 reads and 3 writes of B*D*L fp32.
    assert fp32["total"] == shapes.scan_bytes(1, 1024, 65536)["total"] - 6 * 67_108_864
    # fp16 inputs: u 33,554,432 + delta 134,217,728 + B, C 1,048,576 + 12,288, y still fp32.
    assert ss2d_cases.ss2d_bytes(1, 256, 256, 256, in_dtype="float16")["total"] == 235_941_888
    # bidi row, batch 2, N = 16, bf16, no D, no delta_bias: u 2*2*512*384 = 786,432; delta 3,145,728;
    # B+C 2*2*4*16*384*2 = 196,608; A 2048*16*4 = 131,072; y 4*2*512*384 = 1,572,864.
    assert ss2d_cases.ss2d_bytes(2, 512, 1, 384, nstate=16, in_dtype="bfloat16", with_D=False, with_bias=False) == {
        "read": 786_432 + 3_145_728 + 196_608 + 131_072, "write": 1_572_864, "total": 5_832_704}


def test_plan_covers_every_shape_dtype_and_option():
    plan = ss2d_cases.ss2d_plan()
    shapes_ = ss2d_cases.unique_ss2d_shapes()
    have = {(c.batch, c.dim, c.height, c.width, c.layout, c.nstate, c.dtype) for c in plan}
    for d, h, w, lay in shapes_:
        for dt in ("float32", "float16", "bfloat16"):
            assert (1, d, h, w, lay, 1, dt) in have
    assert all(c.unfused for c in plan if c.group == "model shapes b1 N1")
    off = [c for c in plan if c.group == "options off"]
    assert {(c.with_D, c.with_bias) for c in off} == {(False, False), (False, True), (True, False)}
    assert any(not c.softplus for c in off)
    assert {c.nstate for c in plan} == {1, 16} and {c.batch for c in plan} == {1, 4}
    assert {c.layout for c in plan if c.nstate == 16} == {"cross", "bidi"}


def test_channel_sample_reference_equals_the_full_reference():
    case = ss2d_cases.SS2DCase(2, 6, 3, 5, "cross", nstate=2)
    inp = ss2d_cases.make_ss2d_inputs(case, torch.Generator().manual_seed(3), "cpu")
    full = ss2d_cases.ss2d_reference(inp, True, "cross", None)
    dims = [0, 2, 5]
    assert torch.equal(ss2d_cases.ss2d_reference(inp, True, "cross", dims), full[:, dims])


def _tiny_plan(resolutions=None):
    return [ss2d_cases.SS2DCase(1, 4, 3, 5, "cross", unfused=True), ss2d_cases.SS2DCase(2, 4, 1, 7, "bidi", nstate=3)]


@pytest.mark.parametrize("fault", ["none", "unwritten", "off_by_1e-4", "nondeterministic"])
def test_correctness_step_fails_a_wrong_kernel(tmp_path, monkeypatch, fault):
    from remamber.ops import ss2d_scan_reference

    state = {"calls": 0}

    def kernel(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0):
        y = ss2d_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus, layout)
        state["calls"] += 1
        if fault == "unwritten":
            out.view(-1)[1:].copy_(y.reshape(-1)[1:])  # one output left as the NaN poison
            return out
        if fault == "off_by_1e-4":
            y = y * (1 + 1e-4)
        if fault == "nondeterministic" and state["calls"] % 2 == 0:
            y = y.clone()
            y.view(-1)[0] = torch.nextafter(y.view(-1)[0], torch.tensor(float("inf")))
        out.copy_(y)
        return out

    monkeypatch.setattr(ss2d, "ss2d_scan_into", lambda run: kernel)
    monkeypatch.setattr(ss2d, "ss2d_plan", _tiny_plan)
    run = Run(tmp_path, 100.0, [], device="cpu")
    ss2d.step_ss2d_correctness(run, 5, deadline_s=100.0, resolutions=(32,))
    entry = run.results["steps"]["ss2d_correctness"]
    statuses = [c["status"] for c in entry["cases"]]
    if fault == "none":
        assert entry["status"] == "ok" and statuses == ["pass", "pass"] and run.failures == []
        assert entry["cases"][0]["vs_unfused"]["rel_l2"] <= 1e-6
    else:
        assert entry["status"] == "failed" and "FAIL" in statuses and run.failures


def test_summary_reports_the_issue_10_target():
    results = {"steps": {"ss2d_model": {"model": "base conv", "runs": [
        {"resolution": 480, "precision": "fp16", "fused": {"kernel_ms": 5.0}, "selective": {"kernel_ms": 6.0},
         "fused_over_unfused": 5 / 6, "status": "ok"},
        {"resolution": 1024, "precision": "fp16", "fused": {"kernel_ms": 9.0}, "selective": {"kernel_ms": 10.0},
         "fused_over_unfused": 0.9, "target_met": False, "status": "ok"}]}}, "failures": []}
    assert ss2d_targets(results) == [("fused model kernel time @1024 fp16 <= 0.80x unfused", False)]
    text = summary_text(results)
    assert "issue #10 targets: 0 of 1 met; MISSED: fused model kernel time @1024 fp16" in text
    row = next(line for line in text.splitlines() if line.startswith("| 1024"))
    assert [c.strip() for c in row.strip("|").split("|")][:5] == ["1024", "fp16", "9.00", "10.00", ""]
    assert "0.90" in row and row.rstrip("| ").endswith("MISSED")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check_ss2d") / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    p = subprocess.run([sys.executable, str(SCRIPT), "--rehearse-cpu", "--steps", "ss2d_correctness,ss2d_speed,ss2d_model",
                        "--resolutions", "32", "--out", str(out), "--budget-s", "900", "--seed", "7"],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    return p, out


def test_rehearsal_runs_the_fused_steps(rehearsal):
    proc, out = rehearsal
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = json.loads((out / "results.json").read_text())["steps"]
    for name in ("ss2d_correctness", "ss2d_speed", "ss2d_model"):
        assert steps[name]["status"] == "ok", (name, steps[name])
    # at 32 x 32 the rehearsal keeps the shapes of <= 2^20 scan elements (4*D*H*W)
    kept = {(d, h, w, lay) for d, h, w, lay in ss2d_cases.unique_ss2d_shapes((32,)) if 4 * d * h * w <= 2**20}
    assert kept == {(256, 8, 8, "cross"), (512, 4, 4, "cross"), (1024, 2, 2, "cross"), (2048, 1, 1, "cross"), (512, 1, 384, "bidi")}
    corr = steps["ss2d_correctness"]
    planned = [c for c in ss2d_cases.ss2d_plan((32,)) if c.batch * 4 * c.dim * c.nstate * c.height * c.width <= 2**20]
    assert {c.group for c in planned} == {"model shapes b1 N1", "options off", "N16 b1", "b4 N1"}
    assert [c["case"] for c in corr["cases"]] == [c.label() for c in planned]
    assert all(c["status"] == "pass" and c["unwritten_nan"] == 0 for c in corr["cases"])
    assert sum(1 for c in corr["cases"] if "vs_unfused" in c) == 3 * len(kept)
    assert corr["worst"]["rel_l2"] < 1e-5
    speed = steps["ss2d_speed"]
    assert {(tuple(r["shape"][1:]), r["layout"]) for r in speed["scan"]} == {((d, h, w), lay) for d, h, w, lay in kept}
    for r in speed["scan"]:
        d, h, w = r["shape"][1:]
        assert r["bytes"] == ss2d_cases.ss2d_bytes(1, d, h, w, in_dtype=r["dtype"])["total"]
        assert r["GBps"] == pytest.approx(r["bytes"] / (r["median_ms"] * 1e-3) / 1e9)
        assert r["fraction_of_copy"] == pytest.approx(r["GBps"] / speed["copy_GBps"])
    model = steps["ss2d_model"]["runs"]
    assert [(r["resolution"], r["precision"]) for r in model] == [(32, "fp16"), (32, "fp32")]
    for r in model:
        assert r["fused"]["kernel_ms"] is None and "target_met" not in r  # nothing is measured on the CPU
        assert r["fused"]["eager"]["median_ms"] > 0 and r["selective"]["eager"]["median_ms"] > 0
    assert model[1]["logits_rel_l2_fused_vs_selective"] < 1e-4  # fp32: the two scan paths agree
    summary = (out / "summary.md").read_text()
    for heading in ("fused SS2DScan correctness", "fused SS2DScan speed", "summed kernel time fused vs unfused"):
        assert heading in summary
    assert summary.strip().splitlines()[-1].startswith("gpu_check: PASS")
