"""Scan-direction layouts: how a feature map becomes the K = 4 sequences a selective scan reads.

All of these are pure index permutations built from flatten / transpose / flip / stack / add, so
they trace into standard ONNX ops (no loops, no in-place writes) and keep a dynamic batch axis.

Spatial cross-scan (VMamba CrossScan, spec 3.2), for x of shape (B, D, H, W) and L = H * W:
    k0: row-major        position p = h * W + w
    k1: column-major     position p = w * H + h
    k2: k0 reversed,  k3: k1 reversed
Cross-merge is its adjoint: each direction's output is mapped back to row-major order and summed.

Bidirectional 1-D scan (the Twister's channel scan, csm_triton getCSM(2)): on an input whose
H = 1, the four sequences are [forward, forward, reversed, reversed] along W, and the merge is
y = ys0 + ys1 + flip(ys2) + flip(ys3).
"""

from __future__ import annotations

import torch


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) -> (B, 4, D, H*W) in the order k0, k1, k2, k3."""
    row = x.flatten(2)
    col = x.transpose(2, 3).flatten(2)
    fwd = torch.stack([row, col], dim=1)
    return torch.cat([fwd, fwd.flip(-1)], dim=1)


def cross_merge(ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 4, D, H*W) -> (B, D, H*W) row-major: y[p] = ys0[p] + ys1[T(p)] + ys2[rev p] + ys3[rev T(p)]."""
    both = ys[:, 0:2] + ys[:, 2:4].flip(-1)
    col = both[:, 1].unflatten(-1, (width, height)).transpose(2, 3).flatten(2)
    return both[:, 0] + col


def bidi_scan(x: torch.Tensor) -> torch.Tensor:
    """(B, D, 1, L) or (B, D, L) -> (B, 4, D, L): [fwd, fwd, reversed, reversed]."""
    seq = x.flatten(2)
    fwd = torch.stack([seq, seq], dim=1)
    return torch.cat([fwd, fwd.flip(-1)], dim=1)


def bidi_merge(ys: torch.Tensor) -> torch.Tensor:
    """(B, 4, D, L) -> (B, D, L): ys0 + ys1 + flip(ys2) + flip(ys3)."""
    both = ys[:, 0:2] + ys[:, 2:4].flip(-1)
    return both[:, 0] + both[:, 1]
