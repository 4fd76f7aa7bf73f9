"""The fused SS2DScan CUDA kernel without a GPU: emulated run, compile checks, C ABI and PyTorch backend glue.

- The kernel source compiled with g++ and run with emulated threads, shuffles and barriers, against a
  float64 loop over the op contract (plugins/tests/test_ss2d_kernel_emulation.cpp): both layouts, odd /
  even / unequal H and W, H = 1, several chunks with a tail, N 1..16, batch 2, fp16 / bf16, optional inputs.
- nvcc -Werror compile of the kernel for Jetson Orin (sm_87), Hopper (sm_90) and Blackwell (sm_120), one
  dtype translation unit per architecture so the test stays short; the CMake build (CI: -DREMAMBER_WERROR=ON,
  default architecture list 75..120) compiles every dtype for every architecture.
- libremamber_scan_cuda.so's remamberSS2DScanForward refuses bad arguments with its message before any CUDA
  call (so this runs on a CPU machine), through the ctypes binding the PyTorch "cuda" backend uses.
- The "cuda" backend of remamber.ops.ss2d_scan is registered and says why it cannot run here.
Running the kernel itself needs a GPU: bench/gpu_check.py on the GPU machine.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
CUDA_DIR = REPO / "plugins" / "cuda"
COMMON_DIR = REPO / "plugins" / "common"
EMULATION_SOURCE = REPO / "plugins" / "tests" / "test_ss2d_kernel_emulation.cpp"
SUCCESS_LINE = "emulated fused SS2DScan kernel matches the float64 contract loop"


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    default = pathlib.Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.exists() else None


def test_kernel_emulated_on_cpu_matches_float64_contract(tmp_path):
    """Runs the CMake-built ctest executable, or builds the same source with g++ when the build lacks it."""
    exe = BUILD / "remamber_ss2d_kernel_emulation_test"
    if not exe.is_file():
        gxx = shutil.which("g++")
        if gxx is None:
            pytest.skip("g++ is not installed and the CMake build has no remamber_ss2d_kernel_emulation_test")
        exe = tmp_path / "ss2d_emulation"
        subprocess.run(
            [gxx, "-std=c++20", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", f"-I{COMMON_DIR}",
             f"-I{CUDA_DIR}", str(EMULATION_SOURCE), "-o", str(exe), "-pthread"],
            check=True, capture_output=True, text=True, timeout=300,
        )
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SUCCESS_LINE in proc.stdout
    assert proc.stdout.count("ok   ") >= 18 and "FAIL" not in proc.stdout, proc.stdout


# One dtype translation unit per architecture (all three dtypes are covered across them), plus the
# launcher and the C ABI for every architecture.
COMPILE_JOBS = [
    ("87", "ss2d_kernel_fp32.cu"),
    ("90", "ss2d_kernel_fp16.cu"),
    ("120", "ss2d_kernel_bf16.cu"),
    ("87", "ss2d_launch.cu"),
    ("90", "ss2d_c_api.cu"),
    ("120", "ss2d_launch.cu"),
]


@pytest.mark.skipif(_nvcc() is None, reason="needs nvcc (the CUDA toolkit)")
def test_kernel_compiles_with_werror_for_orin_hopper_blackwell(tmp_path):
    nvcc = _nvcc()
    supported = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout

    def compile_one(job):
        arch, source = job
        if f"compute_{arch}" not in supported:
            return f"sm_{arch}: this nvcc cannot target it ({nvcc} --list-gpu-arch)"
        cmd = [nvcc, "-std=c++17", f"-gencode=arch=compute_{arch},code=sm_{arch}", f"-I{COMMON_DIR}", f"-I{CUDA_DIR}",
               "-Xcompiler=-Wall,-Wextra,-Werror", "-Werror=all-warnings", "-c", str(CUDA_DIR / source),
               "-o", str(tmp_path / f"{source}.sm{arch}.o")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or "warning" in (proc.stdout + proc.stderr).lower():
            return f"sm_{arch} {source}: rc {proc.returncode}\n{proc.stdout}{proc.stderr}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        problems = [p for p in pool.map(compile_one, COMPILE_JOBS) if p]
    assert not problems, "\n".join(problems)


# ---- the C ABI through the PyTorch backend's ctypes binding (no GPU needed: refused before CUDA) ----

@pytest.fixture(scope="module")
def ss2d_lib():
    from remamber import native
    from remamber.errors import NativeLibraryError
    from remamber.ops import cuda_backend

    try:
        native.library_path("cuda")
    except NativeLibraryError as exc:
        pytest.skip(f"libremamber_scan_cuda.so not built (needs nvcc): {exc}")
    return cuda_backend.load_ss2d_library()


def _call(lib, *, ptr=1, batch=2, dim=3, height=4, width=5, nstate=1, layout=0, dtype=0, softplus=1, null_u=False):
    # Dummy non-null "device" pointers: every call below is refused (or has nothing to do) before the
    # launcher touches memory or the CUDA runtime.
    p = ctypes.c_void_p(ptr)
    rc = lib.remamberSS2DScanForward(None if null_u else p, p, p, p, p, None, None, p, batch, dim, height, width,
                                     nstate, layout, dtype, softplus, None)
    message = lib.remamberSS2DScanLastError()
    return rc, (message or b"").decode()


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(layout=2), "layout must be 0 (cross) or 1 (bidi)"),
        (dict(nstate=17), "state size N (A.shape[1]) must be in 1..16"),
        (dict(nstate=0), "state size N (A.shape[1]) must be in 1..16"),
        (dict(dtype=3), "dtype must be 0 (float32), 1 (float16) or 2 (bfloat16)"),
        (dict(null_u=True), "a required pointer (u, delta, A, B, C or y) is null"),
        (dict(height=-1), "batch, dim, height and width must be >= 0"),
        (dict(softplus=2), "delta_softplus must be 0 or 1"),
        (dict(height=65536, width=65536), "H * W exceeds 2^31 - 1"),
    ],
)
def test_c_abi_refuses_bad_arguments(ss2d_lib, kwargs, expected):
    rc, message = _call(ss2d_lib, **kwargs)
    assert rc == 1
    assert message.startswith("remamberSS2DScanForward: ") and expected in message, message


def test_c_abi_empty_tensor_is_a_no_op_and_clears_the_error(ss2d_lib):
    assert _call(ss2d_lib, layout=2)[0] == 1
    for empty in (dict(batch=0), dict(height=0), dict(width=0, layout=1)):
        assert _call(ss2d_lib, **empty) == (0, ""), empty
    assert ss2d_lib.remamberSS2DScanVersion() == 1


def test_cuda_backend_registered_for_ss2d_scan_and_explains_itself():
    from remamber.ops import backends, cuda_backend

    table = backends.registered_backends(backends.OP_SS2D_SCAN)
    assert table["cuda"].fn is cuda_backend.cuda_ss2d_scan
    assert table["cuda"].priority > table["reference"].priority  # "auto" picks the kernel on a GPU
    if not torch.cuda.is_available():
        reason = table["cuda"].unavailable_reason()
        assert reason is not None and "no CUDA GPU is visible to PyTorch" in reason
        # "auto" on CPU tensors keeps the reference backend.
        assert backends.resolve_backend("cpu", backends.OP_SS2D_SCAN).name == "reference"


def test_cuda_backend_refuses_cpu_tensors():
    from remamber.errors import InputError
    from remamber.ops import cuda_backend

    u = torch.zeros(1, 2, 3, 4)
    with pytest.raises(InputError, match="inputs must be CUDA tensors"):
        cuda_backend.cuda_ss2d_scan(u, torch.zeros(1, 8, 3, 4), torch.zeros(8, 1), torch.zeros(1, 4, 1, 3, 4),
                                    torch.zeros(1, 4, 1, 3, 4), layout=0)


def test_library_exports_the_ss2d_entry_points(ss2d_lib):
    from remamber import native

    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run([nm, "-D", "--defined-only", str(native.library_path("cuda"))], capture_output=True,
                         text=True, check=True).stdout
    symbols = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert {"remamberSS2DScanForward", "remamberSS2DScanLastError", "remamberSS2DScanVersion"} <= symbols, symbols
