"""Correctness steps: the PyTorch reference against a float64 step loop (CPU, every run), and the
kernel against the float64 reference on the GPU (165 cases, output NaN-poisoned, run twice).
"""

from __future__ import annotations

import json
import random
import sys

from .cases import (ERROR_BOUND, REFERENCE_ELEMENT_BUDGET, ScanCase, compare, correctness_plan, count_by_group, make_inputs,
                    reference_channels, reference_scan, sequential_scan_float64)
from .common import Run, synchronize


def kernel_scan_into(run: Run):
    """The function that runs our kernel into a given output: the cuda backend's, or in a CPU
    rehearsal the reference scan (so the steps' logic runs; nothing is measured)."""
    if run.device != "cuda":
        from remamber.ops import selective_scan_reference

        def reference_into(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
            out.copy_(selective_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus))
            return out

        return reference_into
    from remamber.ops import cuda_backend

    reason = cuda_backend.unavailable_reason()
    if reason:
        raise RuntimeError(f"cuda backend unavailable: {reason}")
    return cuda_backend.cuda_scan_into


def step_reference_cpu(run: Run, seed: int) -> None:
    import torch

    from remamber.ops import selective_scan_reference

    with run.step("reference_cpu") as e:
        gen = torch.Generator().manual_seed(seed)
        rows = []
        for case in (ScanCase(2, 8, 1, 4, 1), ScanCase(1, 8, 37, 4, 16, with_D=False), ScanCase(2, 12, 300, 4, 3, dist="wide"),
                     ScanCase(1, 8, 257, 2, 1, with_bias=False, softplus=False), ScanCase(1, 4, 129, 4, 2, dtype="float16")):
            inp = make_inputs(case, gen, "cpu")
            args = [inp[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias")]
            ref = sequential_scan_float64(*args, case.softplus)
            for precision in ("float32", "float64"):
                a = [None if t is None else (t.double() if precision == "float64" else t) for t in args]
                if precision == "float32":  # the reference computes in fp32 for fp16 inputs too
                    a[0:2] = [t.float() for t in a[0:2]]
                    a[3:5] = [t.float() for t in a[3:5]]
                out = selective_scan_reference(*a, case.softplus)
                m = compare(out, ref, None)
                bound = 1e-12 if precision == "float64" else ERROR_BOUND["float32"]
                ok = m["rel_l2"] <= bound and m["max_abs_over_max_ref"] <= bound and bool(torch.isfinite(out).all())
                rows.append({"case": case.label(), "precision": precision, **m, "bound": bound, "pass": ok})
                if not ok:
                    run.fail(f"reference_cpu {case.label()} {precision}: {m}")
        e["cases"] = rows
        e["passed"] = sum(r["pass"] for r in rows)
        e["total"] = len(rows)
        if e["passed"] != e["total"]:
            e["status"] = "failed"


def step_correctness(run: Run, seed: int, deadline_s: float) -> None:
    import torch

    from remamber.ops import cuda_backend, selective_scan, use_backend

    with run.step("correctness") as e:
        scan_into = kernel_scan_into(run)
        e["library"] = str(cuda_backend.loaded_library_path()) if run.device == "cuda" else "CPU rehearsal: reference scan"
        e["seed"] = seed
        e["bounds"] = ERROR_BOUND
        e["reference_element_budget"] = REFERENCE_ELEMENT_BUDGET
        device = torch.device(run.device)
        gen = torch.Generator(device=device).manual_seed(seed)
        rng = random.Random(seed)
        plan = correctness_plan()
        e["planned"] = len(plan)
        rows = []
        try:
            from tqdm import tqdm

            bar = tqdm(plan, desc="correctness", file=sys.stderr, mininterval=10)
        except ImportError:
            bar = plan
        for case in bar:
            if run.elapsed() > deadline_s:
                rows.append({"case": case.label(), "group": case.group, "status": "skipped: time budget"})
                continue
            row = {"case": case.label(), "group": case.group}
            try:
                inp = make_inputs(case, gen, device)
                chans = reference_channels(case, rng)
                out = torch.full(inp["u"].shape, float("nan"), dtype=torch.float32, device=device)
                scan_into(out, **inp, delta_softplus=case.softplus)
                out2 = torch.full_like(out, float("nan"))
                scan_into(out2, **inp, delta_softplus=case.softplus)
                synchronize(run.device)
                row["unwritten_nan"] = int(torch.isnan(out).sum().item())
                row["nonfinite"] = int((~torch.isfinite(out)).sum().item())
                row["bitwise_repeatable"] = bool(torch.equal(out, out2))
                del out2
                ref = reference_scan(inp, case.softplus, chans)
                row.update(compare(out, ref, chans))
                row["reference_channels"] = "all" if chans is None else f"{len(chans)} of {case.channels}"
                if case.api and run.device == "cuda":  # the public op path and a non-contiguous input give the same bits
                    with use_backend("cuda"):
                        via_op = selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["delta_bias"], case.softplus)
                        u_nc = inp["u"].transpose(1, 2).contiguous().transpose(1, 2)
                        via_nc = selective_scan(u_nc, inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["delta_bias"], case.softplus)
                    row["op_path_equal"] = bool(torch.equal(via_op, out))
                    row["noncontiguous_equal"] = bool(torch.equal(via_nc, out))
                bound = ERROR_BOUND[case.dtype]
                ok = (row["nonfinite"] == 0 and row["bitwise_repeatable"] and row["rel_l2"] <= bound
                      and row["max_abs_over_max_ref"] <= bound and row.get("op_path_equal", True) and row.get("noncontiguous_equal", True))
                row["status"] = "pass" if ok else "FAIL"
                if not ok:
                    run.fail(f"correctness {case.label()}: {row}")
                del inp, out, ref
            except Exception as exc:
                row["status"] = "FAIL"
                row["error"] = f"{type(exc).__name__}: {exc}"
                run.fail(f"correctness {case.label()} raised {row['error']}")
                if run.device == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
        e["cases"] = rows
        counts = count_by_group(rows)
        e["by_group"] = counts
        measured = [r for r in rows if "rel_l2" in r]
        for dt in ERROR_BOUND:
            sub = [r for r in measured if f" {dt} " in r["case"]]
            if sub:
                e[f"worst_{dt}"] = {"rel_l2": max(r["rel_l2"] for r in sub), "max_abs_over_max_ref": max(r["max_abs_over_max_ref"] for r in sub)}
        if any(r["status"] == "FAIL" for r in rows):
            e["status"] = "failed"
        run.log(f"correctness: {json.dumps(counts)}")


# ---------------------------------------------------------------------------------------------
