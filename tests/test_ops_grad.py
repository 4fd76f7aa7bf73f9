"""Gradients of the scan ops (remamber::selective_scan, remamber::ss2d_scan) against finite differences.

The ops' backward recomputes the scan through the differentiable reference and differentiates it
(remamber/ops/selective_scan.py). torch.autograd.gradcheck compares that analytic gradient with
central finite differences of the forward in float64, on small shapes that still cover groups > 1,
N > 1, optional D / delta_bias, softplus on and off, and both SS2D layouts. A deliberately wrong
backward must be caught, so the check is shown to be able to fail.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

from remamber.ops import reference
from remamber.ops.selective_scan import _selective_scan_op, selective_scan
from remamber.ops.ss2d_scan import _ss2d_scan_op, ss2d_scan

F64 = torch.float64


def _scan_inputs(batch, groups, per_group, nstate, length, with_d, with_bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    channels = groups * per_group

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=F64) * scale).requires_grad_()

    u, delta = rnd(batch, channels, length), rnd(batch, channels, length, scale=0.5)
    A = (-(torch.rand(channels, nstate, generator=g, dtype=F64) + 0.2)).requires_grad_()
    B, C = rnd(batch, groups, nstate, length), rnd(batch, groups, nstate, length)
    D = rnd(channels) if with_d else None
    bias = rnd(channels, scale=0.5) if with_bias else None
    return u, delta, A, B, C, D, bias


def _ss2d_inputs(batch, dim, nstate, height, width, with_d, with_bias, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=F64) * scale).requires_grad_()

    u, delta = rnd(batch, dim, height, width), rnd(batch, 4 * dim, height, width, scale=0.5)
    A = (-(torch.rand(4 * dim, nstate, generator=g, dtype=F64) + 0.2)).requires_grad_()
    B, C = rnd(batch, 4, nstate, height, width), rnd(batch, 4, nstate, height, width)
    D = rnd(4 * dim) if with_d else None
    bias = rnd(4 * dim, scale=0.5) if with_bias else None
    return u, delta, A, B, C, D, bias


def _check(fn, inputs):
    tensors = [t for t in inputs if t is not None]

    def call(*ts):
        it = iter(ts)
        return fn(*[None if t is None else next(it) for t in inputs])

    assert torch.autograd.gradcheck(call, tensors, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("groups,nstate,with_d,with_bias,softplus", [
    (1, 1, False, False, True),
    (2, 3, True, True, True),
    (3, 2, True, False, False),
    (2, 1, False, True, True),
])
def test_selective_scan_gradcheck(groups, nstate, with_d, with_bias, softplus):
    inputs = _scan_inputs(2, groups, 2, nstate, 11, with_d, with_bias)
    _check(lambda *a: _selective_scan_op(*a, softplus), inputs)


def test_selective_scan_gradcheck_chunk_boundaries():
    """L = 10 gives chunks of 4 steps with padding: the carry between chunks is differentiated too."""
    inputs = _scan_inputs(1, 2, 1, 2, 10, True, True, seed=3)
    _check(lambda *a: _selective_scan_op(*a, True), inputs)


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("nstate,with_d,with_bias", [(1, True, True), (2, False, False)])
def test_ss2d_scan_gradcheck(layout, nstate, with_d, with_bias):
    inputs = _ss2d_inputs(2, 2, nstate, 3, 4, with_d, with_bias)
    _check(lambda *a: _ss2d_scan_op(*a, True, layout), inputs)


def test_float32_gradients_match_float64():
    """The public float32 path (validated inputs) gives the float64 gradient to float32 accuracy."""
    u, delta, A, B, C, D, bias = _ss2d_inputs(1, 3, 1, 4, 5, True, True, seed=5)
    leaves32 = [t.detach().float().requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    ss2d_scan(*leaves32, layout="cross").square().sum().backward()
    _ss2d_scan_op(u, delta, A, B, C, D, bias, True, 0).square().sum().backward()
    for t32, t64 in zip(leaves32, (u, delta, A, B, C, D, bias)):
        torch.testing.assert_close(t32.grad.double(), t64.grad, rtol=1e-4, atol=1e-4)

    su, sd, sA, sB, sC, sD, sb = [t.detach().float().requires_grad_() for t in _scan_inputs(1, 2, 2, 2, 9, True, True)]
    selective_scan(su, sd, sA, sB, sC, sD, sb).sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (su, sd, sA, sB, sC, sD, sb))


def test_wrong_backward_is_caught(monkeypatch):
    """gradcheck must fail when the recurrence's adjoint is wrong (here: the decay gradient misses
    the h_{t-1} shift), so the checks above can fail."""
    original = reference._LinearRecurrence.backward

    def broken(ctx, grad_h):
        d_decay, d_drive = original(ctx, grad_h)
        _, h = ctx.saved_tensors
        return d_drive * h, d_drive  # uses h_t instead of h_{t-1}

    monkeypatch.setattr(reference._LinearRecurrence, "backward", staticmethod(broken))
    inputs = _scan_inputs(1, 1, 2, 1, 6, False, False)
    tensors = list(inputs[:5])
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda *a: _selective_scan_op(*a, None, None, True), tensors, eps=1e-6, atol=1e-6)
