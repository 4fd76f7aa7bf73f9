"""bench/gpu_check.py on a machine without a GPU, and the "cuda" scan backend's behaviour there.

The shape list and byte counts are checked against values computed here from REMAMBER_SPEC's
formulas and tables (section 5.2/5.3), not against the script's own output.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "bench" / "gpu_check.py"

from remamber.bench.gpu import cases, shapes  # noqa: E402  (installed editable: bench/ is remamber.bench)
from remamber.bench.gpu import main as gpu_main  # noqa: E402


def _script_env() -> dict:
    # As on the GPU machine: the package is found through PYTHONPATH=<repo root>, not an install.
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check_dry")
    p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], cwd=REPO_ROOT,
                       env=_script_env(), capture_output=True, text=True, timeout=300)
    return p, out


def test_dry_run_writes_json_with_every_section(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text())
    steps = results["steps"]
    assert list(steps) == ["probe", "shapes", "reference_cpu", *gpu_main.GPU_STEPS]
    for name in ("probe", "shapes", "reference_cpu"):
        assert steps[name]["status"] == "ok", steps[name]
    for name in gpu_main.GPU_STEPS:
        assert steps[name]["status"] == "skipped"
        assert steps[name]["reason"] in ("no CUDA device", "--dry-run")
    probe = steps["probe"]
    for key in ("torch", "cuda_available", "nvcc", "modules", "python"):
        assert key in probe
    assert "tensorrt" in probe["modules"] and "tensorrt_rtx" in probe["modules"]
    shapes = steps["shapes"]
    assert len(shapes["floors_per_shape"]) == len(shapes["unique_shapes"]) == 12
    assert shapes["correctness_plan"]["cases"] == len(shapes["correctness_plan"]["labels"]) > 100
    ref = steps["reference_cpu"]
    assert ref["total"] == ref["passed"] >= 10
    assert results["failures"] == []
    assert (out / "gpu_check.log").stat().st_size > 0
    # The short table comes last, with the verdict on the final line.
    assert proc.stdout.strip().splitlines()[-1].startswith("gpu_check: PASS")
    assert "skipped" in proc.stdout


def _spec_shapes(resolution: int) -> dict[tuple[int, int], int]:
    """REMAMBER_SPEC 5.2 from its formulas: stage dims C_s = 128*2^s, H = S/2^(s+2), spatial
    scans K*D = 4 directions * 2C = 8*C_s over L = H^2; channel scans K*D = 4 * 2 * 256 over L = 3*C_s."""
    calls: dict[tuple[int, int], int] = {}
    depths = [2, 2, 15, 2]
    for s in range(4):
        c = 128 * 2**s
        h = resolution // 2 ** (s + 2)
        spatial = (8 * c, h * h)
        calls[spatial] = calls.get(spatial, 0) + depths[s] + 2  # VSS blocks + 2 twister spatial scans
        channel = (2048, 3 * c)
        calls[channel] = calls.get(channel, 0) + 2
    return calls


def test_shape_list_equals_spec_formulas():
    expected = set(_spec_shapes(480)) | set(_spec_shapes(1024))
    assert set(shapes.unique_scan_shapes()) == expected
    assert len(expected) == 12
    # Spot values copied from the spec's table (5.2).
    assert {(1024, 14400), (2048, 384), (4096, 900), (8192, 225), (2048, 3072)} <= set(_spec_shapes(480))
    assert {(1024, 65536), (2048, 16384), (4096, 4096), (8192, 1024)} <= set(_spec_shapes(1024))
    for res in (480, 1024):
        got: dict[tuple[int, int], int] = {}
        for site in shapes.scan_inventory("conv", res):
            got[(site.channels, site.length)] = got.get((site.channels, site.length), 0) + site.calls
            assert site.groups == 4 and site.nstate == 1
        assert got == _spec_shapes(res)
        assert sum(s.calls for s in shapes.scan_inventory("conv", res)) == 37
        assert sum(s.calls for s in shapes.scan_inventory("mamba", res)) == 47


def test_byte_and_flop_counts_match_hand_arithmetic():
    # (1, 1024, 14400), G = 4, N = 1, fp32: u + delta 2*1024*14400*4, B + C 2*4*1*14400*4,
    # A + D + delta_bias 3*1024*4, y 1024*14400*4.
    fp32 = shapes.scan_bytes(1, 1024, 14400, 4, 1, "float32")
    assert fp32["read"] == 117_964_800 + 460_800 + 12_288
    assert fp32["write"] == 58_982_400
    assert fp32["total"] == 177_420_288  # spec 5.3: 177.4 MB
    fp16 = shapes.scan_bytes(1, 1024, 14400, 4, 1, "float16")
    assert fp16["total"] == 58_982_400 + 230_400 + 12_288 + 58_982_400  # spec: 118.2 MB
    assert shapes.scan_bytes(1, 1024, 14400, 4, 1, "float32", with_D=False, with_bias=False)["total"] == 177_420_288 - 8192
    assert shapes.scan_flops(1, 1024, 14400, 1) == 10 * 1024 * 14400
    # Whole-model totals of spec 5.3 (MB = 1e6 B; fp32 and fp16-in/fp32-out; GFLOP).
    spec = {("conv", 480): (2190, 1460, 1.821), ("conv", 1024): (8955, 5968, 7.450),
            ("mamba", 480): (2944, 1962, 2.448), ("mamba", 1024): (12384, 8253, 10.302)}
    for (variant, res), (mb32, mb16, gflop) in spec.items():
        t = shapes.model_totals(variant, res)
        assert abs(t["bytes_fp32"] / 1e6 - mb32) <= 1.0
        assert abs(t["bytes_fp16in"] / 1e6 - mb16) <= 1.0
        assert abs(t["gflop"] - gflop) <= 0.001


def test_perf_md_floor_tables_are_current():
    text = (REPO_ROOT / "docs" / "PERF.md").read_text(encoding="utf-8")
    assert shapes.floors_table().strip() in text, "regenerate with: python bench/gpu_check.py --floors-table"


def test_correctness_plan_covers_the_matrix():
    plan = cases.correctness_plan()
    have = {(c.batch, c.channels, c.length, c.nstate, c.dtype) for c in plan}
    for ch, ln in shapes.unique_scan_shapes():
        for dt in ("float32", "float16"):
            for b in (1, 4):
                assert (b, ch, ln, 1, dt) in have
                assert (b, ch, ln, 16, dt) in have
    lengths = {c.length for c in plan}
    assert {1, 2049, 4097, 65537} <= lengths
    assert any(c.length % 2 == 1 and c.length > 1 for c in plan)
    assert any(not c.with_D and not c.with_bias for c in plan) and any(not c.softplus for c in plan)
    assert {c.groups for c in plan} >= {1, 2, 4, 8}
    assert cases.ERROR_BOUND["float16"] == cases.ERROR_BOUND["float32"] == 1e-5


def test_reference_on_a_channel_sample_equals_the_full_reference(monkeypatch):
    """The heavy cases compare a channel sample; the sample must keep each channel's group."""
    monkeypatch.setattr(cases, "REFERENCE_ELEMENT_BUDGET", 3000)
    case = cases.ScanCase(2, 24, 50, groups=4, nstate=3)
    chans = cases.reference_channels(case, random.Random(0))
    assert chans is not None and len(chans) < 24
    per_group = len(chans) // 4
    assert [c // 6 for c in chans] == [g for g in range(4) for _ in range(per_group)]
    assert {0, 5, 6, 11, 12, 17, 18, 23} <= set(chans)
    inp = cases.make_inputs(case, torch.Generator().manual_seed(1), "cpu")
    sub = cases.reference_scan(inp, True, chans)
    full = cases.reference_scan(inp, True, None)
    torch.testing.assert_close(sub, full[:, chans], rtol=1e-12, atol=1e-12)
    assert cases.compare(full.float(), full, None)["rel_l2"] < 1e-6
    # compare() sees a wrong channel: the metric is not blind.
    bad = full.clone()
    bad[:, chans[3]] += 1.0
    assert cases.compare(bad, sub, chans)["max_abs_over_max_ref"] > 1e-3


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_backend_is_unavailable_with_a_clear_reason():
    from remamber.errors import RemamberError
    from remamber.ops import backends, cuda_backend, resolve_backend, use_backend

    registry = backends.registered_backends()
    assert "cuda" in registry
    assert registry["cuda"].priority > max(b.priority for n, b in registry.items() if n != "cuda")
    reason = registry["cuda"].unavailable_reason()
    assert reason and "no CUDA GPU" in reason
    # It also says where the library stands: found, or how to build / point at it.
    assert "libremamber_scan_cuda.so" in reason
    if "was not found" in reason:
        assert "bash scripts/build_native.sh" in reason and "REMAMBER_CUDA_LIB" in reason
    with pytest.raises(RemamberError, match="no CUDA GPU"):
        with use_backend("cuda"):
            pass
    assert resolve_backend("cpu").name == "reference"
    with pytest.raises(Exception, match="CUDA tensors"):
        cuda_backend.cuda_scan_into(torch.empty(1, 4, 3), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), -torch.ones(4, 1),
                                    torch.zeros(1, 4, 1, 3), torch.zeros(1, 4, 1, 3))


def test_missing_library_error_names_the_fix(monkeypatch, tmp_path):
    from remamber.errors import NativeLibraryError
    from remamber.ops import cuda_backend

    monkeypatch.setenv("REMAMBER_CUDA_LIB", str(tmp_path / "nowhere" / "libremamber_scan_cuda.so"))
    monkeypatch.setattr(cuda_backend, "_loaded", None)
    with pytest.raises(NativeLibraryError) as info:
        cuda_backend.load_library()
    msg = str(info.value)
    assert "build_native.sh" in msg or "REMAMBER_CUDA_LIB" in msg


def test_importing_the_backend_loads_no_library():
    code = (
        "import remamber.ops, remamber.ops.cuda_backend as cb\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'libremamber_scan_cuda' not in maps, 'library mapped at import'\n"
        "assert cb.loaded_library_path() is None\n"
        "assert 'cuda' in remamber.ops.registered_backends()\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=_script_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("cmake") and (shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists())),
                    reason="needs cmake and nvcc")
def test_compile_only_builds_the_cuda_library_for_sm90(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(SCRIPT), "--compile-only", "--out", str(out), "--build-dir", str(tmp_path / "build")],
                       cwd=REPO_ROOT, env=_script_env(), capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    build = json.loads((out / "results.json").read_text())["steps"]["build"]
    assert build["status"] == "ok"
    assert Path(build["library"]).name == "libremamber_scan_cuda.so" and Path(build["library"]).is_file()
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in build["configure"]["command"]
    assert Path(build["driver"]).is_file()
    if build["tensorrt_headers"]:  # what the GPU call builds from carried headers: the plugin and its harness
        assert "-DREMAMBER_WITH_TRT=ON" in build["configure"]["command"]
        assert Path(build["plugin"]).name == "libremamber_trt_plugin.so" and Path(build["plugin"]).is_file()
        assert Path(build["harness"]).name == "remamber_plugin_harness" and Path(build["harness"]).is_file()


# ---- the GPU steps' logic, rehearsed on the CPU (the kernel replaced by the reference scan) ------
FAKE_OFLEX = '''
"""Stands in for VMamba's selective_scan_cuda_oflex in the rehearsal: same fwd signature."""
from remamber.ops import selective_scan_reference


def fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, nrows, oflex):
    assert nrows == 1 and oflex is True
    return [selective_scan_reference(u.float(), delta.float(), A, B.float(), C.float(), D, delta_bias, delta_softplus), None]
'''

FAKE_HARNESS = '''#!{python}
import json, sys
assert sys.argv[1] == "--plugin" and sys.argv[2].endswith("libremamber_trt_plugin.so"), sys.argv
cases = [("fp32 D+bias", "float32", 1, 1, 2.1e-7, True), ("fp16 no D", "float16", 0, 1, 3e-7 if {second_pass} else None, {second_pass}),
         ("bf16 plain", "bfloat16", False, False, 2.5e-7, True)]
for name, dt, d, b, err, ok in cases:
    # the real harness's line: shape is (batch, channels, length, groups, nstate); max_rel_err null when not compared
    print(json.dumps({{"case": name, "dtype": dt, "has_D": d, "has_delta_bias": b, "delta_softplus": 1, "shape": [2, 8, 1001, 4, 1],
                      "max_rel_err": err, "pass": ok, **({{}} if ok else {{"error": "output holds NaN/inf"}})}}))
print("harness: done")
sys.exit(0 if all(c[-1] for c in cases) else 1)
'''

FAKE_SANITIZER = '''#!{python}
import subprocess, sys
args = sys.argv[1:]
cmd = args[args.index("--error-exitcode") + 2:]
rc = subprocess.call(cmd)
print("========= LEAK SUMMARY: 0 bytes leaked in 0 allocations")
print("========= ERROR SUMMARY: 0 errors")
sys.exit(rc)
'''


def _fake_native(tmp_path, second_pass=True):
    build = tmp_path / "build"
    build.mkdir()
    (build / "libremamber_trt_plugin.so").write_bytes(b"")
    harness = build / "remamber_plugin_harness"
    harness.write_text(FAKE_HARNESS.format(python=sys.executable, second_pass=second_pass))
    harness.chmod(0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cs = bindir / "compute-sanitizer"
    cs.write_text(FAKE_SANITIZER.format(python=sys.executable))
    cs.chmod(0o755)
    return build, bindir


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check_rehearsal")
    build, bindir = _fake_native(tmp)
    peer = tmp / "selective_scan_cuda_oflex.py"
    peer.write_text(FAKE_OFLEX)
    out = tmp / "out"
    env = _script_env()
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["REMAMBER_PEER_OFLEX"] = str(peer)
    steps = "build,plugin_harness,speed,forward_scans,peer,e2e_modes"
    p = subprocess.run([sys.executable, str(SCRIPT), "--rehearse-cpu", "--steps", steps, "--resolutions", "32", "--build-dir", str(build),
                        "--out", str(out), "--budget-s", "900", "--seed", "7"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    return p, out


def test_rehearsal_runs_every_new_step_and_writes_the_tables(rehearsal):
    proc, out = rehearsal
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    steps = results["steps"]
    assert results["mode"].startswith("CPU rehearsal")
    assert steps["build"]["status"] == "skipped" and "CPU rehearsal" in steps["build"]["reason"]
    for name in ("native_tests", "sanitizer", "correctness", "e2e"):
        assert steps[name]["status"] == "skipped" and steps[name]["reason"] == "not selected (--steps)"
    for name in ("plugin_harness", "speed", "forward_scans", "peer", "e2e_modes"):
        assert steps[name]["status"] == "ok", (name, steps[name])

    harness = steps["plugin_harness"]
    assert harness["plain"]["passed"] == len(harness["plain"]["cases"]) == 3 and harness["plain"]["exit"] == 0
    assert harness["memcheck"]["exit"] == 0 and "========= ERROR SUMMARY: 0 errors" in harness["memcheck"]["summary"]

    speed = steps["speed"]
    measured = [r for r in speed["scan"] if r["status"] == "ok"]
    # at 32 x 32 the rehearsal keeps the shapes of <= 2^20 elements: L = 64, 16, 4, 1 and the 384-long channel scan
    assert {tuple(r["shape"]) for r in measured} == {(1, 1024, 64), (1, 2048, 16), (1, 4096, 4), (1, 8192, 1), (1, 2048, 384)}
    for r in measured:
        assert r["median_ms"] > 0 and r["fraction_of_copy"] == pytest.approx(r["GBps"] / speed["copy"]["GBps"])
    assert all("<= 1536" not in k for k in speed["targets"])  # labels name the target, not the rule
    assert len(speed["targets"]) == 10  # every shape has L <= 1536: the 50 % target, fp32 and fp16

    fwd = steps["forward_scans"]["runs"]
    assert [(r["resolution"], r["dtype"], r["calls"]) for r in fwd] == [(32, "float32", 37), (32, "float16", 37)]
    for r in fwd:
        # floor = the inventory's bytes at the copy bandwidth of the run
        assert r["floor_ms"] == pytest.approx(r["bytes"] / (steps["forward_scans"]["copy_GBps"] * 1e9) * 1e3)
        assert sum(r["by_site_ms"].values()) == pytest.approx(r["median_ms"], rel=0.05)
        assert len(r["by_site_ms"]) == 12  # 3 sites per stage x 4 stages

    peer = steps["peer"]
    assert "mamba_ssm" in peer["unavailable"]
    rows = [r for r in peer["rows"] if r["status"] == "ok"]
    assert len(rows) == 10
    for r in rows:
        assert r["oflex_agrees"] is True and r["oflex_max_rel_diff"] < 1e-6, r
        assert r["oflex_over_ours"] == pytest.approx(r["oflex_ms"] / r["ours_ms"])

    modes = steps["e2e_modes"]["runs"]
    assert [(r["resolution"], r["precision"]) for r in modes] == [(32, "fp32"), (32, "tf32"), (32, "fp16")]
    for r in modes:
        assert r["eager"]["median_ms"] > 0 and "CUDA" in r["cudagraph"]["status"]

    summary = (out / "summary.md").read_text()
    for heading in ("TensorRT plugin driven without TensorRT", "summed scan time of one base-conv forward",
                    "peer kernels", "forward modes", "issue #9 targets:"):
        assert heading in summary
    assert summary.strip().splitlines()[-1].startswith("gpu_check: PASS")


def test_plugin_harness_failures_and_missing_headers_are_reported(tmp_path, monkeypatch):
    from remamber.bench.gpu import common, plugin_harness

    build, bindir = _fake_native(tmp_path, second_pass=False)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    run = common.Run(tmp_path / "out", 60, ["test"], device="cpu")
    plugin_harness.step_plugin_harness(run, build)
    e = run.results["steps"]["plugin_harness"]
    assert e["status"] == "failed" and e["plain"]["exit"] == 1
    assert [c["case"] for c in e["plain"]["failed"]] == ["fp16 no D"]
    assert any("plugin harness exit 1" in f for f in run.failures)
    from remamber.bench.gpu import report

    text = report.summary_text(run.results)
    assert "| fp16 no D" in text and "FAIL output holds NaN/inf" in text and "2.10e-07" in text

    # A build without TensorRT headers: skipped (not failed), and the reason says how to carry them.
    run = common.Run(tmp_path / "out2", 60, ["test"], device="cpu")
    run.results["steps"]["build"] = {"status": "ok", "tensorrt_headers": None}
    plugin_harness.step_plugin_harness(run, build)
    e = run.results["steps"]["plugin_harness"]
    assert e["status"] == "skipped" and "third_party/tensorrt" in e["reason"] and run.failures == []
    # The plugin built but its harness target missing: an error, not a skip.
    (build / "remamber_plugin_harness").unlink()
    run = common.Run(tmp_path / "out3", 60, ["test"], device="cpu")
    plugin_harness.step_plugin_harness(run, build)
    assert run.results["steps"]["plugin_harness"]["status"] == "error" and run.failures


def test_speed_targets_follow_the_issue():
    from remamber.bench.gpu import speed

    def row(ch, ln, dt, ms, frac):
        return {"shape": [1, ch, ln], "dtype": dt, "median_ms": ms, "fraction_of_copy": frac}

    rows = [row(1024, 14400, "float32", 0.050, 0.86), row(1024, 14400, "float16", 0.040, 0.70),  # fp16 1.25x: MISSED
            row(2048, 3600, "float32", 0.030, 0.84), row(2048, 3600, "float16", 0.020, 0.80),  # 84 %: MISSED; 1.5x: met
            row(2048, 3072, "float32", 0.030, 0.10), row(2048, 3072, "float16", 0.030, 0.10),  # no target in 1536 < L < 3600
            row(8192, 225, "float32", 0.010, 0.50), row(8192, 225, "float16", 0.010, 0.49)]  # 50 % met, 49 % MISSED
    verdicts = speed.apply_targets(rows)
    assert verdicts == {
        "1x1024x14400 fp32 >= 85%": True, "1x1024x14400 fp16 >= 1.35x fp32": False,
        "1x2048x3600 fp32 >= 85%": False, "1x2048x3600 fp16 >= 1.35x fp32": True,
        "1x8192x225 fp32 >= 50%": True, "1x8192x225 fp16 >= 50%": False,
    }
    assert rows[1]["speedup_vs_fp32"] == pytest.approx(1.25)


def test_peer_loader_names_what_is_missing(monkeypatch, tmp_path):
    from remamber.bench.gpu import peer

    monkeypatch.delenv("REMAMBER_PEER_OFLEX", raising=False)
    peers, missing = peer.load_peers()
    assert "oflex" not in peers and "REMAMBER_PEER_OFLEX is not set" in missing["oflex"]
    assert "selective_scan_cuda" in missing["mamba_ssm"]
    monkeypatch.setenv("REMAMBER_PEER_OFLEX", str(tmp_path / "selective_scan_cuda_oflex.cpython-311-x86_64-linux-gnu.so"))
    peers, missing = peer.load_peers()
    assert "no such file" in missing["oflex"]


def test_sanitizer_step_runs_every_tool_and_fails_on_a_failing_case(tmp_path, monkeypatch):
    """The sanitizer step's bookkeeping with a stand-in driver and compute-sanitizer (the real ones need a GPU)."""
    from remamber.bench.gpu import common, sanitizer

    _, bindir = _fake_native(tmp_path)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    lib = tmp_path / "libremamber_scan_cuda.so"
    lib.write_bytes(b"")
    for verdict in ("PASS", "FAIL"):
        driver = tmp_path / f"driver_{verdict}"
        driver.write_text(f"#!/bin/sh\necho 'VERSION 1 PASS'\necho 'CASE b=1 c=8 L=1 {verdict}'\n"
                          f"echo 'DRIVER {verdict}'\nexit {0 if verdict == 'PASS' else 1}\n")
        driver.chmod(0o755)
        run = common.Run(tmp_path / f"out_{verdict}", 600, ["test"], device="cpu")
        sanitizer.step_sanitizer(run, lib, driver)
        e = run.results["steps"]["sanitizer"]
        for check in ("memcheck", "racecheck", "synccheck", "initcheck"):
            assert e[check]["exit"] == (0 if verdict == "PASS" else 1)
            assert e[check]["summary"] == ["========= LEAK SUMMARY: 0 bytes leaked in 0 allocations", "========= ERROR SUMMARY: 0 errors"]
        if verdict == "PASS":
            assert e["status"] == "ok" and e["plain"]["passed"] == 2 and run.failures == []
        else:
            assert e["status"] == "failed" and e["plain"]["failed"] == ["CASE b=1 c=8 L=1 FAIL"]
            assert any("ABI driver" in f for f in run.failures)
