"""What a benchmark ran on: host, accelerator, library versions, plugin version, git commit.

Every probe degrades to "unknown"/None instead of failing: a report from a box without git, a GPU
or TensorRT is still a valid report, and says so.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def git_commit() -> str:
    """HEAD of the checkout this package runs from, with "-dirty" for local changes; else "unknown"."""
    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None:
        return "unknown"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "unknown")
    except Exception:  # an optional dependency that is absent or broken is simply not there
        return None


def tensorrt_flavour() -> dict:
    """Which TensorRT Python package is importable: full TensorRT first, then TensorRT-RTX."""
    for module, name in (("tensorrt", "TensorRT"), ("tensorrt_rtx", "TensorRT-RTX")):
        version = _version(module)
        if version is not None:
            return {"flavour": name, "module": module, "version": version}
    return {"flavour": None, "module": None, "version": None}


def nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def gpu_info() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"available": False, "name": None, "capability": None, "driver": nvidia_driver(), "cuda_runtime": torch.version.cuda}
    props = torch.cuda.get_device_properties(0)
    return {
        "available": True,
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "driver": nvidia_driver(),
        "cuda_runtime": torch.version.cuda,
    }


def _sha256_prefix(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def plugin_info() -> dict:
    """The op contract version and, per compiled library, its path and content hash (or why it is missing).

    The libraries carry no version string of their own beyond the contract's, so the hash is what
    tells two builds apart in a report.
    """
    info: dict = {}
    try:
        from ..export.scan_onnx import DOMAIN, OP_TYPE, OP_VERSION

        info["version"] = f"{DOMAIN}::{OP_TYPE} v{OP_VERSION}"
    except Exception as exc:  # export not importable: say so rather than guess
        info["version"] = f"unknown ({exc})"
    try:
        from .. import native
    except Exception as exc:
        info["error"] = f"remamber.native not importable: {exc}"
        return info
    libraries = {}
    for kind in ("ort", "trt", "cuda"):
        try:
            path = native.library_path(kind)
            libraries[kind] = {"path": str(path), "sha256_16": _sha256_prefix(path)}
        except Exception as exc:  # NativeLibraryError: not built here
            libraries[kind] = {"path": None, "missing": str(exc)}
    info["libraries"] = libraries
    info["missing"] = [k for k, v in libraries.items() if v["path"] is None]
    return info


def collect(threads: int | None, precision: str) -> dict:
    import onnxruntime
    import torch

    from . import jetson

    gpu = gpu_info()
    trt = tensorrt_flavour()
    cpu = cpu_model()
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count() or 1,
        "cpu_cores_usable": usable_cores(),
        "gpu": gpu,
        "device_summary": f"{gpu['name']} (driver {gpu['driver']})" if gpu["available"] else f"CPU: {cpu}",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": list(onnxruntime.get_available_providers()),
        "tensorrt": trt,
        "plugin": plugin_info(),
        "remamber_deploy": _version("remamber") or "unknown",
        "git_commit": git_commit(),
        "precision": precision,
        "threads": threads,
        # L4T/JetPack, nvpmodel mode, clock locking on a Jetson (bench/jetson.py); None elsewhere
        "jetson": jetson.detect(),
    }
