"""The speed step: copy bandwidth of this run, then our kernel on every model scan shape (fp32 and fp16
inputs) against it, the issue #9 targets, and the PyTorch reference / mamba-ssm for comparison.

Kernel time: CUDA events around each call, an L2 flush before each, inputs rotating over enough
sets to exceed 4 x L2, 5 warm-ups, median of 30 (docs/PERF.md, "What is measured and how").
"""

from __future__ import annotations

import math

from .cases import ScanCase, make_inputs
from .common import Run, l2_bytes, l2_flusher, stats, time_calls
from .correctness import kernel_scan_into
from .shapes import scan_bytes, scan_flops, unique_scan_shapes

COPY_ELEMENTS = 2**28  # 1 GiB of fp32 per buffer: far beyond L2, long enough to time well

# Issue #9's targets, against the copy bandwidth measured in the same run.
TARGET_LONG_L = 3600  # "every model shape with L >= 3600"
TARGET_LONG_FP32 = 0.85  # fp32: >= 85 % of copy bandwidth there
TARGET_FP16_SPEEDUP = 1.35  # fp16 inputs: >= 1.35x faster than fp32 there
TARGET_SHORT_L = 1536  # "every shape with L <= 1536"
TARGET_SHORT = 0.50  # >= 50 % of copy bandwidth there (either input dtype)


REHEARSAL_MAX_ELEMENTS = 2**20  # a CPU rehearsal times only shapes up to this many elements (channels x L)


def run_shapes(run: Run, resolutions) -> list[tuple[int, int]]:
    """The model's (K*D, L) scan shapes at these resolutions; a CPU rehearsal keeps the small ones."""
    shapes = unique_scan_shapes(resolutions)
    if run.device != "cuda":
        shapes = [(ch, ln) for ch, ln in shapes if ch * ln <= REHEARSAL_MAX_ELEMENTS]
    return shapes


def measure_copy_bandwidth(run: Run, gen, elements: int = COPY_ELEMENTS) -> dict:
    """Device-to-device copy of `elements` fp32 values, bytes read + written, median of 20."""
    import torch

    src = torch.randn(elements, generator=gen, device=run.device)
    dst = torch.empty_like(src)
    copy = stats(time_calls(lambda i: dst.copy_(src), reps=20, warmup=3, device=run.device))
    copy["bytes"] = 2 * src.numel() * 4
    copy["GBps"] = copy["bytes"] / (copy["median_ms"] * 1e-3) / 1e9
    return copy


def copy_bandwidth(run: Run, gen) -> float:
    """This run's copy bandwidth in GB/s: the speed step's if it ran, else measured now."""
    copy = run.step_result("speed").get("copy")
    if copy and copy.get("GBps"):
        return copy["GBps"]
    return measure_copy_bandwidth(run, gen, COPY_ELEMENTS if run.device == "cuda" else 2**20)["GBps"]


def apply_targets(rows: list[dict]) -> dict:
    """Mark each row with its issue #9 target and return {target label: met} (None = not measured)."""
    by = {(tuple(r["shape"]), r["dtype"]): r for r in rows if "median_ms" in r}
    verdicts: dict[str, bool | None] = {}
    for (shape, dt), r in by.items():
        length = shape[-1]
        label = "x".join(map(str, shape))
        if length >= TARGET_LONG_L and dt == "float32":
            r["target"] = f">= {TARGET_LONG_FP32:.0%} of copy"
            r["target_met"] = r["fraction_of_copy"] >= TARGET_LONG_FP32
            verdicts[f"{label} fp32 >= {TARGET_LONG_FP32:.0%}"] = r["target_met"]
        if length >= TARGET_LONG_L and dt == "float16" and (shape, "float32") in by:
            r["speedup_vs_fp32"] = by[(shape, "float32")]["median_ms"] / r["median_ms"]
            r["target"] = f">= {TARGET_FP16_SPEEDUP}x fp32"
            r["target_met"] = r["speedup_vs_fp32"] >= TARGET_FP16_SPEEDUP
            verdicts[f"{label} fp16 >= {TARGET_FP16_SPEEDUP}x fp32"] = r["target_met"]
        if length <= TARGET_SHORT_L:
            r["target"] = f">= {TARGET_SHORT:.0%} of copy"
            r["target_met"] = r["fraction_of_copy"] >= TARGET_SHORT
            verdicts[f"{label} {'fp32' if dt == 'float32' else 'fp16'} >= {TARGET_SHORT:.0%}"] = r["target_met"]
    return verdicts


def step_speed(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024)) -> None:
    import torch

    from remamber.ops import backends, selective_scan_reference

    with run.step("speed") as e:
        scan_into = kernel_scan_into(run)
        device = torch.device(run.device)
        l2 = l2_bytes(run.device)
        gen = torch.Generator(device=device).manual_seed(seed + 1)
        # 1. copy bandwidth: 1 GiB device-to-device, bytes read + written.
        e["copy"] = copy = measure_copy_bandwidth(run, gen, COPY_ELEMENTS if run.device == "cuda" else 2**20)
        bw = copy["GBps"]
        run.log(f"speed: copy bandwidth {bw:.0f} GB/s ({copy['bytes'] / 2 / 2**20:.0f} MiB, median of {copy['reps']})")
        flush, e["l2_flush_bytes"] = l2_flusher(run.device)
        reps, warmup = (30, 5) if run.device == "cuda" else (2, 1)
        # 2. our kernel on every model shape, fp32 and fp16 inputs, batch 1, N = 1, G = 4.
        rows = []
        for ch, ln in run_shapes(run, resolutions):
            for dt in ("float32", "float16"):
                if run.elapsed() > deadline_s:
                    rows.append({"shape": [1, ch, ln], "dtype": dt, "status": "skipped: time budget"})
                    continue
                case = ScanCase(1, ch, ln, dtype=dt)
                nbytes = scan_bytes(1, ch, ln, in_dtype=dt)
                sets = max(2, min(16, math.ceil(4 * l2 / nbytes["read"]))) if run.device == "cuda" else 2
                inputs = [make_inputs(case, gen, device) for _ in range(sets)]
                outs = [torch.empty(1, ch, ln, device=device) for _ in range(sets)]
                fn = lambda i: scan_into(outs[i % sets], **inputs[i % sets])  # noqa: E731
                t = stats(time_calls(fn, reps=reps, warmup=warmup, flush=flush, device=run.device))
                gbps = nbytes["total"] / (t["median_ms"] * 1e-3) / 1e9
                flops = scan_flops(1, ch, ln)
                rows.append({"shape": [1, ch, ln], "dtype": dt, "input_sets": sets, **t, "bytes": nbytes["total"], "GBps": gbps,
                             "fraction_of_copy": gbps / bw, "floor_ms": nbytes["total"] / (bw * 1e9) * 1e3,
                             "TFLOPs": flops / (t["median_ms"] * 1e-3) / 1e12, "status": "ok"})
        e["scan"] = rows
        e["targets"] = apply_targets(rows)
        missed = [k for k, v in e["targets"].items() if v is False]
        run.log(f"speed: {len(e['targets']) - len(missed)} of {len(e['targets'])} targets met; missed: {missed}")
        # 3. the PyTorch reference (fp32) and mamba-ssm's backend when present, for comparison.
        comp = []
        mamba = backends.registered_backends().get("mamba-ssm")
        mamba_ok = mamba is not None and mamba.available()
        e["mamba_ssm"] = "available" if mamba_ok else (mamba.unavailable_reason() if mamba else "not registered")
        for ch, ln in run_shapes(run, resolutions):
            if run.elapsed() > deadline_s:
                comp.append({"shape": [1, ch, ln], "status": "skipped: time budget"})
                continue
            inp = make_inputs(ScanCase(1, ch, ln), gen, device)
            row = {"shape": [1, ch, ln], "dtype": "float32"}
            ref_fn = lambda i: selective_scan_reference(**inp, delta_softplus=True)  # noqa: E731
            row["reference"] = stats(time_calls(ref_fn, reps=3 if run.device == "cuda" else 1, warmup=1, flush=flush, device=run.device))
            if mamba_ok:
                row["mamba_ssm"] = stats(time_calls(lambda i: mamba.fn(**inp, delta_softplus=True), reps=10, warmup=2, flush=flush, device=run.device))
            ours = next((r for r in rows if r["shape"] == [1, ch, ln] and r["dtype"] == "float32" and "median_ms" in r), None)
            if ours:
                row["cuda_median_ms"] = ours["median_ms"]
                row["speedup_vs_reference"] = row["reference"]["median_ms"] / ours["median_ms"]
            comp.append(row)
        e["comparison"] = comp
        if run.device == "cuda":
            torch.cuda.empty_cache()
