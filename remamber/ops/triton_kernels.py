"""Triton kernels of the scan ops: ``remamber::selective_scan`` (v1) and ``remamber::ss2d_scan``.

Imported only by ``remamber/ops/triton_backend.py``, lazily, on the first Triton scan: this module
imports ``triton`` and decorates kernels, and Triton decides at decoration time whether a kernel is
compiled for the GPU or run by its interpreter (``TRITON_INTERPRET=1``, CPU tensors). ``INTERPRETED``
records which mode this import got, so the backend can refuse CPU tensors when it is not the
interpreter.

Design (written for this project; the chunked idea is the one mamba-ssm's CUDA kernel and our own
use). One program owns ``BLOCK_D`` channels that share their B and C rows (one group of v1, one
batch item of SS2D) and all ``N_PAD`` state dimensions. It walks the sequence in chunks of
``BLOCK_L`` steps; inside a chunk the first-order recurrence ``h_t = a_t h_{t-1} + b_t`` is one
``tl.associative_scan`` over the pairs (a, b) with the combine ``(a1, b1), (a2, b2) -> (a1 a2,
a2 b1 + b2)``; the state entering the chunk is carried in registers (fp32) and added back scaled by
the chunk's cumulative decay. Steps past L are identity steps (a = 1, b = 0), so the carried state
is the scan's last column and L needs no multiple of the chunk. Padded state dimensions (N < N_PAD)
have A = B = C = 0 and contribute nothing. Per-element maths as plugins/common/scan_math.h:
``dt = softplus(delta + delta_bias)`` (threshold 20), decay ``exp2(dt * A * log2(e))``.

The SS2D kernel walks the four directions of the contract table (plugins/ss2dScanPlugin/README.md)
by index in one program and merges them in y in the fixed order 0, 1, 2, 3: direction 0 stores,
directions 1..3 read, add and store the positions they visit. The program is the only writer of its
(b, channel-block) rows and a ``tl.debug_barrier()`` (``__syncthreads``) separates the directions,
so the merge is deterministic with no atomics.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

# Whether Triton runs these kernels in its interpreter (decided when this module was imported).
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"

# Globals read inside @triton.jit functions must be tl.constexpr (the compiler refuses plain ones;
# the interpreter does not check, so keep them so here).
LOG2E = tl.constexpr(1.4426950408889634)
SOFTPLUS_THRESHOLD = tl.constexpr(20.0)


@triton.jit
def _combine(a1, b1, a2, b2):
    # Composition of two steps h -> a h + b: first (a1, b1), then (a2, b2).
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # log1p(exp(x)) for x <= 20, x above (scan_math.h). log1p through log(w) * e / (w - 1) with
    # w = 1 + e (Goldberg): exact to a few ulp where log(1 + e) alone loses e's low bits.
    e = tl.exp(tl.minimum(x, SOFTPLUS_THRESHOLD))
    w = 1.0 + e
    wm1 = w - 1.0
    small = wm1 == 0.0
    lp = tl.where(small, e, tl.log(w) * (e / tl.where(small, 1.0, wm1)))
    return tl.where(x <= SOFTPLUS_THRESHOLD, lp, x)


@triton.jit
def _scan_chunk(h, u, dt, a_log2, b_tile, c_tile, d_skip, valid, BLOCK_L: tl.constexpr):
    """One chunk for a block of channels.

    h: (BLOCK_D, N_PAD) state entering the chunk; u, dt: (BLOCK_D, BLOCK_L) fp32 (dt already through
    softplus); a_log2: (BLOCK_D, N_PAD) A * log2(e); b_tile, c_tile: (N_PAD, BLOCK_L) fp32 shared by
    the channels; d_skip: (BLOCK_D,) D (0 when absent); valid: (BLOCK_L,) steps inside L.
    Returns (y (BLOCK_D, BLOCK_L), state leaving the chunk).
    """
    dt = tl.where(valid[None, :], dt, 0.0)  # identity steps past L: decay exp2(0) = 1, drive 0
    decay = tl.exp2(dt[:, None, :] * a_log2[:, :, None])  # (BLOCK_D, N_PAD, BLOCK_L)
    drive = (dt * u)[:, None, :] * b_tile[None, :, :]
    a_cum, b_cum = tl.associative_scan((decay, drive), axis=2, combine_fn=_combine)
    states = b_cum + a_cum * h[:, :, None]
    y = tl.sum(states * c_tile[None, :, :], axis=1) + d_skip[:, None] * u
    last = (tl.arange(0, BLOCK_L) == BLOCK_L - 1)[None, None, :]
    h_next = tl.sum(tl.where(last, states, 0.0), axis=2)
    return y, h_next


@triton.jit
def selective_scan_kernel(
    u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, y_ptr,
    channels, length, groups, per_group, nstate,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """Grid (batch * groups, cdiv(per_group, BLOCK_D)). Contiguous tensors: u, delta, y (batch, C, L);
    A (C, N); B, C (batch, G, N, L); D, delta_bias (C,)."""
    pid_bg = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    b = pid_bg // groups
    g = pid_bg % groups
    d_local = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d_local < per_group
    chan = g * per_group + d_local  # (BLOCK_D,) int64
    n_idx = tl.arange(0, N_PAD)
    n_mask = n_idx < nstate
    l_idx = tl.arange(0, BLOCK_L)

    a_log2 = tl.load(a_ptr + chan[:, None] * nstate + n_idx[None, :], mask=d_mask[:, None] & n_mask[None, :], other=0.0) * LOG2E
    if HAS_D:
        d_skip = tl.load(d_ptr + chan, mask=d_mask, other=0.0)
    else:
        d_skip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + chan, mask=d_mask, other=0.0)
    else:
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)

    row = (b * channels + chan) * length  # (BLOCK_D,) start of each channel's row in u / delta / y
    bc_row = (pid_bg * nstate + n_idx) * length  # (N_PAD,) rows of B / C for this (batch, group)
    h = tl.zeros([BLOCK_D, N_PAD], dtype=tl.float32)
    for start in range(0, length, BLOCK_L):
        t = start + l_idx
        valid = t < length
        m2 = d_mask[:, None] & valid[None, :]
        off = row[:, None] + t[None, :]
        u = tl.load(u_ptr + off, mask=m2, other=0.0).to(tl.float32)
        dt = tl.load(delta_ptr + off, mask=m2, other=0.0).to(tl.float32) + bias[:, None]
        if SOFTPLUS:
            dt = _softplus(dt)
        mbc = n_mask[:, None] & valid[None, :]
        bc_off = bc_row[:, None] + t[None, :]
        b_tile = tl.load(b_ptr + bc_off, mask=mbc, other=0.0).to(tl.float32)
        c_tile = tl.load(c_ptr + bc_off, mask=mbc, other=0.0).to(tl.float32)
        y, h = _scan_chunk(h, u, dt, a_log2, b_tile, c_tile, d_skip, valid, BLOCK_L)
        tl.store(y_ptr + off, y, mask=m2)


@triton.jit
def _ss2d_position(t, height, width, length, K: tl.constexpr, LAYOUT: tl.constexpr):
    """Spatial (row-major) position that direction K visits at step t (contract table)."""
    if K >= 2:
        t = length - 1 - t  # directions 2 and 3 are 0 and 1 reversed
    p = t
    if LAYOUT == 0:
        if K % 2 == 1:
            p = (t % height) * width + t // height  # column-major: step t visits row t % H, column t // H
    return p


@triton.jit
def ss2d_scan_kernel(
    u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, y_ptr,
    dim, height, width, nstate,
    LAYOUT: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """Grid (batch, cdiv(dim, BLOCK_D)). Contiguous tensors: u, y (batch, D, H, W); delta
    (batch, 4D, H, W); A (4D, N); B, C (batch, 4, N, H, W); D, delta_bias (4D,)."""
    b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    length = height * width
    d_idx = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d_idx < dim
    n_idx = tl.arange(0, N_PAD)
    n_mask = n_idx < nstate
    l_idx = tl.arange(0, BLOCK_L)
    u_row = (b * dim + d_idx) * length  # (BLOCK_D,) rows of u and y

    for k in tl.static_range(4):
        chan = k * dim + d_idx  # this direction's parameter rows
        a_log2 = tl.load(a_ptr + chan[:, None] * nstate + n_idx[None, :], mask=d_mask[:, None] & n_mask[None, :], other=0.0) * LOG2E
        if HAS_D:
            d_skip = tl.load(d_ptr + chan, mask=d_mask, other=0.0)
        else:
            d_skip = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + chan, mask=d_mask, other=0.0)
        else:
            bias = tl.zeros([BLOCK_D], dtype=tl.float32)
        delta_row = (b * 4 * dim + chan) * length
        bc_row = ((b * 4 + k) * nstate + n_idx) * length
        h = tl.zeros([BLOCK_D, N_PAD], dtype=tl.float32)
        for start in range(0, length, BLOCK_L):
            t = start + l_idx
            valid = t < length
            p = tl.where(valid, _ss2d_position(t, height, width, length, k, LAYOUT), 0)
            m2 = d_mask[:, None] & valid[None, :]
            u = tl.load(u_ptr + u_row[:, None] + p[None, :], mask=m2, other=0.0).to(tl.float32)
            dt = tl.load(delta_ptr + delta_row[:, None] + p[None, :], mask=m2, other=0.0).to(tl.float32) + bias[:, None]
            if SOFTPLUS:
                dt = _softplus(dt)
            mbc = n_mask[:, None] & valid[None, :]
            b_tile = tl.load(b_ptr + bc_row[:, None] + p[None, :], mask=mbc, other=0.0).to(tl.float32)
            c_tile = tl.load(c_ptr + bc_row[:, None] + p[None, :], mask=mbc, other=0.0).to(tl.float32)
            y, h = _scan_chunk(h, u, dt, a_log2, b_tile, c_tile, d_skip, valid, BLOCK_L)
            y_off = u_row[:, None] + p[None, :]
            if k > 0:  # the merge, in the order 0, 1, 2, 3 (the positions are this program's alone)
                y = tl.load(y_ptr + y_off, mask=m2, other=0.0) + y
            tl.store(y_ptr + y_off, y, mask=m2)
        if k < 3:
            tl.debug_barrier()  # direction k's stores are visible before direction k + 1 reads them
