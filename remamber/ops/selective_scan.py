"""``remamber.ops.selective_scan``: the public scan, its validation and the torch custom op.

The op is registered as ``remamber::selective_scan`` with a fake (meta) implementation, so
``torch.export`` / the dynamo ONNX exporter see one opaque node per scan call; the export maps it
to the ONNX node ``remamber::SelectiveScan``. Eager calls run the backend chosen by
``remamber.ops.backends``.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from . import backends
from .reference import selective_scan_reference

ACTIVATION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_STATE = 16


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def validate_scan_inputs(u, delta, A, B, C, D=None, delta_bias=None) -> None:
    """Raise InputError naming the input and the expected shape/dtype when the contract is broken."""
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"selective_scan: {name} must be a torch.Tensor, got {type(t).__name__}")
    if u.dim() != 3:
        raise InputError(f"selective_scan: u must be (batch, G*D, L), got shape {_shape(u)}")
    batch, channels, length = u.shape
    if u.dtype not in ACTIVATION_DTYPES:
        raise InputError(f"selective_scan: u has dtype {u.dtype}; expected float32, float16 or bfloat16")
    if delta.shape != u.shape:
        raise InputError(f"selective_scan: delta must match u {_shape(u)}, got {_shape(delta)}")
    if A.dim() != 2 or A.shape[0] != channels:
        raise InputError(f"selective_scan: A must be ({channels}, N), got {_shape(A)}")
    if A.dtype != torch.float32:
        raise InputError(f"selective_scan: A must be float32, got {A.dtype}; pass A.float()")
    nstate = A.shape[1]
    if not 1 <= nstate <= MAX_STATE:
        raise InputError(f"selective_scan: state size N = {nstate} is outside 1..{MAX_STATE} (A is {_shape(A)})")
    if B.dim() != 4:
        raise InputError(f"selective_scan: B must be (batch, G, N, L), got shape {_shape(B)}")
    groups = B.shape[1]
    expected_bc = (batch, groups, nstate, length)
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != expected_bc:
            raise InputError(
                f"selective_scan: {name} must be (batch={batch}, G, N={nstate}, L={length}) "
                f"= {expected_bc}, got {_shape(t)}"
            )
    if groups < 1 or channels % groups != 0:
        raise InputError(
            f"selective_scan: the group count G = {groups} (B.shape[1]) must divide the channel count {channels}"
        )
    for name, t in (("delta", delta), ("B", B), ("C", C)):
        if t.dtype != u.dtype:
            raise InputError(f"selective_scan: {name} has dtype {t.dtype} but u has {u.dtype}; they must match")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is None:
            continue
        if tuple(t.shape) != (channels,):
            raise InputError(f"selective_scan: {name} must be ({channels},), got {_shape(t)}")
        if t.dtype != torch.float32:
            raise InputError(f"selective_scan: {name} must be float32, got {t.dtype}")
    devices = {t.device for t in (u, delta, A, B, C, D, delta_bias) if t is not None}
    if len(devices) > 1:
        raise InputError(f"selective_scan: inputs are on several devices {sorted(map(str, devices))}")


@torch.library.custom_op("remamber::selective_scan", mutates_args=())
def _selective_scan_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> torch.Tensor:
    if u.dtype == torch.float64:
        # float64 never passes the public validation; it exists so the gradient can be checked against
        # finite differences (tests/test_ops_grad.py), and only the exact reference computes it.
        return selective_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus).contiguous()
    backend = backends.resolve_backend(u.device.type)
    out = backend.fn(u, delta, A, B, C, D, delta_bias, delta_softplus)
    return out.to(torch.float32).contiguous()


@_selective_scan_op.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus):
    return u.new_empty(u.shape, dtype=torch.float64 if u.dtype == torch.float64 else torch.float32)


# ---- autograd: whatever backend ran the forward, the backward recomputes the scan through the
# differentiable reference (remamber/ops/reference.py) and differentiates that. Recomputing costs
# one more forward of the scan but stores nothing extra, and one backward serves every backend.
# Exception: when the "cpu" backend is the one selected, float32 CPU inputs take its native backward
# (remamber/ops/cpu_backend.py; training speed, issue 16), checked against this one in the tests.

def reference_backward(reference_fn, saved, needs, grad_out, *static):
    """Gradients of ``reference_fn(*saved, *static)`` w.r.t. the saved tensors that need one.

    saved: the op's tensor inputs (None for absent optional ones), needs: ctx.needs_input_grad for
    them. Returns one entry per saved tensor (None where no gradient is needed)."""
    with torch.enable_grad():
        leaves = [None if t is None else t.detach().requires_grad_(bool(n)) for t, n in zip(saved, needs)]
        wanted = [i for i, (t, n) in enumerate(zip(leaves, needs)) if t is not None and n]
        if not wanted:
            return [None] * len(saved)
        out = reference_fn(*leaves, *static)
        grads = torch.autograd.grad(out, [leaves[i] for i in wanted], grad_out.to(out.dtype), allow_unused=True)
    result = [None] * len(saved)
    for i, g in zip(wanted, grads):
        result[i] = g
    return result


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, delta_bias, delta_softplus = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, delta_bias)
    ctx.delta_softplus = delta_softplus


def _backward(ctx, grad_out):
    from . import cpu_backend  # the native backward, when the "cpu" backend is the one selected

    saved, needs = ctx.saved_tensors, ctx.needs_input_grad[:7]
    if cpu_backend.native_backward(backends.OP_SELECTIVE_SCAN, saved, needs):
        return (*cpu_backend.selective_scan_backward(saved, needs, grad_out, ctx.delta_softplus), None)
    grads = reference_backward(selective_scan_reference, saved, needs, grad_out, ctx.delta_softplus)
    return (*grads, None)


torch.library.register_autograd("remamber::selective_scan", _backward, setup_context=_setup_context)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """Selective scan per ``remamber::SelectiveScan`` v1. Returns float32 (batch, G*D, L).

    u, delta: (batch, G*D, L) float32/float16/bfloat16; A: (G*D, N) float32, 1 <= N <= 16;
    B, C: (batch, G, N, L), dtype of u; D, delta_bias: (G*D,) float32 or None.
    """
    validate_scan_inputs(u, delta, A, B, C, D, delta_bias)
    return _selective_scan_op(u, delta, A, B, C, D, delta_bias, bool(delta_softplus))


# ---- built-in backends -------------------------------------------------------------------------

def _reference_fn(u, delta, A, B, C, D, delta_bias, delta_softplus):
    return selective_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus)


def _mamba_ssm_unavailable() -> str | None:
    if not torch.cuda.is_available():
        return "mamba-ssm's kernel needs a CUDA GPU"
    try:
        import selective_scan_cuda  # noqa: F401  (mamba-ssm's compiled extension)
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA build
        return f"mamba-ssm with its CUDA extension is not importable ({exc}); pip install mamba-ssm on a GPU box"
    return None


def _mamba_ssm_fn(u, delta, A, B, C, D, delta_bias, delta_softplus):
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    # mamba-ssm returns the input dtype (fp16 in, fp16 out); the contract is fp32 out, so fp16
    # inputs lose precision on this backend relative to ours (its state is still fp32 inside).
    return selective_scan_fn(
        u.contiguous(), delta.contiguous(), A, B.contiguous(), C.contiguous(), D,
        z=None, delta_bias=delta_bias, delta_softplus=delta_softplus,
    ).float()


backends.register_backend(
    backends.ScanBackend(
        name="reference",
        fn=_reference_fn,
        devices=frozenset({"cpu", "cuda"}),
        priority=0,
        description="chunked PyTorch reference (exact, any device, slow)",
    )
)
backends.register_backend(
    backends.ScanBackend(
        name="mamba-ssm",
        fn=_mamba_ssm_fn,
        devices=frozenset({"cuda"}),
        priority=10,
        description="mamba-ssm's selective_scan_fn CUDA kernel (output rounded to the input dtype)",
        unavailable_reason=_mamba_ssm_unavailable,
    )
)
