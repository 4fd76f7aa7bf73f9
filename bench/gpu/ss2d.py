"""The fused SS2DScan steps of the GPU check (issue #10), run after the v1 kernel's steps:

- ss2d_correctness: the fused kernel on every model SS2D shape (plus options off, N = 16, batch 4),
  output NaN-poisoned, run twice (bit-identical), against float64, and against the unfused path
  (v1 kernel + layout ops) on the same inputs;
- ss2d_speed: median µs per shape (same method as speed.py), GB/s counting only the fused op's
  compulsory bytes, and the fraction of this run's copy bandwidth;
- ss2d_model: the model's summed kernel time with scan_op="fused" against "selective" (torch.profiler,
  as e2e_modes.py); issue #10's target is fused at least 20 % lower at 1024 fp16.

In a CPU rehearsal (--rehearse-cpu) the fused reference stands in for the kernel and the v1 reference
for the v1 kernel: the bookkeeping runs, nothing is measured.
"""

from __future__ import annotations

import json
import math
import random

from .cases import ERROR_BOUND, compare, count_by_group, worst_error
from .common import Run, l2_bytes, l2_flusher, stats, synchronize, time_calls
from .correctness import kernel_scan_into
from .speed import REHEARSAL_MAX_ELEMENTS, copy_bandwidth
from .ss2d_cases import (DIRECTIONS, LAYOUT_CODES, SS2DCase, make_ss2d_inputs, reference_dims, ss2d_bytes, ss2d_plan,
                         ss2d_reference, unfused_ss2d, unique_ss2d_shapes)

TARGET_FUSED_OVER_UNFUSED = 0.80  # issue #10: summed kernel time of the fused model at least 20 % lower
TARGET_AT = (1024, "fp16")  # ... at 1024 with fp16 autocast (other rows are reported, not judged)
UNFUSED_BOUND = 2 * ERROR_BOUND["float32"]  # fused vs unfused: each within 1e-5 of the float64 output


def ss2d_scan_into(run: Run):
    """The function that runs the fused kernel into a given output (out, u, delta, A, B, C, D,
    delta_bias, delta_softplus, layout): the cuda backend's, or in a rehearsal the fused reference."""
    if run.device != "cuda":
        from remamber.ops import ss2d_scan_reference

        def reference_into(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0):
            out.copy_(ss2d_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus, layout))
            return out

        return reference_into
    from remamber.ops import cuda_backend

    reason = cuda_backend.ss2d_unavailable_reason()
    if reason:
        raise RuntimeError(f"fused SS2D kernel unavailable: {reason}")
    return cuda_backend.cuda_ss2d_scan_into


def _rehearsal_shapes(shapes):
    return [s for s in shapes if DIRECTIONS * s[0] * s[1] * s[2] <= REHEARSAL_MAX_ELEMENTS]


def _check_case(run: Run, case: SS2DCase, fused_into, v1_into, gen, rng, device) -> dict:
    import torch

    from remamber.ops import ss2d_scan, use_backend

    row = {"case": case.label(), "group": case.group}
    inp = make_ss2d_inputs(case, gen, device)
    code = LAYOUT_CODES[case.layout]
    out = torch.full(inp["u"].shape, float("nan"), dtype=torch.float32, device=device)
    fused_into(out, **inp, delta_softplus=case.softplus, layout=code)
    out2 = torch.full_like(out, float("nan"))
    fused_into(out2, **inp, delta_softplus=case.softplus, layout=code)
    synchronize(run.device)
    row["unwritten_nan"] = int(torch.isnan(out).sum().item())
    row["nonfinite"] = int((~torch.isfinite(out)).sum().item())
    row["bitwise_repeatable"] = bool(torch.equal(out, out2))
    del out2
    dims = reference_dims(case, rng)
    ref = ss2d_reference(inp, case.softplus, case.layout, dims)
    row.update(compare(out, ref, dims))
    row["reference_channels"] = "all" if dims is None else f"{len(dims)} of {case.dim}"
    del ref
    if case.unfused:
        unfused = unfused_ss2d(v1_into, inp, case.softplus, case.layout)
        m = compare(out, unfused.double(), None)
        row["vs_unfused"] = {"rel_l2": m["rel_l2"], "max_abs_over_max_ref": m["max_abs_over_max_ref"]}
        del unfused
    if case.api and run.device == "cuda":  # the public op gives the same bits as the direct call
        with use_backend("cuda"):
            via_op = ss2d_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["delta_bias"], case.softplus,
                               case.layout)
        row["op_path_equal"] = bool(torch.equal(via_op, out))
    bound = ERROR_BOUND[case.dtype]
    ok = (row["nonfinite"] == 0 and row["bitwise_repeatable"] and row["rel_l2"] <= bound and row["max_abs_over_max_ref"] <= bound
          and row.get("op_path_equal", True)
          and all(v <= UNFUSED_BOUND for v in row.get("vs_unfused", {}).values()))
    row["status"] = "pass" if ok else "FAIL"
    return row


def step_ss2d_correctness(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024)) -> None:
    import torch

    with run.step("ss2d_correctness") as e:
        fused_into = ss2d_scan_into(run)
        v1_into = kernel_scan_into(run)
        e["bounds"] = {"vs_float64": ERROR_BOUND, "fused_vs_unfused": UNFUSED_BOUND}
        device = torch.device(run.device)
        gen = torch.Generator(device=device).manual_seed(seed + 10)
        rng = random.Random(seed + 10)
        plan = ss2d_plan(resolutions)
        if run.device != "cuda":  # a rehearsal keeps the cases of <= 2^20 scan elements (batch x 4D x N x L)
            plan = [c for c in plan if c.batch * DIRECTIONS * c.dim * c.nstate * c.height * c.width <= REHEARSAL_MAX_ELEMENTS]
        e["planned"] = len(plan)
        rows = []
        for case in plan:
            if run.elapsed() > deadline_s:
                rows.append({"case": case.label(), "group": case.group, "status": "skipped: time budget"})
                continue
            try:
                row = _check_case(run, case, fused_into, v1_into, gen, rng, device)
            except Exception as exc:
                row = {"case": case.label(), "group": case.group, "status": "FAIL", "error": f"{type(exc).__name__}: {exc}"}
                if run.device == "cuda":
                    torch.cuda.empty_cache()
            if row["status"] == "FAIL":
                run.fail(f"ss2d_correctness {case.label()}: {row}")
            rows.append(row)
        e["cases"] = rows
        counts = count_by_group(rows)
        e["by_group"] = counts
        worst = worst_error(rows)
        if worst is not None:
            e["worst"] = worst
        vs = [r["vs_unfused"] for r in rows if "vs_unfused" in r]
        if vs:
            e["worst_vs_unfused"] = {k: max(v[k] for v in vs) for k in vs[0]}
        if any(r["status"] == "FAIL" for r in rows):
            e["status"] = "failed"
        run.log(f"ss2d_correctness: {json.dumps(counts)}")
        if run.device == "cuda":
            torch.cuda.empty_cache()


def step_ss2d_speed(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024)) -> None:
    import torch

    with run.step("ss2d_speed") as e:
        fused_into = ss2d_scan_into(run)
        device = torch.device(run.device)
        gen = torch.Generator(device=device).manual_seed(seed + 11)
        bw = copy_bandwidth(run, gen)
        e["copy_GBps"] = bw
        e["bytes"] = "the fused op's compulsory bytes only (plugins/ss2dScanPlugin/README.md)"
        l2 = l2_bytes(run.device)
        flush, e["l2_flush_bytes"] = l2_flusher(run.device)
        reps, warmup = (30, 5) if run.device == "cuda" else (2, 1)
        shapes = unique_ss2d_shapes(resolutions)
        if run.device != "cuda":
            shapes = _rehearsal_shapes(shapes)
        rows = []
        for d, h, w, lay in shapes:
            for dt in ("float32", "float16"):
                row = {"shape": [1, d, h, w], "layout": lay, "dtype": dt}
                if run.elapsed() > deadline_s:
                    rows.append({**row, "status": "skipped: time budget"})
                    continue
                case = SS2DCase(1, d, h, w, lay, dtype=dt)
                nbytes = ss2d_bytes(1, d, h, w, in_dtype=dt)
                sets = max(2, min(16, math.ceil(4 * l2 / nbytes["read"]))) if run.device == "cuda" else 2
                inputs = [make_ss2d_inputs(case, gen, device) for _ in range(sets)]
                outs = [torch.empty(1, d, h, w, device=device) for _ in range(sets)]
                code = LAYOUT_CODES[lay]
                fn = lambda i: fused_into(outs[i % sets], **inputs[i % sets], delta_softplus=True, layout=code)  # noqa: E731
                t = stats(time_calls(fn, reps=reps, warmup=warmup, flush=flush, device=run.device))
                gbps = nbytes["total"] / (t["median_ms"] * 1e-3) / 1e9
                rows.append({**row, "input_sets": sets, **t, "bytes": nbytes["total"], "GBps": gbps, "fraction_of_copy": gbps / bw,
                             "floor_ms": nbytes["total"] / (bw * 1e9) * 1e3, "status": "ok"})
                del inputs, outs
        e["scan"] = rows
        if run.device == "cuda":
            torch.cuda.empty_cache()


def profile_kernels(torch, fn, device: str) -> dict:
    """Summed device-kernel time of one call of fn, all kernels and the scan kernels alone
    (names with "scan"), and the launch count (torch.profiler, as e2e_modes.kernel_time)."""
    if device != "cuda":
        return {"kernel_ms": None, "scan_kernel_ms": None, "kernel_launches": None, "note": "no device kernels on the CPU"}
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kernels = [ev for ev in prof.events() if getattr(ev, "device_type", None) == torch.autograd.DeviceType.CUDA
               and not ev.name.startswith(("Memcpy", "Memset"))]

    def us(ev) -> float:
        tr = getattr(ev, "time_range", None)
        return tr.elapsed_us() if tr is not None else float(getattr(ev, "device_time", 0.0))

    scans = [ev for ev in kernels if "scan" in ev.name.lower()]
    return {"kernel_ms": sum(map(us, kernels)) / 1e3, "kernel_launches": len(kernels),
            "scan_kernel_ms": sum(map(us, scans)) / 1e3, "scan_launches": len(scans),
            "scan_kernel_names": sorted({ev.name[:80] for ev in scans})}


def step_ss2d_model(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024), preset: str = "base",
                    precisions=("fp16", "fp32")) -> None:
    import torch

    import remamber
    from remamber.model import set_scan_op
    from remamber.ops import use_backend

    from .e2e import e2e_inputs
    from .e2e_modes import _precision, _rel_l2

    with run.step("ss2d_model") as e:
        device = torch.device(run.device)
        cuda = run.device == "cuda"
        if cuda:
            ss2d_scan_into(run)  # raises with the reason when the fused kernel cannot run
            kernel_scan_into(run)
        saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        model = remamber.build_model("conv", preset, seed=0).to(device).eval()
        e["model"] = f"{preset} conv"
        e["backend"] = backend = "cuda" if cuda else "reference"
        e["target"] = (f"summed kernel time fused <= {TARGET_FUSED_OVER_UNFUSED:.2f}x unfused (scan_op selective) "
                       f"@{TARGET_AT[0]} {TARGET_AT[1]}")
        rows = []
        reps = 10 if cuda else 1
        try:
            # the judged row (1024 fp16) first, so a short budget still measures it
            combos = sorted(((r, p) for r in resolutions for p in precisions), key=lambda rp: rp != TARGET_AT)
            for res, prec in combos:
                image, ids, mask = e2e_inputs(res, device, seed)
                row = {"resolution": res, "precision": prec}
                rows.append(row)
                if run.elapsed() > deadline_s:
                    row["status"] = "skipped: time budget"
                    continue
                outs = {}
                for scan_op in ("fused", "selective"):
                    set_scan_op(model, scan_op)
                    ctx = _precision(torch, prec, device.type)
                    # both paths on the named backend: a missing kernel raises instead of falling back
                    with torch.inference_mode(), ctx, use_backend(backend):
                        outs[scan_op] = model(image, ids, mask).float()  # warm-up and the parity pair
                        eager = stats(time_calls(lambda i: model(image, ids, mask), reps=reps, warmup=1, device=run.device))
                        row[scan_op] = {"eager": eager, **profile_kernels(torch, lambda: model(image, ids, mask), run.device)}
                row["logits_rel_l2_fused_vs_selective"] = _rel_l2(torch, outs["fused"], outs["selective"])
                f, s = row["fused"].get("kernel_ms"), row["selective"].get("kernel_ms")
                if f and s:
                    row["fused_over_unfused"] = f / s
                    if (res, prec) == TARGET_AT:
                        row["target_met"] = row["fused_over_unfused"] <= TARGET_FUSED_OVER_UNFUSED
                row["status"] = "ok"
                run.log(f"ss2d_model {res} {prec}: kernels fused {f or 0:.2f} ms, unfused {s or 0:.2f} ms, "
                        f"ratio {row.get('fused_over_unfused', float('nan')):.2f}, logits rel_l2 "
                        f"{row['logits_rel_l2_fused_vs_selective']:.1e}")
                del outs
                if cuda:
                    torch.cuda.empty_cache()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32
            e["runs"] = rows
            model = None
            if cuda:
                torch.cuda.empty_cache()
