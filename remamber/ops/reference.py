"""Reference selective scan in plain PyTorch: exact, memory-bounded, any device.

Contract (DESIGN.md, ``remamber::SelectiveScan`` v1), for channel c in group g = c // (C / G):

    dt  = softplus(delta + delta_bias)            (threshold 20: identity above it)
    h_t = exp(dt_t * A[c]) * h_{t-1} + dt_t * B[g, :, t] * u_t,   h_{-1} = 0
    y_t = sum_n C[g, n, t] * h_t[n] + D[c] * u_t

Why this shape of algorithm: the closed form ``exp(cs) * cumsum(exp(-cs) * x)`` overflows for long
sequences (REMAMBER_SPEC 5.1), and a Python loop over L = 65,536 steps is far too slow. Instead the
sequence is cut into K chunks of T ~ sqrt(L) steps. The recurrence runs step by step inside all
chunks at once (T vectorised steps), then the chunk-end states are carried across chunks (K steps)
and added back scaled by the running decay. Every factor is a product of exp(dt*A) <= 1, so nothing
overflows, and the arithmetic is the same first-order recurrence a GPU kernel evaluates.
Channels are processed in slices so the (slice, N, L) state stays under a fixed memory budget.
"""

from __future__ import annotations

import math

import torch

SOFTPLUS_THRESHOLD = 20.0

# Upper bound on elements of one (batch, channel-slice, N, L) state tensor: about 256 MiB in fp32.
_STATE_ELEMENT_BUDGET = 64 * 1024 * 1024


def softplus_thresholded(x: torch.Tensor) -> torch.Tensor:
    """softplus with the CUDA kernels' threshold: x for x > 20, log1p(exp(x)) otherwise."""
    return torch.where(x <= SOFTPLUS_THRESHOLD, torch.log1p(torch.exp(torch.clamp(x, max=SOFTPLUS_THRESHOLD))), x)


def _chunked_linear_recurrence(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """h_t = decay_t * h_{t-1} + drive_t along the last axis, h_{-1} = 0.

    decay, drive: (..., L). Returns h with the same shape.
    """
    length = decay.shape[-1]
    if length == 0:
        return drive.clone()
    steps = max(1, int(math.ceil(math.sqrt(length))))
    chunks = (length + steps - 1) // steps
    pad = chunks * steps - length
    if pad:
        # Identity steps (decay 1, drive 0) leave the state unchanged.
        decay = torch.nn.functional.pad(decay, (0, pad), value=1.0)
        drive = torch.nn.functional.pad(drive, (0, pad), value=0.0)
    lead = decay.shape[:-1]
    decay = decay.reshape(*lead, chunks, steps)
    drive = drive.reshape(*lead, chunks, steps)

    local = torch.empty_like(drive)  # state inside each chunk, starting from zero
    cumdecay = torch.empty_like(decay)  # product of decays from the chunk start to step t
    h = drive[..., 0]
    p = decay[..., 0]
    local[..., 0] = h
    cumdecay[..., 0] = p
    for t in range(1, steps):
        h = decay[..., t] * h + drive[..., t]
        p = decay[..., t] * p
        local[..., t] = h
        cumdecay[..., t] = p

    # State entering each chunk: carried sequentially over the chunk ends.
    carry = torch.zeros_like(local[..., 0, 0])
    entering = torch.empty_like(local[..., 0])
    for k in range(chunks):
        entering[..., k] = carry
        carry = cumdecay[..., k, -1] * carry + local[..., k, -1]

    h_all = local + cumdecay * entering.unsqueeze(-1)
    return h_all.reshape(*lead, chunks * steps)[..., :length]


@torch.no_grad()
def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """The contract's selective scan. Computes in float32 (float64 if u is float64); returns that dtype.

    Shapes: u, delta (batch, G*Dc, L); A (G*Dc, N); B, C (batch, G, N, L); D, delta_bias (G*Dc,).
    Inputs are assumed validated (see ``remamber.ops.selective_scan``).
    """
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, channels, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]
    per_group = channels // groups
    out = torch.empty(batch, channels, length, dtype=compute, device=u.device)

    # Channel slice: whole groups are not needed, any channel range works; bounded by the budget.
    slice_c = max(1, min(channels, _STATE_ELEMENT_BUDGET // max(1, batch * nstate * max(length, 1))))
    for c0 in range(0, channels, slice_c):
        c1 = min(channels, c0 + slice_c)
        uc = u[:, c0:c1].to(compute)
        dt = delta[:, c0:c1].to(compute)
        if delta_bias is not None:
            dt = dt + delta_bias[c0:c1].to(compute)[None, :, None]
        if delta_softplus:
            dt = softplus_thresholded(dt)
        group_of = torch.arange(c0, c1, device=u.device) // per_group
        Bc = B.to(compute).index_select(1, group_of)  # (batch, slice, N, L)
        Cc = C.to(compute).index_select(1, group_of)
        Ac = A[c0:c1].to(compute)  # (slice, N)
        decay = torch.exp(dt.unsqueeze(2) * Ac[None, :, :, None])  # (batch, slice, N, L)
        drive = (dt * uc).unsqueeze(2) * Bc
        h = _chunked_linear_recurrence(decay, drive)
        y = (h * Cc).sum(dim=2)
        if D is not None:
            y = y + D[c0:c1].to(compute)[None, :, None] * uc
        out[:, c0:c1] = y
    return out
