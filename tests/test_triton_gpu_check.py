"""The GPU check's Triton steps (bench/gpu/triton_check.py: triton_correctness, triton_speed, triton_e2e) on
a machine without a GPU, as tests/test_gpu_check*.py test the other steps:

- the CPU rehearsal runs the three steps through bench/gpu_check.py and writes their tables (references
  stand in for both kernels: nothing is measured);
- the correctness step fails a kernel that leaves an output unwritten, is off by 1e-4 or is not
  bit-repeatable (that it passes the real Triton kernels is tests/triton_interpreter_cases.py's, which
  needs the interpreter in a fresh process);
- the summary reports issue #14's ratio target as met / MISSED from the recorded rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from remamber.bench.gpu import cases, ss2d_cases, triton_check  # noqa: E402  (bench/ is remamber.bench when installed)
from remamber.bench.gpu.common import Run
from remamber.bench.gpu.main import GPU_STEPS, TRITON_STEPS
from remamber.bench.gpu.report import summary_text

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "bench" / "gpu_check.py"


def test_triton_steps_are_registered_last():
    assert GPU_STEPS[-len(TRITON_STEPS):] == TRITON_STEPS


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check_triton") / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("TRITON_INTERPRET", None)
    p = subprocess.run([sys.executable, str(SCRIPT), "--rehearse-cpu", "--steps", ",".join(TRITON_STEPS), "--resolutions", "32",
                        "--out", str(out), "--budget-s", "900", "--seed", "7"],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    return p, out


def test_rehearsal_runs_the_triton_steps(rehearsal):
    proc, out = rehearsal
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = json.loads((out / "results.json").read_text())["steps"]
    for name in TRITON_STEPS:
        assert steps[name]["status"] == "ok", (name, steps[name])
    corr = steps["triton_correctness"]
    # the CUDA kernel's matrices, cut to <= 2^20 scan elements in a rehearsal
    v1 = [c.label() for c in cases.correctness_plan() if c.batch * c.channels * c.nstate * c.length <= 2**20]
    fused = [c.label() for c in ss2d_cases.ss2d_plan((32,)) if c.batch * 4 * c.dim * c.nstate * c.height * c.width <= 2**20]
    assert [c["case"] for c in corr["cases"]] == v1 + fused
    assert {g.split(":")[0] for g in corr["by_group"]} == {"v1", "fused"}
    assert all(c["status"] == "pass" and c["unwritten_nan"] == 0 and c["bitwise_repeatable"] for c in corr["cases"])
    assert corr["capture_compile"] == {"status": "skipped: needs a CUDA device"}
    speed = steps["triton_speed"]
    assert {r["op"] for r in speed["scan"]} == {"v1", "fused"}
    for r in speed["scan"]:
        assert r["status"] == "ok" and "target_met" not in r  # nothing is judged on the CPU
        assert r["triton_GBps"] == pytest.approx(r["bytes"] / (r["triton"]["median_ms"] * 1e-3) / 1e9)
        assert r["triton_of_copy"] == pytest.approx(r["triton_GBps"] / speed["copy_GBps"])
        assert r["triton_over_cuda"] == pytest.approx(r["triton"]["median_ms"] / r["cuda"]["median_ms"])
    e2e = steps["triton_e2e"]["runs"]
    assert [(r["resolution"], r["precision"]) for r in e2e] == [(32, "fp32"), (32, "fp16")]
    assert all(r["parity_pass"] and r["cudagraph"]["status"].startswith("skipped") for r in e2e)
    summary = (out / "summary.md").read_text()
    for heading in ("triton backend correctness", "triton vs cuda kernel", "backend end to end"):
        assert heading in summary
    assert summary.strip().splitlines()[-1].startswith("gpu_check: PASS")


def test_summary_reports_the_issue_14_target():
    row = lambda shape, ratio, **kw: {"op": "v1", "shape": shape, "dtype": "float16", "triton": {"median_ms": ratio * 0.01},  # noqa: E731
                                      "cuda": {"median_ms": 0.01}, "triton_GBps": 100.0, "cuda_GBps": 130.0, "triton_of_copy": 0.1,
                                      "triton_over_cuda": ratio, "target_met": ratio <= 1.3, "status": "ok", **kw}
    results = {"steps": {"triton_speed": {"copy_GBps": 1000.0, "scan": [row([1, 2048, 384], 1.2), row([1, 1024, 65536], 1.5)]}},
               "failures": []}
    assert triton_check.triton_targets(results) == [("triton v1 1x2048x384 float16 <= 1.3x cuda", True),
                                                    ("triton v1 1x1024x65536 float16 <= 1.3x cuda", False)]
    text = summary_text(results)
    assert "issue #14 targets: 1 of 2 met; MISSED: triton v1 1x1024x65536 float16 <= 1.3x cuda" in text
    line = next(l for l in text.splitlines() if "1x1024x65536" in l and l.startswith("| v1"))
    assert "1.50" in line and line.rstrip("| ").endswith("MISSED")


# ---- the correctness step with broken kernels ------------------------------------------------------------

def _tiny_v1_plan(run):
    return [cases.ScanCase(1, 8, 45, 2, 4, "float16", api=True), cases.ScanCase(2, 6, 33, 3, 1, with_D=False, softplus=False)]


def _tiny_fused_plan(run, resolutions):
    return [ss2d_cases.SS2DCase(1, 3, 5, 7, "cross", nstate=4), ss2d_cases.SS2DCase(2, 2, 1, 40, "bidi", dtype="bfloat16")]


@pytest.mark.parametrize("fault", ["unwritten", "off_by_1e-4", "nondeterministic"])
def test_correctness_step_fails_a_wrong_kernel(tmp_path, monkeypatch, fault):
    from remamber.ops import selective_scan_reference, ss2d_scan_reference

    state = {"calls": 0}

    def damage(out, y):
        state["calls"] += 1
        if fault == "unwritten":
            out.view(-1)[1:].copy_(y.reshape(-1)[1:])  # one output left as the NaN poison
            return out
        if fault == "off_by_1e-4":
            y = y * (1 + 1e-4)
        if fault == "nondeterministic" and state["calls"] % 2 == 0:
            y = y.clone()
            y.view(-1)[0] = torch.nextafter(y.view(-1)[0], torch.tensor(float("inf")))
        return out.copy_(y)

    def v1(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
        return damage(out, selective_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus))

    def fused(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0):
        return damage(out, ss2d_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus, layout))

    monkeypatch.setattr(triton_check, "triton_into", lambda run: (v1, fused))
    monkeypatch.setattr(triton_check, "v1_plan", _tiny_v1_plan)
    monkeypatch.setattr(triton_check, "fused_plan", _tiny_fused_plan)
    run = Run(tmp_path, 100.0, [], device="cpu")
    triton_check.step_triton_correctness(run, 3, deadline_s=100.0, resolutions=(32,))
    entry = run.results["steps"]["triton_correctness"]
    assert entry["status"] == "failed" and run.failures
    assert all(c["status"] == "FAIL" for c in entry["cases"]), entry["cases"]
