"""Scan test cases: the GPU correctness matrix, contract inputs, the float64 references and the
error metric; plus the "shapes" step that records the inventory, floors and plan.

The reference is remamber.ops.selective_scan_reference on float64 upcasts (chunked), and
sequential_scan_float64 is the contract one time step at a time (independent of that chunking).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

from .common import Run
from .shapes import DEVICE_CEILINGS, DIRECTIONS, floors_for_shape, model_totals, scan_inventory, unique_scan_shapes

# ---------------------------------------------------------------------------------------------
# Correctness helpers: inputs, reference, comparison
# ---------------------------------------------------------------------------------------------
# ||out-ref||/||ref|| and max|out-ref|/max|ref| bounds per input dtype. fp16/bf16 inputs are exact in
# fp32 and the reference gets the same rounded values (upcast), so a kernel that upcasts and keeps
# fp32 state has the fp32 error: the same bound. Rounding error of a fp32 recurrence grows with its
# memory length 1/(dt*|A|); the inputs below keep dt >= ~4e-4 (the model's dt init range
# 1e-3..0.1), for which a sequential fp32 loop lands near 5e-7 at L = 65,536.
ERROR_BOUND = {"float32": 1e-5, "float16": 1e-5, "bfloat16": 1e-5}
# Reference elements (batch * channels * N * L) above which the float64 reference runs on a channel
# sample (whole groups kept in order, first and last channel of each group always included).
REFERENCE_ELEMENT_BUDGET = 2**27


@dataclass
class ScanCase:
    batch: int
    channels: int
    length: int
    groups: int = DIRECTIONS
    nstate: int = 1
    dtype: str = "float32"
    with_D: bool = True
    with_bias: bool = True
    softplus: bool = True
    dist: str = "model"  # "model": dt in the model's init range; "wide": conftest-like wider range
    group: str = "model shapes"
    api: bool = False  # also run through remamber.ops.selective_scan and a non-contiguous view

    def label(self) -> str:
        opts = "".join(["D" if self.with_D else "-", "b" if self.with_bias else "-", "s" if self.softplus else "-"])
        return f"b{self.batch} c{self.channels} L{self.length} G{self.groups} N{self.nstate} {self.dtype} {opts} {self.dist}"


def correctness_plan() -> list[ScanCase]:
    """The GPU correctness matrix, in priority order (the budget may cut the tail)."""
    shapes = unique_scan_shapes()
    cases: list[ScanCase] = []
    # 1. every model shape, batch 1, both dtypes, N = 1: what the model runs.
    for ch, ln in shapes:
        for dt in ("float32", "float16"):
            cases.append(ScanCase(1, ch, ln, dtype=dt, group="model shapes b1 N1"))
    # 2. edge cases: tiny and odd lengths, chunk boundaries, channel counts per group, N, G, dtypes.
    edge = [
        (1, 8, 1, 4, 1), (2, 8, 2, 4, 16), (1, 8, 3, 1, 1), (2, 12, 31, 4, 3), (1, 8, 127, 2, 1),
        (1, 8, 2047, 4, 1), (1, 8, 2048, 4, 1), (2, 8, 2049, 4, 16), (1, 24, 4097, 4, 1), (3, 16, 4095, 8, 2),
        (1, 4, 65535, 4, 1), (1, 4, 65537, 4, 16), (1, 8, 131073, 4, 1), (2, 6, 1000, 3, 5), (1, 2050, 333, 2, 1),
    ]
    for i, (b, c, ln, g, n) in enumerate(edge):
        for dt in ("float32", "float16", "bfloat16"):
            cases.append(ScanCase(b, c, ln, g, n, dt, with_D=(i % 3 != 1), with_bias=(i % 3 != 2), softplus=(i % 4 != 3),
                                  dist="wide" if i % 2 else "model", group="edge cases", api=(i < 3)))
    # 3. options off: no D and no delta_bias on every model shape; no softplus on half of them.
    for j, (ch, ln) in enumerate(shapes):
        for dt in ("float32", "float16"):
            cases.append(ScanCase(1, ch, ln, dtype=dt, with_D=False, with_bias=False, softplus=(j % 2 == 0), group="options off"))
    # 4. batch 4, N = 1, every model shape.
    for ch, ln in shapes:
        for dt in ("float32", "float16"):
            cases.append(ScanCase(4, ch, ln, dtype=dt, group="model shapes b4 N1"))
    # 5. N = 16 on every model shape, batch 1 then 4 (reference on a channel sample when heavy).
    for b in (1, 4):
        for ch, ln in shapes:
            for dt in ("float32", "float16"):
                cases.append(ScanCase(b, ch, ln, nstate=16, dtype=dt, group=f"N16 b{b}"))
    return cases


def make_inputs(case: ScanCase, gen, device):
    """Fresh random inputs per the contract. Never zeros: zeros hide unwritten outputs."""
    import torch

    b, c, ln, g, n = case.batch, case.channels, case.length, case.groups, case.nstate
    dtype = getattr(torch, case.dtype)
    u = torch.randn(b, c, ln, generator=gen, device=device)
    if case.softplus:
        if case.dist == "wide":
            delta = torch.rand(b, c, ln, generator=gen, device=device) * 6.0 - 4.0
            bias = torch.rand(c, generator=gen, device=device) - 0.5
        else:  # dt_proj output ~ U(-1, 1) around the init bias softplus^-1(exp(U[ln 1e-3, ln 0.1]))
            delta = torch.rand(b, c, ln, generator=gen, device=device) * 2.0 - 1.0
            dt0 = torch.exp(torch.rand(c, generator=gen, device=device) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            bias = torch.log(torch.expm1(dt0))
    else:  # without softplus dt = delta + bias is used as is: keep it positive
        delta = torch.rand(b, c, ln, generator=gen, device=device) * 0.1 + 1e-3
        bias = torch.rand(c, generator=gen, device=device) * 1e-2
    # S4D-real-like A: -(n+1) with a per-channel jitter of exp(U(-1, 1)).
    A = -torch.exp(torch.rand(c, n, generator=gen, device=device) * 2.0 - 1.0) * torch.arange(1, n + 1, device=device, dtype=torch.float32)
    B = torch.randn(b, g, n, ln, generator=gen, device=device)
    C = torch.randn(b, g, n, ln, generator=gen, device=device)
    D = torch.randn(c, generator=gen, device=device)
    u, delta, B, C = (t.to(dtype) for t in (u, delta, B, C))
    return {"u": u, "delta": delta, "A": A.contiguous(), "B": B, "C": C,
            "D": D if case.with_D else None, "delta_bias": bias.float() if case.with_bias else None}


def reference_channels(case: ScanCase, rng: random.Random) -> list[int] | None:
    """Channel sample for the float64 reference (None = all): same count per group, in order."""
    per_group = case.channels // case.groups
    cost_per_channel = case.batch * case.nstate * case.length
    if cost_per_channel * case.channels <= REFERENCE_ELEMENT_BUDGET:
        return None
    keep = max(2, min(per_group, REFERENCE_ELEMENT_BUDGET // (cost_per_channel * case.groups)))
    inner = sorted(rng.sample(range(1, per_group - 1), keep - 2)) if per_group > 2 else []
    offsets = sorted({0, per_group - 1, *inner})
    return [g * per_group + o for g in range(case.groups) for o in offsets]


def reference_scan(inp: dict, softplus: bool, channels: list[int] | None):
    """The float64 reference (remamber.ops.selective_scan_reference on float64 upcasts)."""
    import torch

    from remamber.ops import selective_scan_reference

    u, delta, A, B, C, D, bias = (inp[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias"))
    if channels is not None:
        idx = torch.tensor(channels, device=u.device)
        u, delta, A = u[:, idx], delta[:, idx], A[idx]
        D = None if D is None else D[idx]
        bias = None if bias is None else bias[idx]
    dbl = lambda t: None if t is None else t.double()  # noqa: E731
    return selective_scan_reference(dbl(u), dbl(delta), dbl(A), dbl(B), dbl(C), dbl(D), dbl(bias), softplus)


def compare(out, ref, channels) -> dict:
    import torch

    if channels is not None:
        out = out[:, torch.tensor(channels, device=out.device)]
    diff = out.double() - ref
    ref_norm = ref.norm().item()
    ref_max = ref.abs().max().item()
    return {
        "rel_l2": diff.norm().item() / ref_norm if ref_norm else float("inf"),
        "max_abs_over_max_ref": diff.abs().max().item() / ref_max if ref_max else float("inf"),
        "max_abs": diff.abs().max().item(),
    }


def count_by_group(rows) -> dict[str, dict[str, int]]:
    """Pass / FAIL / skipped counts of correctness rows per case group (every correctness step's summary)."""
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        g = counts.setdefault(r["group"], {"pass": 0, "FAIL": 0, "skipped": 0})
        g["skipped" if r["status"].startswith("skipped") else r["status"]] += 1
    return counts


def worst_error(rows) -> dict | None:
    """The largest rel_l2 and max_abs_over_max_ref over the measured rows, None when none was measured."""
    measured = [r for r in rows if "rel_l2" in r]
    if not measured:
        return None
    return {"rel_l2": max(r["rel_l2"] for r in measured),
            "max_abs_over_max_ref": max(r["max_abs_over_max_ref"] for r in measured)}


def sequential_scan_float64(u, delta, A, B, C, D, bias, softplus):
    """The contract, one time step at a time, float64 (independent of remamber.ops's chunking)."""
    import torch

    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    b, c, ln = u.shape
    g = B.shape[1]
    grp = torch.arange(c) // (c // g)
    Bc, Cc = B[:, grp], C[:, grp]
    dt = delta + (bias.double()[None, :, None] if bias is not None else 0.0)
    if softplus:
        dt = torch.where(dt <= 20.0, torch.log1p(torch.exp(dt)), dt)
    h = torch.zeros(b, c, A.shape[1], dtype=torch.float64)
    y = torch.empty(b, c, ln, dtype=torch.float64)
    for t in range(ln):
        h = torch.exp(dt[:, :, t, None] * A[None]) * h + (dt[:, :, t] * u[:, :, t])[..., None] * Bc[..., t]
        y[:, :, t] = (h * Cc[..., t]).sum(-1) + (D.double()[None] * u[:, :, t] if D is not None else 0.0)
    return y


def step_shapes(run: Run) -> None:
    """The inventory, floors and the correctness plan: everything the GPU steps will run, before any GPU."""
    with run.step("shapes") as e:
        e["unique_shapes"] = [list(s) for s in unique_scan_shapes()]
        e["inventory"] = {f"{v}@{r}": [asdict(s) for s in scan_inventory(v, r)] for v in ("conv", "mamba") for r in (480, 1024)}
        e["floors_per_shape"] = [floors_for_shape(c, l) for c, l in unique_scan_shapes()]
        e["model_totals"] = [model_totals(v, r) for v in ("conv", "mamba") for r in (480, 1024)]
        e["ceilings_assumed"] = DEVICE_CEILINGS
        plan = correctness_plan()
        groups: dict[str, int] = {}
        for c in plan:
            groups[c.group] = groups.get(c.group, 0) + 1
        e["correctness_plan"] = {"cases": len(plan), "by_group": groups, "labels": [c.label() for c in plan]}
        run.log(f"shapes: {len(e['unique_shapes'])} unique (K*D, L) scan shapes")
