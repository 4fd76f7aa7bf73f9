"""The "triton" backend of the scan ops: Triton kernels for ``selective_scan`` (v1) and ``ss2d_scan``.

For a GPU box without our native build (no nvcc/CMake): ``pip install triton`` (PyTorch's CUDA
wheels bring it) is enough. "auto" picks it on CUDA tensors when it is available and our CUDA
library is not (priority 15: below "cuda" (20), above "mamba-ssm" (10), whose output is rounded to
the input dtype where the contract asks for fp32). ``REMAMBER_SCAN_BACKEND=triton`` or
``use_backend("triton")`` selects it explicitly.

On the CPU it runs only under Triton's interpreter: set ``TRITON_INTERPRET=1`` before Python starts
(Triton decorates its own standard library, ``tl.zeros``, ``tl.sum``, ..., in the mode of its first
import, which torch or transformers may do early; our kernels are decorated when the first Triton scan
imports ``remamber/ops/triton_kernels.py``); then
the backend accepts CPU tensors when selected by name ("auto" never picks it on the CPU: the
interpreter is orders of magnitude slower than the reference). That is how CI checks the kernels.

What the interpreter cannot cover (tests/triton_interpreter_cases.py runs it; it executes each program
serially in NumPy): the compiled code's numerics (``tl.exp2`` / ``tl.exp`` / ``tl.log`` are approximate
PTX instructions on the GPU, libm-exact NumPy here), the parallel tree of ``tl.associative_scan`` (the
interpreter combines step by step), ordering between threads (the ``tl.debug_barrier`` between the SS2D
directions is a no-op there: one program is one thread), register pressure and layouts of the real tile
sizes (tests/test_triton_compile.py compiles both kernels to sm_90 cubins on the CPU and checks there is
no local-memory spill, with the pinned Triton 3.8; the GPU machine's own Triton compiles them anew), int32
overflow of offsets at real sizes, speed, CUDA-graph capture and torch.compile on a GPU. The GPU check's
``triton_*`` steps (bench/gpu/triton_check.py) run those on a GPU.

Capture / compile: a call allocates only its output (``torch.empty`` of the input's shape), reads no
tensor value on the host and launches on PyTorch's current stream of the inputs' device (Triton's
launcher asks torch for it), so a warmed-up call can be captured into a CUDA graph. The public ops are
torch.library custom ops with fake kernels, so torch.compile keeps them as one opaque call each
(the backend is chosen inside the op, so the kernels are not wrapped again with
``torch.library.triton_op``: inductor would gain nothing from seeing into a scan it cannot fuse).
"""

from __future__ import annotations

import importlib.util
import os
import threading

import torch

from ..errors import InputError, RemamberError
from . import backends

BACKEND_NAME = "triton"
PRIORITY = 15
INTERPRET_ENV = "TRITON_INTERPRET"

# Tile sizes. GPU: BLOCK_L steps per chunk; BLOCK_D channels per program so that one chunk's
# (BLOCK_D, N_PAD, BLOCK_L) pair tiles stay around TILE_ELEMENTS fp32 values (registers).
GPU_BLOCK_L = 256
GPU_TILE_ELEMENTS = 2048
GPU_NUM_WARPS = 4
MIN_PROGRAMS_PER_SM = 4
# Interpreter: short chunks, so the tests' short sequences already span several chunks.
INTERPRETER_BLOCK_L = 32
INTERPRETER_MAX_BLOCK_D = 16

_lock = threading.Lock()
_kernels = None  # the triton_kernels module once imported
_triton_found: bool | None = None


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _interpret_requested() -> bool:
    return os.environ.get(INTERPRET_ENV, "0") == "1"


def _have_triton() -> bool:
    global _triton_found
    if _triton_found is None:
        _triton_found = importlib.util.find_spec("triton") is not None
    return _triton_found


def kernels():
    """The kernels module, imported once (this is when Triton reads TRITON_INTERPRET)."""
    global _kernels
    if _kernels is None:
        with _lock:
            if _kernels is None:
                try:
                    from . import triton_kernels
                except ImportError as exc:
                    raise RemamberError(
                        f"the triton scan backend needs the `triton` package ({exc}); pip install triton "
                        "(PyTorch's CUDA wheels ship it)"
                    ) from exc
                _kernels = triton_kernels
    return _kernels


def interpreted() -> bool:
    """Whether the kernels run in Triton's interpreter (fixed at their import; predicted before it)."""
    return _kernels.INTERPRETED if _kernels is not None else _interpret_requested()


def unavailable_reason() -> str | None:
    """None when the backend can run, else why not (cheap: asked on every "auto" scan call)."""
    if not _have_triton():
        return "the `triton` package is not installed (pip install triton; PyTorch's CUDA wheels ship it)"
    if interpreted() or torch.cuda.is_available():
        return None
    return (
        "no CUDA GPU is visible to PyTorch and Triton's interpreter is off (set TRITON_INTERPRET=1 before Python "
        "starts to run the kernels on CPU tensors, slowly)"
    )


def _check_device(op: str, u: torch.Tensor) -> None:
    if u.device.type == "cuda" or (u.device.type == "cpu" and interpreted()):
        return  # (the interpreter also takes CUDA tensors: it copies them to the host and back)
    raise InputError(
        f"{op} (triton backend): inputs are on {u.device}; the compiled kernels need CUDA tensors, and CPU "
        f"tensors need Triton's interpreter ({INTERPRET_ENV}=1 set before Python starts)"
    )


def block_sizes(nstate: int, length: int, per_program_channels: int, block_l: int | None = None,
                block_d: int | None = None, row_groups: int | None = None, device=None) -> tuple[int, int, int]:
    """(N_PAD, BLOCK_D, BLOCK_L) for a call; block_l / block_d override (powers of two, for tests).

    ``per_program_channels``: channels that share B/C rows (one group of v1, all D of SS2D);
    ``row_groups``: how many such sets the call has (batch * groups, or batch), for the SM fill.
    """
    n_pad = _next_pow2(nstate)
    if interpreted():
        bl = block_l or min(INTERPRETER_BLOCK_L, max(2, _next_pow2(length)))
        bd = block_d or min(INTERPRETER_MAX_BLOCK_D, _next_pow2(per_program_channels))
    else:
        bl = block_l or min(GPU_BLOCK_L, max(16, _next_pow2(length)))
        bd = block_d or max(1, min(_next_pow2(per_program_channels), GPU_TILE_ELEMENTS // (n_pad * bl)))
        if block_d is None and row_groups is not None:
            # A memory-bound scan needs every SM busy: fewer channels per program until there are at
            # least MIN_PROGRAMS_PER_SM programs per SM (or one channel each).
            want = MIN_PROGRAMS_PER_SM * _sm_count(device)
            while bd > 1 and row_groups * -(-per_program_channels // bd) < want:
                bd //= 2
    for name, v in (("block_l", bl), ("block_d", bd)):
        if v < 1 or v & (v - 1):
            raise InputError(f"triton backend: {name} must be a power of two, got {v}")
    return n_pad, bd, bl


_sm_counts: dict[int, int] = {}


def _sm_count(device) -> int:
    """Multiprocessors of a CUDA device (cached: asked once per device, a host-side property query)."""
    index = torch.device(device).index if device is not None else None
    index = torch.cuda.current_device() if index is None else index
    if index not in _sm_counts:
        _sm_counts[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _sm_counts[index]


def _launch_options() -> dict:
    return {} if interpreted() else {"num_warps": GPU_NUM_WARPS}


def _out_ok(op: str, out: torch.Tensor, u: torch.Tensor) -> None:
    if out.dtype != torch.float32 or tuple(out.shape) != tuple(u.shape) or not out.is_contiguous() or out.device != u.device:
        raise InputError(
            f"{op} (triton backend): out must be a contiguous float32 tensor of shape {tuple(u.shape)} on {u.device}, "
            f"got {out.dtype} {tuple(out.shape)} on {out.device}"
        )


def _dummy(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    # Absent D / delta_bias: the kernel never reads the pointer (HAS_D / HAS_BIAS are constexpr).
    return like if t is None else t.contiguous()


def triton_scan_into(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True,
                     block_l: int | None = None, block_d: int | None = None) -> torch.Tensor:
    """Selective scan v1 into ``out`` (float32, contiguous, u's shape). Inputs must satisfy the
    contract (``remamber.ops.validate_scan_inputs``); they are made contiguous here."""
    op = "selective_scan"
    _check_device(op, u)
    _out_ok(op, out, u)
    batch, channels, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]
    per_group = channels // groups
    if out.numel() == 0:
        return out
    k = kernels()
    n_pad, bd, bl = block_sizes(nstate, length, per_group, block_l, block_d, batch * groups, u.device)
    u_c, delta_c, A_c, B_c, C_c = (t.contiguous() for t in (u, delta, A, B, C))
    grid = (batch * groups, -(-per_group // bd))
    with _device_guard(u):
        k.selective_scan_kernel[grid](
            u_c, delta_c, A_c, B_c, C_c, _dummy(D, A_c), _dummy(delta_bias, A_c), out,
            channels, length, groups, per_group, nstate,
            HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
            N_PAD=n_pad, BLOCK_D=bd, BLOCK_L=bl, **_launch_options(),
        )
    return out


def triton_ss2d_scan_into(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0,
                          block_l: int | None = None, block_d: int | None = None) -> torch.Tensor:
    """Fused SS2D scan into ``out`` (float32, contiguous, u's shape (batch, D, H, W)). ``layout``:
    0 cross, 1 bidi. Inputs must satisfy the contract (``remamber.ops.validate_ss2d_inputs``)."""
    op = "ss2d_scan"
    _check_device(op, u)
    _out_ok(op, out, u)
    if int(layout) not in (0, 1):
        raise InputError(f"ss2d_scan (triton backend): layout must be 0 (cross) or 1 (bidi), got {layout!r}")
    batch, dim, height, width = u.shape
    nstate = A.shape[1]
    if out.numel() == 0:
        return out
    k = kernels()
    n_pad, bd, bl = block_sizes(nstate, height * width, dim, block_l, block_d, batch, u.device)
    u_c, delta_c, A_c, B_c, C_c = (t.contiguous() for t in (u, delta, A, B, C))
    grid = (batch, -(-dim // bd))
    with _device_guard(u):
        k.ss2d_scan_kernel[grid](
            u_c, delta_c, A_c, B_c, C_c, _dummy(D, A_c), _dummy(delta_bias, A_c), out,
            dim, height, width, nstate,
            LAYOUT=int(layout), HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
            N_PAD=n_pad, BLOCK_D=bd, BLOCK_L=bl, **_launch_options(),
        )
    return out


class _device_guard:
    """``torch.cuda.device(u.device)`` for CUDA tensors (Triton launches on the current device's
    current stream), nothing for CPU tensors."""

    def __init__(self, t: torch.Tensor):
        self._ctx = torch.cuda.device(t.device) if t.device.type == "cuda" else None

    def __enter__(self):
        if self._ctx is not None:
            self._ctx.__enter__()

    def __exit__(self, *exc):
        if self._ctx is not None:
            return self._ctx.__exit__(*exc)
        return False


def triton_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """The selective_scan backend function: allocates the float32 output and runs the kernel."""
    out = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    return triton_scan_into(out, u, delta, A, B, C, D, delta_bias, delta_softplus)


def triton_ss2d_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0) -> torch.Tensor:
    """The ss2d_scan backend function: allocates the float32 output and runs the fused kernel."""
    out = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    return triton_ss2d_scan_into(out, u, delta, A, B, C, D, delta_bias, delta_softplus, layout)


def register_triton_backends() -> tuple[backends.ScanBackend, backends.ScanBackend]:
    """Register "triton" in both op tables (idempotent; imports neither triton nor the kernels)."""
    common = dict(
        name=BACKEND_NAME,
        # CPU tensors are accepted by name under the interpreter; "auto" considers CUDA only.
        devices=frozenset({"cuda", "cpu"}),
        auto_devices=frozenset({"cuda"}),
        priority=PRIORITY,
        unavailable_reason=unavailable_reason,
    )
    v1 = backends.ScanBackend(
        fn=triton_scan, op=backends.OP_SELECTIVE_SCAN,
        description="Triton kernel (chunked associative scan, fp32 state and output; no native build needed)",
        **common,
    )
    ss2d = backends.ScanBackend(
        fn=triton_ss2d_scan, op=backends.OP_SS2D_SCAN,
        description="Triton fused SS2D kernel (four directions by index, deterministic fp32 merge)",
        **common,
    )
    backends.register_backend(v1)
    backends.register_backend(ss2d)
    return v1, ss2d


register_triton_backends()
