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

from remamber.bench import gpu_check as gc  # noqa: E402  (installed editable: bench/ is remamber.bench)


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
    assert list(steps) == ["probe", "shapes", "reference_cpu", *gc.GPU_STEPS]
    for name in ("probe", "shapes", "reference_cpu"):
        assert steps[name]["status"] == "ok", steps[name]
    for name in gc.GPU_STEPS:
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
    assert set(gc.unique_scan_shapes()) == expected
    assert len(expected) == 12
    # Spot values copied from the spec's table (5.2).
    assert {(1024, 14400), (2048, 384), (4096, 900), (8192, 225), (2048, 3072)} <= set(_spec_shapes(480))
    assert {(1024, 65536), (2048, 16384), (4096, 4096), (8192, 1024)} <= set(_spec_shapes(1024))
    for res in (480, 1024):
        got: dict[tuple[int, int], int] = {}
        for site in gc.scan_inventory("conv", res):
            got[(site.channels, site.length)] = got.get((site.channels, site.length), 0) + site.calls
            assert site.groups == 4 and site.nstate == 1
        assert got == _spec_shapes(res)
        assert sum(s.calls for s in gc.scan_inventory("conv", res)) == 37
        assert sum(s.calls for s in gc.scan_inventory("mamba", res)) == 47


def test_byte_and_flop_counts_match_hand_arithmetic():
    # (1, 1024, 14400), G = 4, N = 1, fp32: u + delta 2*1024*14400*4, B + C 2*4*1*14400*4,
    # A + D + delta_bias 3*1024*4, y 1024*14400*4.
    fp32 = gc.scan_bytes(1, 1024, 14400, 4, 1, "float32")
    assert fp32["read"] == 117_964_800 + 460_800 + 12_288
    assert fp32["write"] == 58_982_400
    assert fp32["total"] == 177_420_288  # spec 5.3: 177.4 MB
    fp16 = gc.scan_bytes(1, 1024, 14400, 4, 1, "float16")
    assert fp16["total"] == 58_982_400 + 230_400 + 12_288 + 58_982_400  # spec: 118.2 MB
    assert gc.scan_bytes(1, 1024, 14400, 4, 1, "float32", with_D=False, with_bias=False)["total"] == 177_420_288 - 8192
    assert gc.scan_flops(1, 1024, 14400, 1) == 10 * 1024 * 14400
    # Whole-model totals of spec 5.3 (MB = 1e6 B; fp32 and fp16-in/fp32-out; GFLOP).
    spec = {("conv", 480): (2190, 1460, 1.821), ("conv", 1024): (8955, 5968, 7.450),
            ("mamba", 480): (2944, 1962, 2.448), ("mamba", 1024): (12384, 8253, 10.302)}
    for (variant, res), (mb32, mb16, gflop) in spec.items():
        t = gc.model_totals(variant, res)
        assert abs(t["bytes_fp32"] / 1e6 - mb32) <= 1.0
        assert abs(t["bytes_fp16in"] / 1e6 - mb16) <= 1.0
        assert abs(t["gflop"] - gflop) <= 0.001


def test_perf_md_floor_tables_are_current():
    text = (REPO_ROOT / "docs" / "PERF.md").read_text(encoding="utf-8")
    assert gc.floors_table().strip() in text, "regenerate with: python bench/gpu_check.py --floors-table"


def test_correctness_plan_covers_the_matrix():
    plan = gc.correctness_plan()
    shapes = gc.unique_scan_shapes()
    have = {(c.batch, c.channels, c.length, c.nstate, c.dtype) for c in plan}
    for ch, ln in shapes:
        for dt in ("float32", "float16"):
            for b in (1, 4):
                assert (b, ch, ln, 1, dt) in have
                assert (b, ch, ln, 16, dt) in have
    lengths = {c.length for c in plan}
    assert {1, 2049, 4097, 65537} <= lengths
    assert any(c.length % 2 == 1 and c.length > 1 for c in plan)
    assert any(not c.with_D and not c.with_bias for c in plan) and any(not c.softplus for c in plan)
    assert {c.groups for c in plan} >= {1, 2, 4, 8}
    assert gc.ERROR_BOUND["float16"] == gc.ERROR_BOUND["float32"] == 1e-5


def test_reference_on_a_channel_sample_equals_the_full_reference(monkeypatch):
    """The heavy cases compare a channel sample; the sample must keep each channel's group."""
    monkeypatch.setattr(gc, "REFERENCE_ELEMENT_BUDGET", 3000)
    case = gc.ScanCase(2, 24, 50, groups=4, nstate=3)
    chans = gc.reference_channels(case, random.Random(0))
    assert chans is not None and len(chans) < 24
    per_group = len(chans) // 4
    assert [c // 6 for c in chans] == [g for g in range(4) for _ in range(per_group)]
    assert {0, 5, 6, 11, 12, 17, 18, 23} <= set(chans)
    inp = gc.make_inputs(case, torch.Generator().manual_seed(1), "cpu")
    sub = gc.reference_scan(inp, True, chans)
    full = gc.reference_scan(inp, True, None)
    torch.testing.assert_close(sub, full[:, chans], rtol=1e-12, atol=1e-12)
    assert gc.compare(full.float(), full, None)["rel_l2"] < 1e-6
    # compare() sees a wrong channel: the metric is not blind.
    bad = full.clone()
    bad[:, chans[3]] += 1.0
    assert gc.compare(bad, sub, chans)["max_abs_over_max_ref"] > 1e-3


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
