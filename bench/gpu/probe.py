"""The probe step: what machine this is (GPU, driver, CUDA, torch, tools, importable modules)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import sys

from .build import trt_headers
from .common import REPO_ROOT, Run, first_line, nvcc, run_cmd, tool
from .peer import OFLEX_ENV


def step_probe(run: Run, use_gpu: bool) -> None:
    import torch

    with run.step("probe") as e:
        e["python"] = platform.python_version()
        e["platform"] = platform.platform()
        e["torch"] = torch.__version__
        e["torch_cuda"] = torch.version.cuda
        e["cuda_available"] = torch.cuda.is_available()
        e["gpu_mode"] = use_gpu
        rc, out, _ = run_cmd(["git", "rev-parse", "HEAD"], timeout=10, cwd=REPO_ROOT)
        e["git_commit"] = out.strip() if rc == 0 else None
        rc, out, _ = run_cmd(["git", "status", "--porcelain"], timeout=10, cwd=REPO_ROOT)
        e["git_dirty"] = bool(out.strip()) if rc == 0 else None
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            e["gpu"] = {
                "name": p.name, "capability": f"{p.major}.{p.minor}", "sm_count": p.multi_processor_count,
                "l2_bytes": getattr(p, "L2_cache_size", None), "memory_bytes": p.total_memory,
            }
        smi = tool("nvidia-smi")
        if smi:
            line = first_line([smi, "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,power.limit", "--format=csv,noheader"])
            e["nvidia_smi"] = line
        nvcc_path = nvcc()
        rc, out, _ = run_cmd([nvcc_path, "--version"], timeout=30) if nvcc_path else (1, "", 0)
        e["nvcc"] = next((ln.strip() for ln in out.splitlines() if "release" in ln), None) if rc == 0 else None
        e["nvcc_path"] = nvcc_path
        rc, out, _ = run_cmd(["cmake", "--version"], timeout=10)
        e["cmake"] = out.splitlines()[0].strip() if rc == 0 and out else None
        e["ninja"] = bool(shutil.which("ninja"))
        e["compute_sanitizer"] = tool("compute-sanitizer")
        mods = {}
        from importlib import metadata

        for mod, dist in (("triton", "triton"), ("cupy", "cupy-cuda13x"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
                          ("mamba_ssm", "mamba-ssm"), ("tabulate", "tabulate"), ("tqdm", "tqdm"), ("transformers", "transformers")):
            try:
                mods[mod] = metadata.version(dist) if importlib.util.find_spec(mod) else None
            except metadata.PackageNotFoundError:
                mods[mod] = "present (version unknown)"
        for mod in ("tensorrt", "tensorrt_rtx"):  # imported for real, in a subprocess: a broken one can abort
            if importlib.util.find_spec(mod) is None:
                mods[mod] = None
                continue
            rc, out, _ = run_cmd([sys.executable, "-c", f"import {mod}; print({mod}.__version__)"], timeout=60)
            mods[mod] = out.strip().splitlines()[-1] if rc == 0 and out.strip() else f"import failed (exit {rc})"
        e["modules"] = mods
        trt = trt_headers()  # the plugin and its harness are built only with these
        e["tensorrt_headers"] = {"root": str(trt[0]), "source": trt[1]} if trt else None
        e["peer_oflex"] = os.environ.get(OFLEX_ENV)
        if use_gpu:
            e["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
        run.log(f"probe: {e.get('gpu') or 'no CUDA device'}; torch {e['torch']} (CUDA {e['torch_cuda']}); nvcc {e['nvcc']}")
