"""``remamber.ops.ss2d_scan``: the fused SS2D scan (``remamber::SS2DScan`` v1), its validation and torch op.

One call per SS2D: the cross-scan (or the Twister's bidirectional scan), the selective scan of the
four directions and the merge, on spatial tensors (contract: plugins/ss2dScanPlugin/README.md).
Registered as ``remamber::ss2d_scan`` with a fake (meta) implementation so ``torch.export`` sees one
opaque node per SS2D call; export/ss2d_onnx.py maps it to the ONNX node ``remamber::SS2DScan``.
Eager calls run the backend chosen by ``remamber.ops.backends`` from the op's own table
(``op="ss2d_scan"``): "reference" here, "cuda" registered by remamber/ops/cuda_backend.py.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from . import backends
from .reference import SS2D_DIRECTIONS, SS2D_LAYOUTS, ss2d_scan_reference
from .selective_scan import ACTIVATION_DTYPES, MAX_STATE, reference_backward

K = SS2D_DIRECTIONS


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def layout_code(layout: str | int) -> int:
    """'cross' / 0 -> 0, 'bidi' / 1 -> 1; anything else is an InputError."""
    if isinstance(layout, str) and layout in SS2D_LAYOUTS:
        return SS2D_LAYOUTS[layout]
    if isinstance(layout, int) and not isinstance(layout, bool) and layout in SS2D_LAYOUTS.values():
        return int(layout)
    raise InputError(f"ss2d_scan: layout must be 'cross' (0) or 'bidi' (1), got {layout!r}")


def validate_ss2d_inputs(u, delta, A, B, C, D=None, delta_bias=None, layout=0) -> None:
    """Raise InputError naming the input and the expected shape/dtype when the contract is broken."""
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"ss2d_scan: {name} must be a torch.Tensor, got {type(t).__name__}")
    if u.dim() != 4:
        raise InputError(f"ss2d_scan: u must be (batch, D, H, W), got shape {_shape(u)}")
    batch, dim, height, width = u.shape
    if u.dtype not in ACTIVATION_DTYPES:
        raise InputError(f"ss2d_scan: u has dtype {u.dtype}; expected float32, float16 or bfloat16")
    layout_code(layout)
    expected_delta = (batch, K * dim, height, width)
    if tuple(delta.shape) != expected_delta:
        raise InputError(f"ss2d_scan: delta must be (batch, 4*D, H, W) = {expected_delta}, got {_shape(delta)}")
    if A.dim() != 2 or A.shape[0] != K * dim:
        raise InputError(f"ss2d_scan: A must be (4*D, N) = ({K * dim}, N), got {_shape(A)}")
    if A.dtype != torch.float32:
        raise InputError(f"ss2d_scan: A must be float32, got {A.dtype}; pass A.float()")
    nstate = A.shape[1]
    if not 1 <= nstate <= MAX_STATE:
        raise InputError(f"ss2d_scan: state size N = {nstate} is outside 1..{MAX_STATE} (A is {_shape(A)})")
    expected_bc = (batch, K, nstate, height, width)
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != expected_bc:
            raise InputError(f"ss2d_scan: {name} must be (batch, 4, N, H, W) = {expected_bc}, got {_shape(t)}")
    for name, t in (("delta", delta), ("B", B), ("C", C)):
        if t.dtype != u.dtype:
            raise InputError(f"ss2d_scan: {name} has dtype {t.dtype} but u has {u.dtype}; they must match")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (K * dim,):
            raise InputError(f"ss2d_scan: {name} must be (4*D,) = ({K * dim},), got {_shape(t) if isinstance(t, torch.Tensor) else type(t).__name__}")
        if t.dtype != torch.float32:
            raise InputError(f"ss2d_scan: {name} must be float32, got {t.dtype}")
    devices = {t.device for t in (u, delta, A, B, C, D, delta_bias) if t is not None}
    if len(devices) > 1:
        raise InputError(f"ss2d_scan: inputs are on several devices {sorted(map(str, devices))}")


@torch.library.custom_op("remamber::ss2d_scan", mutates_args=())
def _ss2d_scan_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    layout: int,
) -> torch.Tensor:
    if u.dtype == torch.float64:
        # float64 never passes the public validation; it exists for the finite-difference gradient
        # check (tests/test_ops_grad.py), and only the exact reference computes it.
        return ss2d_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus, layout).contiguous()
    backend = backends.resolve_backend(u.device.type, backends.OP_SS2D_SCAN)
    out = backend.fn(u, delta, A, B, C, D, delta_bias, delta_softplus, layout)
    return out.to(torch.float32).contiguous()


@_ss2d_scan_op.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus, layout):
    return u.new_empty(u.shape, dtype=torch.float64 if u.dtype == torch.float64 else torch.float32)


# autograd: recompute through the differentiable reference and differentiate it (as selective_scan).
def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, delta_bias, delta_softplus, layout = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, delta_bias)
    ctx.delta_softplus, ctx.layout = delta_softplus, layout


def _backward(ctx, grad_out):
    from . import cpu_backend  # the native backward, when the "cpu" backend is the one selected

    saved, needs = ctx.saved_tensors, ctx.needs_input_grad[:7]
    if cpu_backend.native_backward(backends.OP_SS2D_SCAN, saved, needs):
        return (*cpu_backend.ss2d_scan_backward(saved, needs, grad_out, ctx.delta_softplus, ctx.layout), None, None)
    grads = reference_backward(ss2d_scan_reference, saved, needs, grad_out, ctx.delta_softplus, ctx.layout)
    return (*grads, None, None)


torch.library.register_autograd("remamber::ss2d_scan", _backward, setup_context=_setup_context)


def ss2d_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    layout: str | int = "cross",
) -> torch.Tensor:
    """SS2DScan per ``remamber::SS2DScan`` v1. Returns float32 (batch, D, H, W): the sum of 4 directions.

    u: (batch, D, H, W) float32/float16/bfloat16; delta: (batch, 4*D, H, W); A: (4*D, N) float32,
    1 <= N <= 16; B, C: (batch, 4, N, H, W), dtype of u; D, delta_bias: (4*D,) float32 or None;
    layout: "cross" (0) or "bidi" (1; the model passes H == 1, any H walks the row-major order).
    """
    code = layout_code(layout)
    validate_ss2d_inputs(u, delta, A, B, C, D, delta_bias, code)
    return _ss2d_scan_op(u, delta, A, B, C, D, delta_bias, bool(delta_softplus), code)


def _reference_fn(u, delta, A, B, C, D, delta_bias, delta_softplus, layout):
    return ss2d_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus, layout)


backends.register_backend(
    backends.ScanBackend(
        name="reference",
        fn=_reference_fn,
        devices=frozenset({"cpu", "cuda"}),
        priority=0,
        description="gather each direction by index, chunked PyTorch reference scan, merge (exact, slow)",
        op=backends.OP_SS2D_SCAN,
    )
)
