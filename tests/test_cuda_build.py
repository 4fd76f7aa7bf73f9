"""Compile-only checks of the CUDA scan kernels and of the TensorRT plugin's runtime harness (no GPU).

- Every kernel instantiation (launch shape x state capacity) compiles with warnings as errors for
  Jetson Orin (sm_87), H100/H200 (sm_90) and RTX PRO / Blackwell (sm_120), one dtype TU per arch so
  all three input dtypes are covered, and ptxas reports no register spills (the report is printed:
  run with -s to see it, or scripts/cuda_resource_report.py).
- plugins/tests/plugin_runtime_harness.cpp (the plugin's runtime path without TensorRT) compiles with
  -Werror against the TensorRT headers and links; run here, it must find the plugin's creator and
  then stop because there is no GPU (on a GPU machine it runs its quick cases and must pass).
nvcc is part of this project's CPU toolchain (TOOLCHAIN.md); the tests skip only when it is absent.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCH_DTYPE = [(87, "fp16"), (90, "fp32"), (120, "bf16")]
# 3 launch shapes x state capacities 1, 2, 16 (plugins/cuda/scan_kernel.cuh).
KERNELS_PER_TU = 9


def _load_report_module():
    spec = importlib.util.spec_from_file_location("cuda_resource_report", REPO / "scripts" / "cuda_resource_report.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


report_mod = _load_report_module()
NVCC = report_mod.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (CUDA toolkit) not installed on this machine")


@pytest.fixture(scope="module")
def reports():
    """Compiles the three (arch, dtype) TUs, two at a time (CI has 2 cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(report_mod.report, key[0], key[1], NVCC) for key in ARCH_DTYPE}
        return {key: f.result() for key, f in futures.items()}


@needs_nvcc
@pytest.mark.parametrize("arch,dtype", ARCH_DTYPE, ids=[f"sm{a}-{d}" for a, d in ARCH_DTYPE])
def test_kernels_compile_with_werror_and_no_spills(reports, arch, dtype):
    listed = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True, check=False).stdout
    if f"compute_{arch}" not in listed:
        pytest.fail(f"this nvcc cannot target sm_{arch}; the project's default list includes it (CUDA >= 13)")
    proc, rows = reports[(arch, dtype)]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"nvcc failed for sm_{arch} {dtype}:\n{output[-4000:]}"
    assert "warning" not in output.lower(), output[-4000:]
    print(report_mod.format_table(rows, arch, dtype))
    assert len(rows) == KERNELS_PER_TU, [r["name"] for r in rows]
    shapes = {(r["threads_per_row"], r["rows_per_block"], r["items"]) for r in rows}
    assert shapes == {(32, 4, 4), (32, 4, 8), (128, 1, 8)}
    assert {r["max_n"] for r in rows} == {1, 2, 16}
    spilling = [(r["threads_per_row"], r["items"], r["max_n"], r["spill_stores"], r["spill_loads"])
                for r in rows if r["spill_stores"] or r["spill_loads"]]
    assert not spilling, f"kernels that spill registers (threads/row, items, N, stores, loads): {spilling}"


def _trt_include() -> Path | None:
    for var in ("TensorRT_ROOT", "TENSORRT_ROOT"):
        if os.environ.get(var) and (Path(os.environ[var]) / "include" / "NvInferRuntime.h").is_file():
            return Path(os.environ[var]) / "include"
    deps = Path(os.environ.get("REMAMBER_DEPS_DIR", REPO / "third_party"))
    cand = deps / "tensorrt" / "include"
    return cand if (cand / "NvInferRuntime.h").is_file() else None


def _cuda_root() -> Path | None:
    """The toolkit folder holding include/cuda_runtime_api.h and lib64/libcudart_static.a."""
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), str(Path(NVCC).resolve().parents[1]),
             "/usr/local/cuda"]
    for cand in cands:
        if cand and (Path(cand) / "include" / "cuda_runtime_api.h").is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc (CUDA toolkit) not installed on this machine")
    include = _trt_include()
    if include is None:
        pytest.fail("TensorRT headers not found: scripts/fetch_native_deps.sh fetches them (or set TensorRT_ROOT)")
    cuda_root = _cuda_root()
    if cuda_root is None:
        pytest.fail("CUDA headers (cuda_runtime_api.h) not found next to nvcc, in $CUDA_HOME or /usr/local/cuda")
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    assert cxx, "no C++ compiler"
    out = tmp_path_factory.mktemp("harness") / "remamber_plugin_harness"
    cmd = [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-isystem", str(include),
           "-isystem", str(cuda_root / "include"), str(REPO / "plugins" / "tests" / "plugin_runtime_harness.cpp"),
           "-o", str(out), f"-L{cuda_root / 'lib64'}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"harness build failed:\n{' '.join(cmd)}\n{proc.stderr[-4000:]}"
    return out


def test_harness_rejects_a_missing_library(harness):
    proc = subprocess.run([str(harness), "--plugin", "/nonexistent/libremamber_trt_plugin.so"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "cannot dlopen the plugin" in proc.stderr
    proc = subprocess.run([str(harness)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "--plugin" in proc.stderr


def _plugin_library() -> Path | None:
    env = os.environ.get("REMAMBER_TRT_PLUGIN_LIB")
    cand = Path(env) if env else REPO / "remamber" / "lib" / "libremamber_trt_plugin.so"
    return cand if cand.is_file() else None


def test_harness_finds_the_plugin_creator(harness):
    lib = _plugin_library()
    if lib is None:
        pytest.fail("libremamber_trt_plugin.so is not built: run scripts/build_native.sh (setup.sh does)")
    proc = subprocess.run([str(harness), "--plugin", str(lib), "--quick"], capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode == 2 and "no CUDA device" in proc.stderr:
        # getCreators and the creator lookup passed (they come first); enqueue needs a GPU.
        return
    # A GPU is present: every quick case must pass, one JSON line each.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 15 and all('"pass": true' in ln for ln in lines), proc.stdout
