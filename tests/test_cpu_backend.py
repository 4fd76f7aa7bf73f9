"""The "cpu" scan backend (remamber/ops/cpu_backend.py, libremamber_cpu_ops.so): our CPU kernels'
forward and native backward, used for training (issue 16).

Independent references: the float64 PyTorch reference scan for the forward, and autograd through
that float64 reference for the backward (itself checked against finite differences in
tests/test_ops_grad.py). Shapes cover groups > 1, N > 1, odd lengths, optional D / delta_bias,
softplus on and off, both SS2D layouts with H != W, and the model's channel-scan shape (H = 1).
"""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch

from remamber import ops
from remamber.errors import NativeLibraryError
from remamber.ops import backends, cpu_backend, reference

pytestmark = pytest.mark.skipif(cpu_backend.unavailable_reason() is not None,
                                reason=f"libremamber_cpu_ops.so not built: {cpu_backend.unavailable_reason()}")

F64 = torch.float64


def _scan_inputs(rng, batch, groups, per_group, nstate, length, with_d=True, with_bias=True):
    channels = groups * per_group
    u = torch.randn(batch, channels, length, generator=rng)
    delta = torch.rand(batch, channels, length, generator=rng) * 5.0 - 3.5  # softplus both sides of 0
    A = -torch.exp(torch.rand(channels, nstate, generator=rng) * 2.0 - 1.0)
    B = torch.randn(batch, groups, nstate, length, generator=rng)
    C = torch.randn(batch, groups, nstate, length, generator=rng)
    D = torch.randn(channels, generator=rng) if with_d else None
    bias = torch.rand(channels, generator=rng) - 0.5 if with_bias else None
    return [u, delta, A, B, C, D, bias]


def _ss2d_inputs(rng, batch, dim, nstate, height, width, with_d=True, with_bias=True):
    u = torch.randn(batch, dim, height, width, generator=rng)
    delta = torch.rand(batch, 4 * dim, height, width, generator=rng) * 5.0 - 3.5
    A = -torch.exp(torch.rand(4 * dim, nstate, generator=rng) * 2.0 - 1.0)
    B = torch.randn(batch, 4, nstate, height, width, generator=rng)
    C = torch.randn(batch, 4, nstate, height, width, generator=rng)
    D = torch.randn(4 * dim, generator=rng) if with_d else None
    bias = torch.rand(4 * dim, generator=rng) - 0.5 if with_bias else None
    return [u, delta, A, B, C, D, bias]


def _grads(fn, inputs, grad_seed, dtype, backend=None):
    """(output, gradients of sum(output * G)) with G a fixed random cotangent, inputs cast to dtype.

    backend: run the forward *and the backward* under ops.use_backend(backend). The ops pick their
    backward when autograd calls it, so a backward run after the `with` block would silently take the
    reference one. With "cpu", the native backward entry must be called exactly once."""
    leaves = [None if t is None else t.to(dtype).detach().requires_grad_() for t in inputs]
    native_calls = []
    original = cpu_backend._backward

    def spy(entry, *args):
        native_calls.append(entry)
        return original(entry, *args)

    with contextlib.ExitStack() as stack:
        if backend is not None:
            stack.enter_context(ops.use_backend(backend))
            stack.enter_context(mock.patch.object(cpu_backend, "_backward", spy))
        y = fn(*leaves)
        cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed)).to(y.dtype)
        (y * cot).sum().backward()
    if backend == "cpu":
        assert len(native_calls) == 1, f"the native backward ran {len(native_calls)} times, not once"
    return y.detach().to(F64), [None if t is None else t.grad.to(F64) for t in leaves]


def _assert_close_to_reference(got, want, rel=2e-5):
    """Each gradient within rel of the reference's largest magnitude (fp32 arithmetic over L steps)."""
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None
            continue
        scale = float(w.abs().max()) + 1e-12
        err = float((g - w).abs().max())
        assert err <= rel * scale, f"input {i}: max |native - reference| = {err:.3g}, scale {scale:.3g}"


# (2, 11, 1, 37): N = 1 (the models' state size) with more channels per group than a SIMD register has
# lanes, so a kernel that handles channels in blocks is checked with a full block and a remainder.
@pytest.mark.parametrize("groups,per_group,nstate,length", [(1, 3, 1, 37), (2, 4, 3, 64), (3, 2, 16, 129),
                                                            (2, 11, 1, 37)])
@pytest.mark.parametrize("with_d,with_bias,softplus", [(True, True, True), (False, False, True), (True, False, False)])
def test_selective_scan_forward_and_backward_match_float64_reference(rng, groups, per_group, nstate, length,
                                                                      with_d, with_bias, softplus):
    inputs = _scan_inputs(rng, 2, groups, per_group, nstate, length, with_d, with_bias)
    if not softplus:
        inputs[1] = inputs[1].abs() * 0.3  # dt must stay positive without softplus

    y, grads = _grads(lambda *ts: ops.selective_scan(*ts, delta_softplus=softplus), inputs, 7, torch.float32, "cpu")
    y_ref, grads_ref = _grads(lambda *ts: reference.selective_scan_reference(*ts, delta_softplus=softplus),
                              inputs, 7, F64)
    assert float((y - y_ref).abs().max()) <= 2e-5 * (float(y_ref.abs().max()) + 1.0)
    _assert_close_to_reference(grads, grads_ref)


@pytest.mark.parametrize("layout", ["cross", "bidi"])
# (10, 1, 4, 5) and (16, 1, 3, 7): N = 1 with more channels per direction than a SIMD register has lanes
@pytest.mark.parametrize("dim,nstate,height,width", [(3, 1, 4, 5), (2, 4, 7, 3), (5, 1, 1, 48), (10, 1, 4, 5),
                                                     (16, 1, 3, 7)])
@pytest.mark.parametrize("with_d,with_bias", [(True, True), (False, False)])
def test_ss2d_scan_forward_and_backward_match_float64_reference(rng, layout, dim, nstate, height, width,
                                                                with_d, with_bias):
    inputs = _ss2d_inputs(rng, 2, dim, nstate, height, width, with_d, with_bias)
    code = 0 if layout == "cross" else 1

    y, grads = _grads(lambda *ts: ops.ss2d_scan(*ts, layout=layout), inputs, 11, torch.float32, "cpu")
    y_ref, grads_ref = _grads(lambda *ts: reference.ss2d_scan_reference(*ts, layout=code), inputs, 11, F64)
    assert float((y - y_ref).abs().max()) <= 2e-5 * (float(y_ref.abs().max()) + 1.0)
    _assert_close_to_reference(grads, grads_ref)


def test_a_wrong_layout_is_caught_by_the_gradient_comparison(rng):
    """The comparison can fail: the cross layout's gradients are not the bidi layout's."""
    inputs = _ss2d_inputs(rng, 1, 2, 1, 3, 4)

    _, grads = _grads(lambda *ts: ops.ss2d_scan(*ts, layout="cross"), inputs, 3, torch.float32, "cpu")
    _, grads_bidi = _grads(lambda *ts: reference.ss2d_scan_reference(*ts, layout=1), inputs, 3, F64)
    with pytest.raises(AssertionError):
        _assert_close_to_reference(grads, grads_bidi)


def test_backward_does_not_depend_on_the_thread_count(rng):
    """Per-channel sums are reduced in batch order, so 1 and 3 threads give identical bits (N = 2, and
    N = 1 with 9 channels)."""
    for shape in ((5, 3, 2, 6, 5), (5, 9, 1, 6, 5)):
        _check_thread_count_independence(_ss2d_inputs(rng, *shape))


def _check_thread_count_independence(inputs):
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            results.append(_grads(ops.ss2d_scan, inputs, 5, torch.float32, "cpu"))
    finally:
        torch.set_num_threads(previous)
    (y1, g1), (y3, g3) = results
    assert torch.equal(y1, y3)
    for a, b in zip(g1, g3):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_run_forward_natively_and_backward_through_the_reference(rng, dtype):
    inputs = _ss2d_inputs(rng, 1, 2, 1, 3, 3)
    inputs = [t if i in (2, 5, 6) else t.to(dtype) for i, t in enumerate(inputs)]
    leaves = [t.detach().requires_grad_() for t in inputs]
    with ops.use_backend("cpu"):
        y = ops.ss2d_scan(*leaves)
        y.sum().backward()
    want = reference.ss2d_scan_reference(*[t.to(F64) for t in inputs])
    assert float((y.detach().to(F64) - want).abs().max()) <= 1e-5 * (float(want.abs().max()) + 1.0)
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in leaves)


def test_auto_never_picks_the_cpu_backend():
    """On CPU "auto" keeps the reference, so PyTorch-vs-ORT parity compares independent code."""
    assert backends.resolve_backend("cpu").name == "reference"
    assert backends.resolve_backend("cpu", backends.OP_SS2D_SCAN).name == "reference"
    with ops.use_backend("cpu"):
        assert backends.resolve_backend("cpu").name == "cpu"


def test_reference_backend_keeps_the_reference_backward(rng, monkeypatch):
    calls = []
    monkeypatch.setattr(cpu_backend, "ss2d_scan_backward", lambda *a: calls.append(a))
    leaves = [t.detach().requires_grad_() for t in _ss2d_inputs(rng, 1, 2, 1, 2, 3)]
    ops.ss2d_scan(*leaves).sum().backward()
    assert calls == [] and leaves[0].grad is not None


def test_library_errors_name_the_entry_point_and_problem():
    lib = cpu_backend.load_library()
    rc = lib.remamberCpuSS2DScanBackward(*([None] * 15), 1, 1, 1, 1, 1, 0, 1, 0)
    assert rc == 1
    assert lib.remamberCpuScanLastError().decode() == "remamberCpuSS2DScanBackward: threads must be >= 1"
    rc = lib.remamberCpuSelectiveScanBackward(*([None] * 15), 1, 1, 4, 1, 1, 1, 1)
    assert rc == 1
    assert "grad_y and du, ddelta, dA, dB, dC are required" in lib.remamberCpuScanLastError().decode()
    with pytest.raises(NativeLibraryError, match="state size N"):
        cpu_backend._call(lib, "remamberCpuSelectiveScanForward", *([None] * 8), 1, 1, 4, 1, 17, 0, 1, 1)


def test_train_step_bench_profile_names_the_scan_backward(capsys):
    # The --profile table is how docs/TRAINING.md's step breakdown is measured: it must list our scan
    # op's backward (the native one on this backend) among the operators that take the time.
    from remamber.bench import train_step_bench

    assert train_step_bench.main(["--resolution", "64", "--batch", "2", "--repeats", "1", "--backends", "cpu",
                                  "--profile", "1", "--profile-rows", "40"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("torch.profiler, 1 step(s) on cpu"):]
    assert "self s/step" in table and "share of step" in table
    assert "remamber_ss2d_scan" in table and "Backward" in table
