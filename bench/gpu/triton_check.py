"""The Triton backend's steps of the GPU check (issue #14), run after the CUDA kernel's:

- triton_correctness: the Triton kernels over the CUDA kernel's matrices (cases.correctness_plan for
  v1, ss2d_cases.ss2d_plan for the fused op), output NaN-poisoned, run twice (bit-identical), against
  the float64 reference; the public ops with REMAMBER_SCAN_BACKEND's choice "triton" give the same bits;
  one op call of each kind captured into a CUDA graph and one through torch.compile(fullgraph=True,
  inductor) give the eager bits;
- triton_speed: every model shape of both ops, fp32 and fp16 inputs, the Triton kernel's median time
  next to our CUDA kernel's on the same inputs (same method as speed.py: L2 flushed, input sets
  rotated), GB/s of the compulsory bytes, fraction of this run's copy bandwidth, and the ratio to the
  CUDA kernel's time; issue #14's target: within 1.3x on every model shape;
- triton_e2e: the base model (scan_op fused, the default) at each resolution, fp32 and fp16 autocast,
  with the triton backend: eager latency and peak memory next to the cuda backend's, logits parity
  with the cuda backend (the reference where the library is absent), and a CUDA-graph replay of the
  forward with its output against the eager one.

In a CPU rehearsal (--rehearse-cpu) the references stand in for both kernels, as in the other steps:
the bookkeeping runs, nothing is measured (the kernels themselves run on the CPU under Triton's
interpreter in tests/test_triton_backend.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random

from .cases import ERROR_BOUND, ScanCase, compare, correctness_plan, count_by_group, worst_error, make_inputs, reference_channels, reference_scan
from .common import Run, l2_bytes, l2_flusher, markdown_table, stats, synchronize, time_calls
from .correctness import kernel_scan_into
from .shapes import scan_bytes
from .speed import REHEARSAL_MAX_ELEMENTS, copy_bandwidth, run_shapes
from .ss2d import _check_case, _rehearsal_shapes, ss2d_scan_into
from .ss2d_cases import DIRECTIONS, LAYOUT_CODES, SS2DCase, make_ss2d_inputs, ss2d_bytes, ss2d_plan, unique_ss2d_shapes

TARGET_RATIO_TO_CUDA = 1.3  # issue #14: Triton within 1.3x of our CUDA kernel's time on every model shape
E2E_PARITY_BOUND = {"fp32": 1e-3, "fp16": 1e-2}  # as e2e.py: logits rel_l2 of one scan backend against another


def triton_into(run: Run) -> tuple:
    """(v1 into, ss2d into) of the triton backend; in a rehearsal the references (nothing measured)."""
    if run.device != "cuda":
        return kernel_scan_into(run), ss2d_scan_into(run)
    from remamber.ops import triton_backend

    reason = triton_backend.unavailable_reason()
    if reason:
        raise RuntimeError(f"triton backend unavailable: {reason}")
    if triton_backend.interpreted():
        raise RuntimeError("TRITON_INTERPRET=1 is set: unset it to run the compiled kernels on the GPU")
    return triton_backend.triton_scan_into, triton_backend.triton_ss2d_scan_into


def _cuda_into(run: Run) -> tuple:
    """(v1 into, ss2d into) of our CUDA kernel, or (None, None) with the reason when it cannot run."""
    if run.device != "cuda":
        return kernel_scan_into(run), ss2d_scan_into(run), None
    try:
        return kernel_scan_into(run), ss2d_scan_into(run), None
    except RuntimeError as exc:
        return None, None, str(exc)


def _small_enough(run: Run, elements: int) -> bool:
    return run.device == "cuda" or elements <= REHEARSAL_MAX_ELEMENTS


def v1_plan(run: Run) -> list:
    plan = correctness_plan()
    return [c for c in plan if _small_enough(run, c.batch * c.channels * c.nstate * c.length)]


def fused_plan(run: Run, resolutions) -> list[SS2DCase]:
    # The kernel against float64 only: the unfused comparison and the cuda op path belong to the CUDA steps.
    plan = [dataclasses.replace(c, unfused=False, api=False) for c in ss2d_plan(resolutions)]
    return [c for c in plan if _small_enough(run, c.batch * DIRECTIONS * c.dim * c.nstate * c.height * c.width)]


def _check_v1(run: Run, case, scan_into, gen, rng, device) -> dict:
    import torch

    from remamber.ops import selective_scan, use_backend

    row = {"case": case.label(), "group": case.group}
    inp = make_inputs(case, gen, device)
    out = torch.full(inp["u"].shape, float("nan"), dtype=torch.float32, device=device)
    scan_into(out, **inp, delta_softplus=case.softplus)
    out2 = torch.full_like(out, float("nan"))
    scan_into(out2, **inp, delta_softplus=case.softplus)
    synchronize(run.device)
    row["unwritten_nan"] = int(torch.isnan(out).sum().item())
    row["nonfinite"] = int((~torch.isfinite(out)).sum().item())
    row["bitwise_repeatable"] = bool(torch.equal(out, out2))
    del out2
    chans = reference_channels(case, rng)
    row.update(compare(out, reference_scan(inp, case.softplus, chans), chans))
    row["reference_channels"] = "all" if chans is None else f"{len(chans)} of {case.channels}"
    if case.api and run.device == "cuda":
        with use_backend("triton"):
            via_op = selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["delta_bias"], case.softplus)
        row["op_path_equal"] = bool(torch.equal(via_op, out))
    bound = ERROR_BOUND[case.dtype]
    ok = (row["nonfinite"] == 0 and row["bitwise_repeatable"] and row["rel_l2"] <= bound and row["max_abs_over_max_ref"] <= bound
          and row.get("op_path_equal", True))
    row["status"] = "pass" if ok else "FAIL"
    return row


def _capture_and_compile(run: Run, gen, device) -> dict:
    """One call of each op with the triton backend: CUDA-graph capture and torch.compile(fullgraph) give the eager bits."""
    import torch

    from remamber.ops import selective_scan, ss2d_scan, use_backend

    if run.device != "cuda":
        return {"status": "skipped: needs a CUDA device"}
    out: dict = {}
    v1 = make_inputs(ScanCase(2, 64, 3000, 4, 4, dtype="bfloat16"), gen, device)
    sp = make_ss2d_inputs(SS2DCase(2, 32, 20, 30, "cross", nstate=4, dtype="float16"), gen, device)
    calls = {"selective_scan": lambda: selective_scan(v1["u"], v1["delta"], v1["A"], v1["B"], v1["C"], v1["D"], v1["delta_bias"], True),
             "ss2d_scan": lambda: ss2d_scan(sp["u"], sp["delta"], sp["A"], sp["B"], sp["C"], sp["D"], sp["delta_bias"], True, "cross")}
    with use_backend("triton"):
        for name, fn in calls.items():
            row = out[name] = {}
            eager = fn()  # also compiles the kernel variant before the capture
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    fn()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static = fn()
                graph.replay()
                torch.cuda.synchronize()
                row["cudagraph_equal"] = bool(torch.equal(static, eager))
            except Exception as exc:
                row["cudagraph_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            try:
                compiled = torch.compile(lambda: fn() * 1.0, fullgraph=True, backend="inductor")
                row["compile_equal"] = bool(torch.equal(compiled(), eager))
            except Exception as exc:
                row["compile_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            row["status"] = "pass" if row.get("cudagraph_equal") and row.get("compile_equal") else "FAIL"
    return out


def step_triton_correctness(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024)) -> None:
    import torch

    with run.step("triton_correctness") as e:
        v1_into, fused_into = triton_into(run)
        e["kernels"] = "triton" if run.device == "cuda" else "CPU rehearsal: reference scans"
        e["bounds"] = ERROR_BOUND
        device = torch.device(run.device)
        gen = torch.Generator(device=device).manual_seed(seed + 20)
        rng = random.Random(seed + 20)
        plans = [("v1", c) for c in v1_plan(run)] + [("fused", c) for c in fused_plan(run, resolutions)]
        e["planned"] = len(plans)
        rows = []
        for kind, case in plans:
            group = f"{kind}: {case.group}"
            if run.elapsed() > deadline_s:
                rows.append({"case": case.label(), "group": group, "status": "skipped: time budget"})
                continue
            try:
                if kind == "v1":
                    row = _check_v1(run, case, v1_into, gen, rng, device)
                else:
                    row = _check_case(run, case, fused_into, None, gen, rng, device)
            except Exception as exc:
                row = {"case": case.label(), "status": "FAIL", "error": f"{type(exc).__name__}: {exc}"}
                if run.device == "cuda":
                    torch.cuda.empty_cache()
            row["group"] = group
            if row["status"] == "FAIL":
                run.fail(f"triton_correctness {kind} {case.label()}: {row}")
            rows.append(row)
        e["cases"] = rows
        counts = count_by_group(rows)
        e["by_group"] = counts
        worst = worst_error(rows)
        if worst is not None:
            e["worst"] = worst
        e["capture_compile"] = cc = _capture_and_compile(run, gen, device)
        for name, r in cc.items():
            if isinstance(r, dict) and r.get("status") == "FAIL":
                run.fail(f"triton_correctness {name}: CUDA graph / torch.compile: {r}")
        if any(r["status"] == "FAIL" for r in rows) or any(isinstance(r, dict) and r.get("status") == "FAIL" for r in cc.values()):
            e["status"] = "failed"
        run.log(f"triton_correctness: {json.dumps(counts)}")
        if run.device == "cuda":
            torch.cuda.empty_cache()


def _time_pair(run: Run, make, into_fns: dict, nbytes: int, gen, l2, flush) -> dict:
    """Median time of each kernel on the same rotating input sets (one set list shared by both)."""
    import torch

    reps, warmup = (30, 5) if run.device == "cuda" else (2, 1)
    read = nbytes
    sets = max(2, min(16, math.ceil(4 * l2 / read))) if run.device == "cuda" else 2
    inputs = [make() for _ in range(sets)]
    outs = [torch.empty(inp["u"].shape, device=inp["u"].device) for inp in inputs]
    res = {"input_sets": sets}
    for name, fn in into_fns.items():
        if fn is None:
            continue
        res[name] = stats(time_calls(lambda i: fn(outs[i % sets], **inputs[i % sets]), reps=reps, warmup=warmup, flush=flush,
                                     device=run.device))
    del inputs, outs
    return res


def step_triton_speed(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024)) -> None:
    import torch

    with run.step("triton_speed") as e:
        v1_tri, fused_tri = triton_into(run)
        v1_cuda, fused_cuda, why = _cuda_into(run)
        e["cuda_kernel"] = "available" if why is None else why
        device = torch.device(run.device)
        gen = torch.Generator(device=device).manual_seed(seed + 21)
        bw = copy_bandwidth(run, gen)
        e["copy_GBps"] = bw
        e["bytes"] = "each op's compulsory bytes (shapes.scan_bytes, ss2d_cases.ss2d_bytes)"
        e["target"] = f"triton median <= {TARGET_RATIO_TO_CUDA}x the CUDA kernel's on every model shape"
        l2 = l2_bytes(run.device)
        flush, e["l2_flush_bytes"] = l2_flusher(run.device)
        shapes = [("v1", (ch, ln)) for ch, ln in run_shapes(run, resolutions)]
        fused_shapes = unique_ss2d_shapes(resolutions)
        shapes += [("fused", s) for s in (fused_shapes if run.device == "cuda" else _rehearsal_shapes(fused_shapes))]
        rows = []
        for kind, shape in shapes:
            for dt in ("float32", "float16"):
                if kind == "v1":
                    ch, ln = shape
                    row = {"op": "v1", "shape": [1, ch, ln], "dtype": dt}
                    nbytes = scan_bytes(1, ch, ln, in_dtype=dt)
                    make = lambda: make_inputs(ScanCase(1, ch, ln, dtype=dt), gen, device)  # noqa: E731
                    fns = {"triton": v1_tri, "cuda": v1_cuda}
                else:
                    d, h, w, lay = shape
                    row = {"op": "fused", "shape": [1, d, h, w], "layout": lay, "dtype": dt}
                    nbytes = ss2d_bytes(1, d, h, w, in_dtype=dt)
                    code = LAYOUT_CODES[lay]
                    make = lambda: {**make_ss2d_inputs(SS2DCase(1, d, h, w, lay, dtype=dt), gen, device), "layout": code}  # noqa: E731
                    fns = {"triton": fused_tri, "cuda": fused_cuda}
                if run.elapsed() > deadline_s:
                    rows.append({**row, "status": "skipped: time budget"})
                    continue
                t = _time_pair(run, make, fns, nbytes["read"], gen, l2, flush)
                row.update(t)
                row["bytes"] = nbytes["total"]
                for name in ("triton", "cuda"):
                    if name in t:
                        row[f"{name}_GBps"] = nbytes["total"] / (t[name]["median_ms"] * 1e-3) / 1e9
                        row[f"{name}_of_copy"] = row[f"{name}_GBps"] / bw
                row["floor_ms"] = nbytes["total"] / (bw * 1e9) * 1e3
                if "triton" in t and "cuda" in t:
                    row["triton_over_cuda"] = t["triton"]["median_ms"] / t["cuda"]["median_ms"]
                    if run.device == "cuda":  # a rehearsal times the references: no verdict
                        row["target_met"] = row["triton_over_cuda"] <= TARGET_RATIO_TO_CUDA
                row["status"] = "ok"
                rows.append(row)
        e["scan"] = rows
        judged = [r for r in rows if "target_met" in r]
        e["targets_met"] = sum(r["target_met"] for r in judged)
        e["targets_judged"] = len(judged)
        run.log(f"triton_speed: {e['targets_met']} of {len(judged)} shapes within {TARGET_RATIO_TO_CUDA}x of the CUDA kernel")
        if run.device == "cuda":
            torch.cuda.empty_cache()


def step_triton_e2e(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024), preset: str = "base") -> None:
    import torch

    import remamber
    from remamber.ops import use_backend
    from remamber.parity import compare_logits

    from .e2e import e2e_inputs
    from .e2e_modes import _graph_replay, _precision, _rel_l2

    with run.step("triton_e2e") as e:
        cuda = run.device == "cuda"
        device = torch.device(run.device)
        if cuda:
            triton_into(run)  # raises with the reason when the triton backend cannot run
            _, _, why = _cuda_into(run)
            kernel, other = "triton", ("cuda" if why is None else "reference")
        else:
            kernel, other = "reference", "reference"  # a rehearsal runs the logic only
        e["backends"] = {"measured": kernel, "compared_with": other}
        saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        model = remamber.build_model("conv", preset, seed=0).to(device).eval()
        e["model"] = f"{preset} conv (scan_op fused)"
        e["parity_bounds_rel_l2"] = E2E_PARITY_BOUND
        rows = []
        reps = 10 if cuda else 1
        try:
            for res in resolutions:
                image, ids, mask = e2e_inputs(res, device, seed)
                for prec in ("fp32", "fp16"):
                    row = {"resolution": res, "precision": prec}
                    rows.append(row)
                    if run.elapsed() > deadline_s:
                        row["status"] = "skipped: time budget"
                        continue
                    logits = {}
                    for backend in dict.fromkeys((kernel, other)):
                        if cuda:
                            torch.cuda.synchronize()
                            torch.cuda.empty_cache()
                            torch.cuda.reset_peak_memory_stats()
                        ctx = _precision(torch, prec, device.type)
                        with torch.inference_mode(), ctx, use_backend(backend):
                            logits[backend] = model(image, ids, mask).float()
                            t = stats(time_calls(lambda i: model(image, ids, mask), reps=reps, warmup=1, device=run.device))
                        row[backend] = {**t, "peak_mem_bytes": torch.cuda.max_memory_allocated() if cuda else 0}
                    m = compare_logits(logits[other].cpu().numpy(), logits[kernel].cpu().numpy()).as_dict()
                    row["parity"] = {"vs": other, **m}
                    row["parity_pass"] = m["nan_count"] == 0 and m["rel_l2_error"] <= E2E_PARITY_BOUND[prec]
                    if not row["parity_pass"]:
                        run.fail(f"triton_e2e parity {res} {prec} vs {other}: rel_l2 {m['rel_l2_error']:.2e}, NaN {m['nan_count']}")
                    if kernel != other:
                        row["triton_over_" + other] = row[kernel]["median_ms"] / row[other]["median_ms"]
                    if cuda:
                        try:
                            with torch.inference_mode(), use_backend(kernel):
                                replay, keep = _graph_replay(torch, model, image, ids, mask, _precision(torch, prec, device.type), reps=20)
                            row["cudagraph"] = {**replay, "rel_l2_vs_eager": _rel_l2(torch, keep[1].float(), logits[kernel])}
                            del keep
                        except Exception as exc:
                            row["cudagraph"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
                            run.fail(f"triton_e2e {res} {prec}: CUDA-graph capture with the triton backend failed: {row['cudagraph']['error']}")
                    else:
                        row["cudagraph"] = {"status": "skipped: needs a CUDA device"}
                    row["status"] = "ok"
                    run.log(f"triton_e2e {res} {prec}: {kernel} {row[kernel]['median_ms']:.1f} ms, {other} {row[other]['median_ms']:.1f} ms, "
                            f"logits rel_l2 {m['rel_l2_error']:.1e}")
                    del logits
                    if cuda:
                        torch.cuda.empty_cache()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32
            e["runs"] = rows
            model = None
            if cuda:
                torch.cuda.empty_cache()
        if any(r.get("parity_pass") is False for r in rows):
            e["status"] = "failed"


def _f(x, spec=".1f") -> str:
    return "" if x is None else format(x, spec)


def triton_targets(results: dict) -> list[tuple[str, bool]]:
    """Issue #14's target rows this run measured, as (label, met)."""
    out = []
    for r in results["steps"].get("triton_speed", {}).get("scan", []):
        if "target_met" in r:
            label = "x".join(map(str, r["shape"])) + (f" {r['layout']}" if "layout" in r else "")
            out.append((f"triton {r['op']} {label} {r['dtype']} <= {TARGET_RATIO_TO_CUDA}x cuda", r["target_met"]))
    return out


def triton_sections(results: dict) -> list[str]:
    """summary.md's Triton tables: correctness groups, speed per shape against the CUDA kernel, the model."""
    steps = results["steps"]
    parts = []
    corr = steps.get("triton_correctness", {})
    if corr.get("by_group"):
        worst = corr.get("worst", {})
        cc = corr.get("capture_compile", {})
        cc_text = "; ".join(f"{k}: {v.get('status', '')}" for k, v in cc.items() if isinstance(v, dict)) or cc.get("status", "")
        parts.append("triton backend correctness (vs float64)\n" + markdown_table(
            ["group", "pass", "FAIL", "skipped"], [[g, c["pass"], c["FAIL"], c["skipped"]] for g, c in corr["by_group"].items()])
            + f"\nworst: rel_l2 {_f(worst.get('rel_l2'), '.2e')}, max/max {_f(worst.get('max_abs_over_max_ref'), '.2e')}; "
            f"CUDA graph + torch.compile of one op call: {cc_text}")
    speed = steps.get("triton_speed", {})
    rows = []
    for r in speed.get("scan", []):
        if "triton" not in r:
            continue
        shape = "x".join(map(str, r["shape"])) + (f" {r['layout']}" if "layout" in r else "")
        rows.append([r["op"], shape, r["dtype"], f"{r['triton']['median_ms'] * 1e3:.1f}",
                     _f(r["cuda"]["median_ms"] * 1e3) if "cuda" in r else "", f"{r['triton_GBps']:.0f}", _f(r.get("cuda_GBps"), ".0f"), f"{r['triton_of_copy']:.0%}",
                     _f(r.get("triton_over_cuda"), ".2f"), {True: "met", False: "MISSED"}.get(r.get("target_met"), "")])
    if rows:
        parts.append(f"triton vs cuda kernel (compulsory bytes; copy bandwidth {speed.get('copy_GBps', 0):.0f} GB/s; "
                     f"target triton <= {TARGET_RATIO_TO_CUDA}x cuda)\n" + markdown_table(
                         ["op", "shape", "dtype", "triton µs", "cuda µs", "triton GB/s", "cuda GB/s", "triton of copy", "triton/cuda",
                          "target"], rows))
    model = steps.get("triton_e2e", {})
    if model.get("runs"):
        b = model.get("backends", {})
        kernel, other = b.get("measured", "triton"), b.get("compared_with", "cuda")
        rows = [[r["resolution"], r["precision"], _f(r.get(kernel, {}).get("median_ms")), _f(r.get(other, {}).get("median_ms")),
                 _f(r.get(f"triton_over_{other}"), ".2f"), _f(r.get("cudagraph", {}).get("median_ms")),
                 _f(r.get("parity", {}).get("rel_l2_error"), ".1e"), {True: "pass", False: "FAIL"}.get(r.get("parity_pass"), r.get("status", ""))]
                for r in model["runs"]]
        parts.append(f"{model.get('model', '')}: {kernel} backend end to end (ms)\n" + markdown_table(
            ["S", "prec", f"{kernel} eager", f"{other} eager", "ratio", f"{kernel} graph replay", f"logits rel_l2 vs {other}", "parity"], rows))
    tg = triton_targets(results)
    if tg:
        parts.append(f"issue #14 targets: {sum(v for _, v in tg)} of {len(tg)} met; MISSED: " + ("; ".join(k for k, v in tg if not v) or "none"))
    return parts
