"""The fused PyTorch op ``remamber.ops.ss2d_scan`` (remamber::SS2DScan v1) and the model's two scan paths.

References, independent of the code under test:
- a float64 loop written here from the contract table (plugins/ss2dScanPlugin/README.md), with its own
  position maths (not ``ss2d_positions``);
- the unfused v1 path: ``cross_scan`` / ``bidi_scan`` of remamber/model/scan_layout.py, then
  ``selective_scan``, then ``cross_merge`` / ``bidi_merge`` (the equivalence the contract states).
Whole model: the tiny conv and mamba models with scan_op="fused" against the same weights with
scan_op="selective" (the base models are compared in the slow-marked test at the end).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import remamber
from remamber.errors import InputError
from remamber.model import set_scan_op
from remamber.model.scan_layout import bidi_merge, bidi_scan, cross_merge, cross_scan
from remamber.ops import selective_scan, ss2d_scan

K = 4


def contract_positions(layout: str, height: int, width: int) -> list[list[int]]:
    """The contract's table, row by row: direction k visits these row-major positions."""
    length = height * width
    if layout == "cross":
        col = [(t % height) * width + t // height for t in range(length)]
    else:
        col = list(range(length))
    fwd = list(range(length))
    return [fwd, col, fwd[::-1], col[::-1]]


def float64_ss2d(u, delta, A, B, C, D, bias, softplus, layout):
    """Plain float64 loop over the contract (inputs as the op reads them: upcast exactly)."""
    u, delta, B, C = (t.double().numpy() for t in (u, delta, B, C))
    A = A.double().numpy()
    batch, dim, height, width = u.shape
    nstate = A.shape[1]
    pos = contract_positions(layout, height, width)
    y = np.zeros((batch, dim, height * width))
    uf, df = u.reshape(batch, dim, -1), delta.reshape(batch, K * dim, -1)
    bf, cf = B.reshape(batch, K, nstate, -1), C.reshape(batch, K, nstate, -1)
    for b in range(batch):
        for k in range(K):
            seq = np.array(pos[k])
            for d in range(dim):
                c = k * dim + d
                x = df[b, c, seq] + (float(bias[c]) if bias is not None else 0.0)
                dt = np.where(x <= 20, np.log1p(np.exp(np.minimum(x, 20))), x) if softplus else x
                h = np.zeros(nstate)
                out = np.empty(len(seq))
                for t in range(len(seq)):
                    h = np.exp(dt[t] * A[c]) * h + dt[t] * bf[b, k, :, seq[t]] * uf[b, d, seq[t]]
                    out[t] = cf[b, k, :, seq[t]] @ h
                if D is not None:
                    out = out + float(D[c]) * uf[b, d, seq]
                y[b, d, seq] += out
    return y.reshape(batch, dim, height, width)


def unfused(u, delta, A, B, C, D, bias, softplus, layout):
    """The v1 route: direction layout, selective_scan over 4*D channels in 4 groups, merge."""
    batch, dim, height, width = u.shape
    scan = cross_scan if layout == "cross" else bidi_scan
    per_dir = lambda t: torch.stack([scan(t[:, k])[:, k] for k in range(K)], 1)  # noqa: E731
    us = scan(u).reshape(batch, K * dim, -1)
    ds = per_dir(delta.reshape(batch, K, dim, height, width)).reshape(batch, K * dim, -1)
    ys = selective_scan(us, ds, A, per_dir(B), per_dir(C), D, bias, softplus).reshape(batch, K, dim, -1)
    merged = cross_merge(ys, height, width) if layout == "cross" else bidi_merge(ys)
    return merged.reshape(batch, dim, height, width)


def make_inputs(gen, batch, dim, height, width, nstate, dtype, with_d=True, with_bias=True):
    u = torch.randn(batch, dim, height, width, generator=gen)
    delta = torch.randn(batch, K * dim, height, width, generator=gen) * 0.7 - 1.0
    A = -torch.exp(torch.randn(K * dim, nstate, generator=gen) * 0.5)
    B = torch.randn(batch, K, nstate, height, width, generator=gen)
    C = torch.randn(batch, K, nstate, height, width, generator=gen)
    D = torch.randn(K * dim, generator=gen) if with_d else None
    bias = torch.randn(K * dim, generator=gen) * 0.3 if with_bias else None
    return u.to(dtype), delta.to(dtype), A, B.to(dtype), C.to(dtype), D, bias


CASES = [
    # layout, batch, dim, H, W, N, dtype, D, bias, softplus
    ("cross", 2, 3, 5, 7, 1, torch.float32, True, True, True),     # odd H != W, batch 2
    ("cross", 1, 2, 6, 4, 16, torch.float32, False, True, True),   # N = 16, no D
    ("cross", 2, 2, 3, 3, 1, torch.float16, True, False, True),    # fp16, no bias
    ("cross", 1, 3, 4, 9, 4, torch.bfloat16, True, True, False),   # bf16, no softplus
    ("bidi", 2, 4, 1, 11, 1, torch.float32, True, True, True),     # the Twister's channel scan
    ("bidi", 1, 2, 1, 9, 16, torch.float16, False, False, True),   # bidi fp16, N = 16, no D / bias
]


@pytest.mark.parametrize("layout,batch,dim,height,width,nstate,dtype,with_d,with_bias,softplus", CASES)
def test_fused_matches_float64_and_unfused(rng, layout, batch, dim, height, width, nstate, dtype, with_d, with_bias,
                                           softplus):
    u, delta, A, B, C, D, bias = make_inputs(rng, batch, dim, height, width, nstate, dtype, with_d, with_bias)
    if not softplus:
        delta = delta.float().abs().mul(0.2).to(dtype)  # dt = delta itself: keep it positive
    y = ss2d_scan(u, delta, A, B, C, D, bias, softplus, layout)
    assert y.dtype == torch.float32 and y.shape == u.shape
    ref = float64_ss2d(u, delta, A, B, C, D, bias, softplus, layout)
    scale = np.abs(ref).max()
    assert np.abs(y.numpy() - ref).max() <= 1e-5 * scale
    y_v1 = unfused(u, delta, A, B, C, D, bias, softplus, layout)
    assert torch.allclose(y, y_v1, rtol=0, atol=1e-5 * float(scale))


def test_integer_layout_codes_and_string_names_agree(rng):
    args = make_inputs(rng, 1, 2, 3, 4, 1, torch.float32)
    assert torch.equal(ss2d_scan(*args, True, "cross"), ss2d_scan(*args, True, 0))
    assert torch.equal(ss2d_scan(*args, True, "bidi"), ss2d_scan(*args, True, 1))
    # the two layouts really differ on a 2-D grid
    assert not torch.allclose(ss2d_scan(*args, True, 0), ss2d_scan(*args, True, 1))


@pytest.mark.parametrize("mutate,match", [
    (lambda a: {**a, "u": a["u"][0]}, r"u must be \(batch, D, H, W\)"),
    (lambda a: {**a, "delta": a["delta"][:, :4]}, r"delta must be \(batch, 4\*D, H, W\) = \(1, 8, 3, 4\)"),
    (lambda a: {**a, "A": a["A"][:4]}, r"A must be \(4\*D, N\) = \(8, N\)"),
    (lambda a: {**a, "A": torch.zeros(8, 17)}, r"state size N = 17 is outside 1..16"),
    (lambda a: {**a, "A": a["A"].double()}, r"A must be float32"),
    (lambda a: {**a, "B": a["B"][:, :2]}, r"B must be \(batch, 4, N, H, W\) = \(1, 4, 1, 3, 4\)"),
    (lambda a: {**a, "C": a["C"].transpose(3, 4)}, r"C must be \(batch, 4, N, H, W\)"),
    (lambda a: {**a, "B": a["B"].half()}, r"B has dtype torch.float16 but u has torch.float32"),
    (lambda a: {**a, "D": a["D"][:3]}, r"D must be \(4\*D,\) = \(8,\)"),
    (lambda a: {**a, "delta_bias": a["delta_bias"].half()}, r"delta_bias must be float32"),
    (lambda a: {**a, "layout": "diagonal"}, r"layout must be 'cross' \(0\) or 'bidi' \(1\)"),
    (lambda a: {**a, "layout": 2}, r"layout must be 'cross' \(0\) or 'bidi' \(1\)"),
])
def test_bad_inputs_name_the_input_and_shape(rng, mutate, match):
    u, delta, A, B, C, D, bias = make_inputs(rng, 1, 2, 3, 4, 1, torch.float32)
    args = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, delta_bias=bias, layout="cross")
    with pytest.raises(InputError, match=match):
        ss2d_scan(**mutate(args))


def test_fake_kernel_and_opcheck(rng):
    u, delta, A, B, C, D, bias = make_inputs(rng, 1, 2, 3, 4, 2, torch.float32)
    torch.library.opcheck(torch.ops.remamber.ss2d_scan.default, (u, delta, A, B, C, D, bias, True, 0))


# ---- the model's two paths ---------------------------------------------------------------------------

def _tokens(batch):
    ids = torch.full((batch, 20), 49407, dtype=torch.int64)
    ids[:, 0] = 49406
    ids[:, 1:6] = torch.arange(320, 325)
    mask = (torch.arange(20) < 7).long().expand(batch, 20).clone()
    return ids, mask


@pytest.mark.parametrize("variant", ["conv", "mamba"])
def test_tiny_model_fused_equals_selective(variant):
    fused = remamber.build_model(variant, "tiny", seed=3)
    selective = set_scan_op(copy.deepcopy(fused), "selective")
    assert all(m.scan_op == "fused" for m in fused.modules() if hasattr(m, "scan_op"))
    # the switch leaves the checkpoint keys and values untouched
    assert fused.state_dict().keys() == selective.state_dict().keys()
    gen = torch.Generator().manual_seed(11)
    image = torch.randn(1, 3, 64, 64, generator=gen)
    ids, mask = _tokens(1)
    with torch.no_grad():
        a = fused(image, ids, mask)
        b = selective(image, ids, mask)
    scale = float(b.abs().max())
    assert math.isfinite(scale) and scale > 0
    assert float((a - b).abs().max()) <= 1e-4 * scale


def test_build_model_rejects_unknown_scan_op():
    with pytest.raises(InputError, match="scan op 'flash'"):
        remamber.build_model("conv", "tiny", scan_op="flash")


@pytest.mark.slow
def test_base_conv_fused_equals_selective_at_128():
    """Base conv (the published size) at a small resolution: both paths on the same weights."""
    fused = remamber.build_model("conv", "base", seed=0)
    image = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(5))
    ids, mask = _tokens(1)
    with torch.no_grad():
        a = fused(image, ids, mask)
        set_scan_op(fused, "selective")
        b = fused(image, ids, mask)
    scale = float(b.abs().max())
    assert float((a - b).abs().max()) <= 1e-4 * scale
