"""The "cuda" selective-scan backend: our CUDA kernel through the launcher library's C ABI.

``libremamber_scan_cuda.so`` (built by ``bash scripts/build_native.sh``, located by
``remamber.native.library_path("cuda")`` or the environment variable ``REMAMBER_CUDA_LIB``)
exports, all tensors contiguous (COMMON.md, fixed ABI)::

    int remamberSelectiveScanForward(const void* u, const void* delta, const float* A,
        const void* B, const void* C, const float* D /*nullable*/, const float* delta_bias /*nullable*/,
        float* y, int batch, int channels, int length, int groups, int nstate,
        int dtype /*0 fp32, 1 fp16, 2 bf16*/, int delta_softplus, void* stream);
    const char* remamberSelectiveScanLastError(void);
    int remamberSelectiveScanVersion(void);   /* 1 */

and, for the fused SS2D scan (``remamber.ops.ss2d_scan``, contract plugins/ss2dScanPlugin/README.md)::

    int remamberSS2DScanForward(const void* u, const void* delta, const float* A,
        const void* B, const void* C, const float* D /*nullable*/, const float* delta_bias /*nullable*/,
        float* y, int batch, int dim, int height, int width, int nstate,
        int layout /*0 cross, 1 bidi*/, int dtype, int delta_softplus, void* stream);
    const char* remamberSS2DScanLastError(void);
    int remamberSS2DScanVersion(void);   /* 1 */

The library is loaded lazily, on the first scan or availability question, never at import:
importing ``remamber.ops`` on a machine without the library or without a GPU must stay cheap and
silent. The kernel runs on PyTorch's current stream of the inputs' device, so it orders with the
surrounding PyTorch work and with CUDA graph capture like any PyTorch kernel.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import torch

from ..errors import InputError, NativeLibraryError
from . import backends

BACKEND_NAME = "cuda"
# Above mamba-ssm (10) and the reference (0): on a GPU with the library built, "auto" picks ours.
PRIORITY = 20
ABI_VERSION = 1
LIBRARY_FILENAME = "libremamber_scan_cuda.so"
ENV_VAR = "REMAMBER_CUDA_LIB"
BUILD_COMMAND = "bash scripts/build_native.sh"

# The ABI's dtype codes.
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_INT32_MAX = 2**31 - 1

_lock = threading.Lock()
_loaded: tuple[Path, ctypes.CDLL] | None = None  # (path, library) once loaded successfully


def _default_library_path() -> Path:
    """Where the library is when remamber.native cannot say: env override, else remamber/lib/."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "lib" / LIBRARY_FILENAME


def library_path() -> Path:
    """Path of the launcher library; raises NativeLibraryError naming the fix when absent.

    ``remamber.native.library_path("cuda")`` owns the search (env override, install folder); the
    fallback here keeps this backend usable while that module is absent or broken.
    """
    try:
        from .. import native  # owned by the native side; may not exist in a partial checkout
    except ImportError:
        native = None
    if native is not None and hasattr(native, "library_path"):
        return Path(native.library_path("cuda"))
    path = _default_library_path()
    if not path.is_file():
        raise NativeLibraryError(
            f"the CUDA scan library {LIBRARY_FILENAME} was not found at {path}; build it with "
            f"`{BUILD_COMMAND}` on a machine with nvcc, or set {ENV_VAR} to its path"
        )
    return path


def _bind(lib: ctypes.CDLL) -> None:
    fwd = lib.remamberSelectiveScanForward
    fwd.argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_int] * 7 + [ctypes.c_void_p]
    fwd.restype = ctypes.c_int
    lib.remamberSelectiveScanLastError.argtypes = []
    lib.remamberSelectiveScanLastError.restype = ctypes.c_char_p
    lib.remamberSelectiveScanVersion.argtypes = []
    lib.remamberSelectiveScanVersion.restype = ctypes.c_int


def load_library() -> ctypes.CDLL:
    """Load (once) and return the launcher library, checking its ABI version."""
    global _loaded
    if _loaded is not None:  # fast path: asked on every "auto" scan call
        return _loaded[1]
    with _lock:
        if _loaded is not None:
            return _loaded[1]
        path = library_path()
        try:
            lib = ctypes.CDLL(str(path))
            _bind(lib)
        except (OSError, AttributeError) as exc:
            raise NativeLibraryError(
                f"could not load the CUDA scan library {path}: {exc}; rebuild it with `{BUILD_COMMAND}` "
                f"(or point {ENV_VAR} at a working build)"
            ) from exc
        version = lib.remamberSelectiveScanVersion()
        if version != ABI_VERSION:
            raise NativeLibraryError(
                f"the CUDA scan library {path} has ABI version {version}, this package needs {ABI_VERSION}; "
                f"rebuild it with `{BUILD_COMMAND}`"
            )
        _loaded = (path, lib)
        return lib


def loaded_library_path() -> Path | None:
    """Path of the library loaded in this process, or None before the first load."""
    return None if _loaded is None else _loaded[0]


def unavailable_reason() -> str | None:
    """None when the backend can run, else why not (shown by the backend registry)."""
    if _loaded is not None and torch.cuda.is_available():
        return None
    if not torch.cuda.is_available():
        # Say where the library stands too, so a user fixing one problem learns of the other.
        try:
            library = f"the library is at {library_path()}"
        except NativeLibraryError as exc:
            library = f"also, {exc}"
        return (
            "no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False; run on a machine "
            f"with an NVIDIA GPU and a CUDA build of PyTorch); {library}"
        )
    try:
        load_library()
    except NativeLibraryError as exc:
        return str(exc)
    return None


def last_error(lib: ctypes.CDLL | None = None) -> str:
    lib = lib or load_library()
    message = lib.remamberSelectiveScanLastError()
    return message.decode("utf-8", "replace") if message else "(the library gave no message)"


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check_int32(**dims: int) -> None:
    for name, value in dims.items():
        if value > _INT32_MAX:
            raise InputError(f"selective_scan (cuda backend): {name} = {value} exceeds the launcher's int32 range")


def cuda_scan_into(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """Run the kernel writing into ``out`` (float32, contiguous, u's shape). Returns ``out``.

    Inputs must already satisfy the contract (``remamber.ops.validate_scan_inputs``); they are
    made contiguous here. Raises NativeLibraryError with the library's own message on failure.
    """
    if u.device.type != "cuda":
        raise InputError(f"selective_scan (cuda backend): inputs must be CUDA tensors, got device {u.device}")
    if u.dtype not in DTYPE_CODES:
        raise InputError(f"selective_scan (cuda backend): unsupported dtype {u.dtype}; use float32, float16 or bfloat16")
    if out.dtype != torch.float32 or tuple(out.shape) != tuple(u.shape) or not out.is_contiguous() or out.device != u.device:
        raise InputError(
            f"selective_scan (cuda backend): out must be a contiguous float32 tensor of shape {tuple(u.shape)} "
            f"on {u.device}, got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    batch, channels, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]
    _check_int32(batch=batch, channels=channels, length=length)
    # Locals keep the contiguous copies alive for the call; the caching allocator is stream-ordered,
    # so memory freed after we return is reused only by work queued after the kernel.
    u_c, delta_c, B_c, C_c = (t.contiguous() for t in (u, delta, B, C))
    A_c = A.contiguous()
    D_c = None if D is None else D.contiguous()
    bias_c = None if delta_bias is None else delta_bias.contiguous()
    lib = load_library()
    with torch.cuda.device(u.device):
        stream = torch.cuda.current_stream(u.device).cuda_stream
        rc = lib.remamberSelectiveScanForward(
            _pointer(u_c), _pointer(delta_c), _pointer(A_c), _pointer(B_c), _pointer(C_c),
            _pointer(D_c), _pointer(bias_c), _pointer(out),
            batch, channels, length, groups, nstate, DTYPE_CODES[u.dtype], int(bool(delta_softplus)),
            stream,
        )
    if rc != 0:
        raise NativeLibraryError(
            f"remamberSelectiveScanForward failed (code {rc}) for u {tuple(u.shape)} {u.dtype}, N={nstate}, "
            f"G={groups}: {last_error(lib)}"
        )
    return out


def cuda_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """The backend function: allocates the float32 output and runs the kernel."""
    out = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    return cuda_scan_into(out, u, delta, A, B, C, D, delta_bias, delta_softplus)


# ---- the fused SS2D scan (remamber::SS2DScan v1) -----------------------------------------------------

SS2D_ABI_VERSION = 1
_ss2d_bound: set[int] = set()  # id() of libraries whose SS2D entry points are bound and checked


def load_ss2d_library() -> ctypes.CDLL:
    """The launcher library with its SS2DScan entry points bound (a library built before them is refused)."""
    lib = load_library()
    if id(lib) in _ss2d_bound:
        return lib
    with _lock:
        try:
            fwd = lib.remamberSS2DScanForward
            version_fn = lib.remamberSS2DScanVersion
            last = lib.remamberSS2DScanLastError
        except AttributeError as exc:
            raise NativeLibraryError(
                f"the CUDA scan library {loaded_library_path()} has no SS2DScan entry points ({exc}); it predates "
                f"the fused kernel: rebuild it with `{BUILD_COMMAND}`"
            ) from exc
        fwd.argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_int] * 8 + [ctypes.c_void_p]
        fwd.restype = ctypes.c_int
        last.argtypes = []
        last.restype = ctypes.c_char_p
        version_fn.argtypes = []
        version_fn.restype = ctypes.c_int
        version = version_fn()
        if version != SS2D_ABI_VERSION:
            raise NativeLibraryError(
                f"the CUDA scan library {loaded_library_path()} has SS2DScan ABI version {version}, this package "
                f"needs {SS2D_ABI_VERSION}; rebuild it with `{BUILD_COMMAND}`"
            )
        _ss2d_bound.add(id(lib))
    return lib


def ss2d_unavailable_reason() -> str | None:
    """None when the fused SS2D kernel can run, else why not."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    try:
        load_ss2d_library()
    except NativeLibraryError as exc:
        return str(exc)
    return None


def ss2d_last_error(lib: ctypes.CDLL | None = None) -> str:
    lib = lib or load_ss2d_library()
    message = lib.remamberSS2DScanLastError()
    return message.decode("utf-8", "replace") if message else "(the library gave no message)"


def cuda_ss2d_scan_into(out, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0) -> torch.Tensor:
    """Run the fused kernel writing into ``out`` (float32, contiguous, u's shape (batch, D, H, W)).

    Inputs must already satisfy the contract (``remamber.ops.validate_ss2d_inputs``); they are made
    contiguous here. ``layout``: 0 cross, 1 bidi. Raises NativeLibraryError with the library's message.
    """
    if u.device.type != "cuda":
        raise InputError(f"ss2d_scan (cuda backend): inputs must be CUDA tensors, got device {u.device}")
    if u.dtype not in DTYPE_CODES:
        raise InputError(f"ss2d_scan (cuda backend): unsupported dtype {u.dtype}; use float32, float16 or bfloat16")
    if out.dtype != torch.float32 or tuple(out.shape) != tuple(u.shape) or not out.is_contiguous() or out.device != u.device:
        raise InputError(
            f"ss2d_scan (cuda backend): out must be a contiguous float32 tensor of shape {tuple(u.shape)} "
            f"on {u.device}, got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    batch, dim, height, width = u.shape
    nstate = A.shape[1]
    _check_int32(batch=batch, dim=dim, height=height, width=width, length=height * width)
    u_c, delta_c, B_c, C_c = (t.contiguous() for t in (u, delta, B, C))
    A_c = A.contiguous()
    D_c = None if D is None else D.contiguous()
    bias_c = None if delta_bias is None else delta_bias.contiguous()
    lib = load_ss2d_library()
    with torch.cuda.device(u.device):
        stream = torch.cuda.current_stream(u.device).cuda_stream
        rc = lib.remamberSS2DScanForward(
            _pointer(u_c), _pointer(delta_c), _pointer(A_c), _pointer(B_c), _pointer(C_c),
            _pointer(D_c), _pointer(bias_c), _pointer(out),
            batch, dim, height, width, nstate, int(layout), DTYPE_CODES[u.dtype], int(bool(delta_softplus)),
            stream,
        )
    if rc != 0:
        raise NativeLibraryError(
            f"remamberSS2DScanForward failed (code {rc}) for u {tuple(u.shape)} {u.dtype}, N={nstate}, "
            f"layout={layout}: {ss2d_last_error(lib)}"
        )
    return out


def cuda_ss2d_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0) -> torch.Tensor:
    """The ss2d_scan backend function: allocates the float32 output and runs the fused kernel."""
    out = torch.empty(u.shape, dtype=torch.float32, device=u.device)
    return cuda_ss2d_scan_into(out, u, delta, A, B, C, D, delta_bias, delta_softplus, layout)


def register_cuda_ss2d_backend() -> backends.ScanBackend | None:
    """Register "cuda" in the ss2d_scan table (idempotent; loads nothing). None if the registry has no such op."""
    op = getattr(backends, "OP_SS2D_SCAN", None)
    if op is None:
        return None
    backend = backends.ScanBackend(
        name=BACKEND_NAME,
        fn=cuda_ss2d_scan,
        devices=frozenset({"cuda"}),
        priority=PRIORITY,
        description="remamber's fused SS2DScan CUDA kernel (libremamber_scan_cuda.so): four directions by index, "
        "fp32 state, deterministic fp32 merge",
        unavailable_reason=ss2d_unavailable_reason,
        op=op,
    )
    backends.register_backend(backend)
    return backend


def register_cuda_backend() -> backends.ScanBackend:
    """Register the "cuda" backend (idempotent; loads nothing). Returns the registry entry."""
    backend = backends.ScanBackend(
        name=BACKEND_NAME,
        fn=cuda_scan,
        devices=frozenset({"cuda"}),
        priority=PRIORITY,
        description="remamber's CUDA kernel (libremamber_scan_cuda.so): fp32 state, fp32 output",
        unavailable_reason=unavailable_reason,
    )
    backends.register_backend(backend)
    return backend


register_cuda_backend()
register_cuda_ss2d_backend()
