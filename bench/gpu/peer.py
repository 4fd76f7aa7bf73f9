"""The peer step: our kernel against another selective-scan kernel on the same inputs, when one is
importable: mamba-ssm's `selective_scan_cuda`, and/or the VMamba "oflex" kernel that the official
ReMamber code calls, named by REMAMBER_PEER_OFLEX (a module name, or the path of its built .so).

Forward only, batch 1, G = 4, N = 1, with D and delta_bias, softplus, fp32 and fp16 inputs, every
model shape; L2 flushed before each timed call, median. Printed as peer/ours ratios (> 1: ours is
faster) and summed over one base-conv forward's calls, as in bench/results/h200-2026-11-29/peer_oflex.json.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from .cases import ScanCase, make_inputs
from .common import Run, l2_flusher, stats, time_calls
from .correctness import kernel_scan_into
from .shapes import scan_inventory
from .speed import run_shapes

OFLEX_ENV = "REMAMBER_PEER_OFLEX"
AGREE_FP32_OUT = 1e-5  # max|ours - peer| / max|ours| when the peer writes fp32 (oflex: 2e-7 on the H200)
AGREE_HALF_OUT = 2e-3  # mamba-ssm writes fp16 for fp16 inputs: its own rounding, 2^-11


def _import_module_or_file(spec: str):
    """A module by name, or a file (.so extension or .py) by path; the module name is the file name
    up to its first dot (an extension's PyInit_<name> must match it)."""
    path = Path(spec)
    if spec.endswith((".so", ".py")) or path.is_file():
        if not path.is_file():
            raise ImportError(f"{OFLEX_ENV}={spec}: no such file")
        name = path.name.split(".")[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def load_peers() -> tuple[dict, dict]:
    """({name: fn(u, delta, A, B, C, D, delta_bias, softplus) -> y}, {name: why not available})."""
    importlib.import_module("torch")  # the extensions need torch's symbols loaded first

    peers, missing = {}, {}
    oflex = os.environ.get(OFLEX_ENV)
    if oflex:
        try:
            mod = _import_module_or_file(oflex)
            # VMamba csms6s: fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, nrows, oflex) -> [out, x, ...];
            # oflex=True keeps fp32 output for fp16 inputs, as our op does.
            peers["oflex"] = lambda u, d, A, B, C, D, b, s, mod=mod: mod.fwd(u, d, A, B, C, D, b, s, 1, True)[0]
        except Exception as exc:
            missing["oflex"] = f"{OFLEX_ENV}={oflex}: {type(exc).__name__}: {exc}"
    else:
        missing["oflex"] = f"{OFLEX_ENV} is not set (a module name or the path of selective_scan_cuda_oflex*.so)"
    try:
        mod = importlib.import_module("selective_scan_cuda")
        # mamba-ssm: fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> [out, x, ...]; out has u's dtype.
        peers["mamba_ssm"] = lambda u, d, A, B, C, D, b, s, mod=mod: mod.fwd(u, d, A, B, C, D, None, b, s)[0]
    except Exception as exc:
        missing["mamba_ssm"] = f"selective_scan_cuda (mamba-ssm's extension) is not importable: {type(exc).__name__}: {exc}"
    return peers, missing


def step_peer(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024)) -> None:
    import torch

    with run.step("peer") as e:
        peers, missing = load_peers()
        e["unavailable"] = missing
        if not peers:
            e["status"] = "skipped"
            e["reason"] = "no peer kernel importable: " + "; ".join(missing.values())
            return
        scan_into = kernel_scan_into(run)
        device = torch.device(run.device)
        gen = torch.Generator(device=device).manual_seed(seed + 3)
        flush, _ = l2_flusher(run.device)
        reps, warmup = (30, 5) if run.device == "cuda" else (2, 1)
        rows = []
        for ch, ln in run_shapes(run, resolutions):
            for dt in ("float32", "float16"):
                if run.elapsed() > deadline_s:
                    rows.append({"shape": [1, ch, ln], "dtype": dt, "status": "skipped: time budget"})
                    continue
                inp = make_inputs(ScanCase(1, ch, ln, dtype=dt), gen, device)
                args = [inp[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias")]
                out = torch.empty(1, ch, ln, device=device)
                row = {"shape": [1, ch, ln], "dtype": dt, "status": "ok"}
                row["ours_ms"] = stats(time_calls(lambda i: scan_into(out, **inp), reps, warmup, flush, run.device))["median_ms"]
                for name, fn in peers.items():
                    try:
                        y = fn(*args, True)
                        diff = ((y.float() - out).abs().max() / out.abs().max()).item()
                        row[f"{name}_max_rel_diff"] = diff
                        # Same maths on the same inputs: a larger difference means the comparison is void.
                        row[f"{name}_agrees"] = diff <= (AGREE_FP32_OUT if y.dtype == torch.float32 else AGREE_HALF_OUT)
                        row[f"{name}_ms"] = stats(time_calls(lambda i: fn(*args, True), reps, warmup, flush, run.device))["median_ms"]
                        row[f"{name}_over_ours"] = row[f"{name}_ms"] / row["ours_ms"]
                    except Exception as exc:
                        row[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
                rows.append(row)
        e["rows"] = rows
        # Summed over the calls of one base-conv forward (calls x per-shape median).
        sums = []
        for res in resolutions:
            for dt in ("float32", "float16"):
                s = {"resolution": res, "dtype": dt}
                for who in ("ours", *peers):
                    total = 0.0
                    for site in scan_inventory("conv", res):
                        r = next((r for r in rows if r["shape"] == [1, site.channels, site.length] and r["dtype"] == dt), {})
                        if f"{who}_ms" not in r:
                            total = None
                            break
                        total += site.calls * r[f"{who}_ms"]
                    s[f"{who}_ms"] = total
                sums.append(s)
        e["forward_sums"] = sums
        for name in peers:
            ratios = [r[f"{name}_over_ours"] for r in rows if f"{name}_over_ours" in r]
            disagree = [r for r in rows if r.get(f"{name}_agrees") is False]
            if disagree:
                run.log(f"peer {name}: outputs differ from ours on {len(disagree)} rows: its timings compare other work")
            if ratios:
                run.log(f"peer {name}: ours faster on {sum(x > 1 for x in ratios)} of {len(ratios)} rows "
                        f"(peer/ours {min(ratios):.2f}..{max(ratios):.2f})")
        if run.device == "cuda":
            torch.cuda.empty_cache()
