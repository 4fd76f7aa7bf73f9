"""The forward_scans step: the summed scan time of one base-conv forward (all 37 calls of the
inventory, in forward order, each on its own fresh inputs) at each resolution, fp32 and fp16
inputs, beside the summed byte floor at this run's copy bandwidth. Issue #9 target: <= 1.3x.

One timed repetition = an L2 flush, then the 37 calls back to back with a CUDA event after each;
the sequence time is first event to last, per-site times come from the events between calls.
"""

from __future__ import annotations

import time

from .cases import ScanCase, make_inputs
from .common import Run, l2_flusher, stats, synchronize
from .correctness import kernel_scan_into
from .shapes import model_totals, scan_inventory
from .speed import copy_bandwidth

TARGET_RATIO = 1.3  # summed scan time / summed byte floor
VARIANT = "conv"


def _timed_sequences(run: Run, calls, reps: int, warmup: int, flush) -> tuple[list[float], list[list[float]]]:
    """(sequence ms per rep, per-call ms per rep) for running every (fn) in `calls` in order."""
    import torch

    seq, per_call = [], []
    for rep in range(reps + warmup):
        if flush is not None:
            flush()
        if run.device == "cuda":
            events = [torch.cuda.Event(enable_timing=True) for _ in range(len(calls) + 1)]
            events[0].record()
            for k, fn in enumerate(calls):
                fn()
                events[k + 1].record()
            torch.cuda.synchronize()
            marks = [events[0].elapsed_time(ev) for ev in events]
        else:  # CPU rehearsal: wall clock
            t0 = time.perf_counter()
            marks = [0.0]
            for fn in calls:
                fn()
                marks.append((time.perf_counter() - t0) * 1e3)
        if rep >= warmup:
            seq.append(marks[-1])
            per_call.append([b - a for a, b in zip(marks, marks[1:])])
    return seq, per_call


def step_forward_scans(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024)) -> None:
    import torch

    with run.step("forward_scans") as e:
        scan_into = kernel_scan_into(run)
        device = torch.device(run.device)
        gen = torch.Generator(device=device).manual_seed(seed + 2)
        bw = copy_bandwidth(run, gen)
        e["copy_GBps"] = bw
        e["target"] = f"summed scan time <= {TARGET_RATIO}x the summed byte floor"
        flush, _ = l2_flusher(run.device)
        reps, warmup = (20, 3) if run.device == "cuda" else (1, 0)
        rows = []
        for res in resolutions:
            sites = scan_inventory(VARIANT, res)
            totals = model_totals(VARIANT, res)
            for dt, key in (("float32", "fp32"), ("float16", "fp16in")):
                row = {"variant": VARIANT, "resolution": res, "dtype": dt, "calls": totals["calls"]}
                if run.elapsed() > deadline_s:
                    rows.append({**row, "status": "skipped: time budget"})
                    continue
                order, calls = [], []
                for site in sites:
                    for _ in range(site.calls):
                        inp = make_inputs(ScanCase(1, site.channels, site.length, dtype=dt), gen, device)
                        out = torch.empty(1, site.channels, site.length, device=device)
                        calls.append(lambda inp=inp, out=out: scan_into(out, **inp))
                        order.append(site.site)
                synchronize(run.device)
                seq, per_call = _timed_sequences(run, calls, reps, warmup, flush)
                t = stats(seq)
                floor_ms = totals[f"bytes_{key}"] / (bw * 1e9) * 1e3
                by_site: dict[str, float] = {}
                for k, name in enumerate(order):
                    by_site[name] = by_site.get(name, 0.0) + stats([p[k] for p in per_call])["median_ms"]
                row.update({**t, "bytes": totals[f"bytes_{key}"], "floor_ms": floor_ms, "ratio_to_floor": t["median_ms"] / floor_ms,
                            "by_site_ms": by_site, "status": "ok"})
                row["target_met"] = row["ratio_to_floor"] <= TARGET_RATIO
                rows.append(row)
                run.log(f"forward_scans {res} {dt}: {t['median_ms']:.3f} ms over {len(calls)} calls, floor {floor_ms:.3f} ms, "
                        f"{row['ratio_to_floor']:.2f}x ({'met' if row['target_met'] else 'MISSED'})")
                del calls
        e["runs"] = rows
        if run.device == "cuda":
            torch.cuda.empty_cache()
