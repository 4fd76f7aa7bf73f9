"""The build steps: CMake + nvcc for sm_90 into a folder under /tmp (with the TensorRT plugin and its
harness when TensorRT headers are at hand), the ABI/sanitizer driver (abi_driver.cu), and ctest.

The GPU machine has no network and no TensorRT: the plugin is built only when headers travel with
the call (`carry: third_party/tensorrt`, fetched here by scripts/fetch_native_deps.sh) or a
TensorRT install is named by TensorRT_ROOT / TENSORRT_ROOT. Without them it is left out, and the
plugin_harness step says why.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .common import BUILD_LOG_NAME, CUDA_ARCH, HARNESS_NAME, LIBRARY_FILENAME, PLUGIN_FILENAME, REPO_ROOT, Run, nvcc, run_cmd, tool

DRIVER_SOURCE_FILE = Path(__file__).with_name("abi_driver.cu")
TRT_HEADER = "NvInferRuntime.h"


def trt_headers() -> tuple[Path, str] | None:
    """(TensorRT root whose include/ holds NvInferRuntime.h, where it came from), or None.

    The order CMakeLists.txt uses: TensorRT_ROOT / TENSORRT_ROOT, system folders, then the headers
    fetched into third_party/ (REMAMBER_DEPS_DIR) for builds without a TensorRT install."""
    for var in ("TensorRT_ROOT", "TENSORRT_ROOT"):
        root = os.environ.get(var)
        if root and (Path(root) / "include" / TRT_HEADER).is_file():
            return Path(root), f"env {var}"
    for inc in ("/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/include", "/usr/local/tensorrt/include"):
        if (Path(inc) / TRT_HEADER).is_file():
            return Path(inc).parent, f"system {inc}"
    deps = Path(os.environ.get("REMAMBER_DEPS_DIR") or REPO_ROOT / "third_party")
    if (deps / "tensorrt" / "include" / TRT_HEADER).is_file():
        return deps / "tensorrt", f"fetched headers {deps / 'tensorrt'} (scripts/fetch_native_deps.sh)"
    return None


NO_TRT_REASON = (
    "no TensorRT headers (NvInferRuntime.h): run scripts/fetch_native_deps.sh here and pass "
    "carry: [\"third_party/tensorrt\"] to the device call, or set TensorRT_ROOT"
)


def cmake_configure_args(build_dir: Path, nvcc_path: str | None, trt_root: Path | None = None) -> list[str]:
    args = [
        "cmake", "-S", str(REPO_ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCH}", "-DREMAMBER_WITH_CUDA=ON",
        "-DREMAMBER_WITH_TRT=ON" if trt_root else "-DREMAMBER_WITH_TRT=OFF", "-DREMAMBER_WITH_ORT=OFF",
    ]
    if trt_root:
        args.append(f"-DTensorRT_ROOT={trt_root}")
    if nvcc_path:
        args.append(f"-DCMAKE_CUDA_COMPILER={nvcc_path}")
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    return args


def _configure_and_compile(run: Run, e: dict, build_dir: Path, nvcc_path: str, trt_root: Path | None, t_end: float) -> str | None:
    """One configure + build; None on success, else the error (details in e and build.log)."""
    log = run.out_dir / BUILD_LOG_NAME
    cfg = cmake_configure_args(build_dir, nvcc_path, trt_root)
    rc, out, dt = run_cmd(cfg, timeout=max(30, t_end - time.monotonic()), log_file=log)
    e["configure"] = {"command": " ".join(cfg), "exit": rc, "seconds": round(dt, 1), "summary": _cmake_summary(out)}
    run.log(f"build: configure (TensorRT plugin {'on' if trt_root else 'off'}) exit {rc} in {dt:.1f} s")
    if rc != 0:
        e["configure"]["tail"] = out[-3000:]
        return f"cmake configure failed (exit {rc}); see {BUILD_LOG_NAME}"
    cmd = ["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 4)]
    rc, out, dt = run_cmd(cmd, timeout=max(30, t_end - time.monotonic()), log_file=log)
    e["compile"] = {"command": " ".join(cmd), "exit": rc, "seconds": round(dt, 1)}
    run.log(f"build: compile exit {rc} in {dt:.1f} s")
    if rc != 0:
        e["compile"]["tail"] = out[-4000:]
        return f"cmake --build failed (exit {rc}); see {BUILD_LOG_NAME}"
    return None


def build_native(run: Run, e: dict, build_dir: Path, timeout_s: float, with_trt: bool = True) -> Path | None:
    """Configure + build the CMake tree for sm_90; return the launcher library's path.

    With TensorRT headers the plugin and its harness are built too; if that build breaks, the
    failure is recorded and the tree is rebuilt without the plugin, so the kernel steps still run."""
    nvcc_path = nvcc()
    if not nvcc_path:
        raise RuntimeError("nvcc not found (PATH, /usr/local/cuda/bin)")
    if not (REPO_ROOT / "CMakeLists.txt").is_file():
        raise RuntimeError(f"no CMakeLists.txt at {REPO_ROOT}: the native tree is missing")
    t_end = time.monotonic() + timeout_s
    trt = trt_headers() if with_trt else None
    e["tensorrt_headers"] = {"root": str(trt[0]), "source": trt[1]} if trt else None
    error = _configure_and_compile(run, e, build_dir, nvcc_path, trt[0] if trt else None, t_end)
    if error and trt:
        e["plugin_build_error"] = {"error": error, "configure": e.get("configure"), "compile": e.get("compile")}
        run.fail(f"build with the TensorRT plugin: {error}")
        run.log("build: retrying without the TensorRT plugin")
        # At least two minutes for the retry: most objects are already built, the kernels matter most.
        error = _configure_and_compile(run, e, build_dir, nvcc_path, None, max(t_end, time.monotonic() + 120))
    if error:
        raise RuntimeError(error)
    found = sorted(build_dir.rglob(LIBRARY_FILENAME))
    if not found:  # maybe only installed: try the install step, then the package folder
        rc, out, dt = run_cmd(["cmake", "--install", str(build_dir)], timeout=120, log_file=run.out_dir / BUILD_LOG_NAME)
        e["install"] = {"exit": rc, "seconds": round(dt, 1)}
        found = sorted((REPO_ROOT / "remamber" / "lib").glob(LIBRARY_FILENAME))
    if not found:
        raise RuntimeError(f"the build produced no {LIBRARY_FILENAME} (targets built: see {BUILD_LOG_NAME})")
    lib = found[0]
    e["library"] = str(lib)
    e["library_bytes"] = lib.stat().st_size
    plugin = sorted(build_dir.rglob(PLUGIN_FILENAME))
    harness = sorted(p for p in build_dir.rglob(HARNESS_NAME) if p.is_file())
    e["plugin"] = str(plugin[0]) if plugin else None
    e["harness"] = str(harness[0]) if harness else None
    cuobjdump = tool("cuobjdump")
    if cuobjdump:  # which machine code is inside: sm_90 expected
        rc, out, _ = run_cmd([cuobjdump, "--list-elf", str(lib)], timeout=60)
        e["embedded_elf"] = sorted({ln.split(".")[-2] for ln in out.splitlines() if ".sm_" in ln})[:8] if rc == 0 else None
    return lib


def _cmake_summary(out: str) -> list[str]:
    keys = ("remamber", "cuda", "tensorrt", "onnxruntime", "architectures")
    return [ln.strip() for ln in out.splitlines() if any(k in ln.lower() for k in keys)][:40]


def build_driver(run: Run, build_dir: Path) -> Path:
    nvcc_path = nvcc()
    if not nvcc_path:
        raise RuntimeError("nvcc not found")
    exe = build_dir / "gpu_check_driver"
    build_dir.mkdir(parents=True, exist_ok=True)
    cmd = [nvcc_path, "-O2", "-std=c++17", f"-arch=sm_{CUDA_ARCH}", "-o", str(exe), str(DRIVER_SOURCE_FILE), "-ldl"]
    rc, out, dt = run_cmd(cmd, timeout=180, log_file=run.out_dir / BUILD_LOG_NAME)
    run.log(f"driver: nvcc exit {rc} in {dt:.1f} s")
    if rc != 0:
        raise RuntimeError(f"the sanitizer driver did not compile: {out[-2000:]}")
    return exe


def library_from_env_or_install() -> Path | None:
    from remamber.ops import cuda_backend

    try:
        return cuda_backend.library_path()
    except Exception:
        return None


def step_build(run: Run, args) -> Path | None:
    lib = None
    with run.step("build") as e:
        if args.lib:
            lib = Path(args.lib).resolve()
            e["library"] = str(lib)
            e["note"] = "--lib given: no build"
            if not lib.is_file():
                raise RuntimeError(f"--lib {lib} does not exist")
        elif args.skip_build:
            lib = library_from_env_or_install()
            e["note"] = "--skip-build: using an existing library"
            e["library"] = str(lib) if lib else None
            if lib is None:
                raise RuntimeError("--skip-build but no library found (REMAMBER_CUDA_LIB, remamber/lib)")
        else:
            budget = min(args.build_timeout_s, max(60.0, run.remaining() - 120))
            lib = build_native(run, e, Path(args.build_dir), budget)
        if lib is not None:
            # Everything after this (backend, sanitizer) uses exactly this library.
            os.environ["REMAMBER_CUDA_LIB"] = str(lib)
        try:
            e["driver"] = str(build_driver(run, Path(args.build_dir)))
        except Exception as exc:
            e["driver_error"] = str(exc)
            run.fail(f"sanitizer driver build: {exc}")
    return lib


def step_native_tests(run: Run, args) -> None:
    with run.step("native_tests") as e:
        build_dir = Path(args.build_dir)
        if not (build_dir / "CTestTestfile.cmake").is_file():
            e["status"] = "skipped"
            e["reason"] = "the build tree defines no ctest tests"
            return
        cmd = ["ctest", "--test-dir", str(build_dir), "--output-on-failure", "--timeout", "60"]
        rc, out, dt = run_cmd(cmd, timeout=min(120, max(30, run.remaining() - 200)), log_file=run.out_dir / BUILD_LOG_NAME)
        e["exit"] = rc
        e["summary"] = [ln for ln in out.splitlines() if "tests passed" in ln or "Test #" in ln or "***" in ln][-30:]
        if rc != 0:
            e["status"] = "failed"
            e["tail"] = out[-3000:]
            run.fail(f"ctest exit {rc}")
