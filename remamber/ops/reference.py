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

Both references are differentiable (training, issue 16): the recurrence has its exact adjoint
(``_LinearRecurrence``), everything else is ordinary autograd. The ops' backward recomputes through
them (remamber/ops/selective_scan.py); tests/test_ops_grad.py checks that against finite differences.
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


def _chunked_linear_recurrence_forward(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """h_t = decay_t * h_{t-1} + drive_t along the last axis, h_{-1} = 0.

    decay, drive: (..., L). Returns h with the same shape. Not differentiable by itself (it writes
    into preallocated buffers); ``_chunked_linear_recurrence`` wraps it with its exact backward.
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
    # Time-in-chunk axis first, chunk axis last: every loop step below reads and writes one
    # contiguous block (strided slices along the last axis made each step several times slower).
    # The arithmetic is unchanged, so the values are bit-identical to the straightforward layout.
    decay = decay.reshape(*lead, chunks, steps).movedim(-1, 0).contiguous()  # (steps, ..., chunks)
    drive = drive.reshape(*lead, chunks, steps).movedim(-1, 0).contiguous()

    local = torch.empty_like(drive)  # state inside each chunk, starting from zero
    cumdecay = torch.empty_like(decay)  # product of decays from the chunk start to step t
    h = drive[0]
    p = decay[0]
    local[0] = h
    cumdecay[0] = p
    for t in range(1, steps):
        h = decay[t] * h + drive[t]
        p = decay[t] * p
        local[t] = h
        cumdecay[t] = p

    # State entering each chunk: carried sequentially over the chunk ends (chunk axis first).
    ends = local[-1].movedim(-1, 0).contiguous()  # (chunks, ...)
    end_decay = cumdecay[-1].movedim(-1, 0).contiguous()
    carry = torch.zeros_like(ends[0])
    entering = torch.empty_like(ends)
    for k in range(chunks):
        entering[k] = carry
        carry = end_decay[k] * carry + ends[k]

    # back to (..., chunks, steps)
    h_all = local.movedim(0, -1) + cumdecay.movedim(0, -1) * entering.movedim(0, -1).unsqueeze(-1)
    return h_all.reshape(*lead, chunks * steps)[..., :length]


class _LinearRecurrence(torch.autograd.Function):
    """Autograd for the recurrence, by its adjoint rather than by recording the chunked loops.

    With g_t = dLoss/dh_t in total, g_t = gy_t + decay_{t+1} * g_{t+1}: the same first-order
    recurrence run backwards in time, so the same chunked (overflow-free) evaluator computes it.
    Then dLoss/ddrive_t = g_t and dLoss/ddecay_t = g_t * h_{t-1} (h_{-1} = 0).
    """

    @staticmethod
    def forward(ctx, decay, drive):
        h = _chunked_linear_recurrence_forward(decay, drive)
        ctx.save_for_backward(decay, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h):
        decay, h = ctx.saved_tensors
        # Reverse time: step t of the flipped sequence uses decay_{t+1}; the first flipped step's
        # decay multiplies the zero initial state, so its value (here 1) does not matter.
        shifted = torch.nn.functional.pad(decay[..., 1:], (0, 1), value=1.0)
        g = _chunked_linear_recurrence_forward(shifted.flip(-1), grad_h.flip(-1)).flip(-1)
        h_prev = torch.nn.functional.pad(h[..., :-1], (1, 0), value=0.0)
        return g * h_prev, g


def _chunked_linear_recurrence(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """h_t = decay_t * h_{t-1} + drive_t along the last axis, h_{-1} = 0; differentiable."""
    if torch.is_grad_enabled() and (decay.requires_grad or drive.requires_grad):
        return _LinearRecurrence.apply(decay, drive)
    return _chunked_linear_recurrence_forward(decay, drive)


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
    pieces = []  # per channel slice; concatenated (not written into a buffer) so autograd can follow

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
        pieces.append(y)
    if not pieces:  # no channels
        return torch.empty(batch, channels, length, dtype=compute, device=u.device)
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)


# ---- remamber::SS2DScan v1 (plugins/ss2dScanPlugin/README.md) ------------------------------------

SS2D_LAYOUTS = {"cross": 0, "bidi": 1}
SS2D_DIRECTIONS = 4


def ss2d_positions(layout: int, height: int, width: int, device=None) -> torch.Tensor:
    """(4, H*W) int64: row k lists the spatial (row-major) position direction k visits at each step.

    The contract's table: cross = row-major, column-major, and both reversed; bidi = forward,
    forward, reversed, reversed over the row-major order.
    """
    length = height * width
    steps = torch.arange(length, device=device)
    if layout == SS2D_LAYOUTS["cross"]:
        # column-major step t visits row t % H, column t // H
        second = (steps % max(height, 1)) * width + steps // max(height, 1)
    elif layout == SS2D_LAYOUTS["bidi"]:
        second = steps
    else:
        raise ValueError(f"layout must be 0 (cross) or 1 (bidi), got {layout!r}")
    return torch.stack([steps, second, steps.flip(0), second.flip(0)])


def ss2d_scan_reference(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0):
    """The contract's SS2DScan, exact and simple: gather each direction's sequence by index from the
    spatial tensors, run ``selective_scan_reference`` on the four directions at once (groups = 4),
    scatter each direction's output back to its spatial positions and sum the four in order k = 0..3.

    Shapes: u (batch, D, H, W); delta (batch, 4D, H, W); A (4D, N); B, C (batch, 4, N, H, W);
    D, delta_bias (4D,). Returns float32 (float64 if u is float64) of shape (batch, D, H, W).
    """
    batch, dim, height, width = u.shape
    length = height * width
    k, nstate = SS2D_DIRECTIONS, A.shape[1]
    pos = ss2d_positions(int(layout), height, width, u.device)  # (4, L)
    u_flat = u.reshape(batch, dim, length)
    us = u_flat[:, :, pos].permute(0, 2, 1, 3)  # (batch, 4, D, L): us[:, k, :, t] = u[..., pos[k, t]]
    d4 = delta.reshape(batch, k, dim, length)
    b4 = B.reshape(batch, k, nstate, length)
    c4 = C.reshape(batch, k, nstate, length)
    deltas = torch.stack([d4[:, i, :, pos[i]] for i in range(k)], dim=1)
    bs = torch.stack([b4[:, i, :, pos[i]] for i in range(k)], dim=1)
    cs = torch.stack([c4[:, i, :, pos[i]] for i in range(k)], dim=1)
    ys = selective_scan_reference(
        us.reshape(batch, k * dim, length), deltas.reshape(batch, k * dim, length), A, bs, cs,
        D, delta_bias, delta_softplus,
    ).reshape(batch, k, dim, length)
    # pos[i] is a permutation: writing ys[:, i, :, t] to position pos[i, t] is reading ys at the
    # inverse permutation, a gather that autograd follows cheaply.
    inverse = torch.argsort(pos, dim=1)
    y = torch.zeros(batch, dim, length, dtype=ys.dtype, device=u.device)
    for i in range(k):
        y = y + ys[:, i].index_select(-1, inverse[i])
    return y.reshape(batch, dim, height, width)
