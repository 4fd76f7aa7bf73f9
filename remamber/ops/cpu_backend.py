"""The "cpu" scan backend: our CPU kernels, forward and backward, through libremamber_cpu_ops.so.

Why it exists: training the demo checkpoint (issue 16) runs on CPUs, and the reference backward (a
Python-level chunked recurrence plus a dozen full-size temporaries per call) took 85% of a tiny-model
training step. This backend runs the SIMD forward kernels the ONNX Runtime op uses and a native
backward (plugins/common/scan_cpu_grad.h) for both ops.

It is never picked by "auto": on CPU, "auto" keeps the PyTorch reference, so PyTorch-vs-ONNX Runtime
parity keeps comparing two independent implementations. Name it to use it:
``REMAMBER_SCAN_BACKEND=cpu``, ``remamber.ops.use_backend("cpu")``, or ``remamber-deploy train``
(which selects it when the library is built). The ops' autograd then runs the native backward for
float32 CPU tensors (``native_backward``), and the reference backward otherwise.

C ABI (plugins/cpu/cpu_c_api.cpp; host pointers, contiguous, y and gradients float32)::

    int remamberCpuSelectiveScanForward(u, delta, A, B, C, D?, delta_bias?, y,
        int batch, int channels, int length, int groups, int nstate, int dtype, int delta_softplus, int threads);
    int remamberCpuSelectiveScanBackward(u, delta, A, B, C, D?, delta_bias?, grad_y,
        du, ddelta, dA, dB, dC, dD?, d_delta_bias?, batch, channels, length, groups, nstate, delta_softplus, threads);
    int remamberCpuSS2DScanForward(..., int batch, int dim, int height, int width, int nstate, int layout,
        int dtype, int delta_softplus, int threads);
    int remamberCpuSS2DScanBackward(..., int batch, int dim, int height, int width, int nstate, int layout,
        int delta_softplus, int threads);
    const char* remamberCpuScanLastError(void);  int remamberCpuScanVersion(void);  /* 1 */
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch

from ..errors import InputError, NativeLibraryError, RemamberError
from . import backends

BACKEND_NAME = "cpu"
ABI_VERSION = 1
BUILD_COMMAND = "bash scripts/build_native.sh"
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_INT32_MAX = 2**31 - 1
_P = ctypes.c_void_p
_I = ctypes.c_int

_lock = threading.Lock()
_loaded: tuple[Path, ctypes.CDLL] | None = None


def load_library() -> ctypes.CDLL:
    """Load (once) and return libremamber_cpu_ops.so, checking its ABI version."""
    global _loaded
    if _loaded is not None:
        return _loaded[1]
    from .. import native

    with _lock:
        if _loaded is not None:
            return _loaded[1]
        path = Path(native.library_path("cpu"))
        try:
            lib = ctypes.CDLL(str(path))
            lib.remamberCpuSelectiveScanForward.argtypes = [_P] * 8 + [_I] * 8
            lib.remamberCpuSelectiveScanBackward.argtypes = [_P] * 15 + [_I] * 7
            lib.remamberCpuSS2DScanForward.argtypes = [_P] * 8 + [_I] * 9
            lib.remamberCpuSS2DScanBackward.argtypes = [_P] * 15 + [_I] * 8
            for fn in (lib.remamberCpuSelectiveScanForward, lib.remamberCpuSelectiveScanBackward,
                       lib.remamberCpuSS2DScanForward, lib.remamberCpuSS2DScanBackward, lib.remamberCpuScanVersion):
                fn.restype = _I
            lib.remamberCpuScanLastError.argtypes = []
            lib.remamberCpuScanLastError.restype = ctypes.c_char_p
        except (OSError, AttributeError) as exc:
            raise NativeLibraryError(f"could not load the CPU scan library {path}: {exc}; rebuild it with "
                                     f"`{BUILD_COMMAND}`") from exc
        version = lib.remamberCpuScanVersion()
        if version != ABI_VERSION:
            raise NativeLibraryError(f"the CPU scan library {path} has ABI version {version}, this package needs "
                                     f"{ABI_VERSION}; rebuild it with `{BUILD_COMMAND}`")
        _loaded = (path, lib)
        return lib


def unavailable_reason() -> str | None:
    """None when the library loads, else why not (shown by the backend registry)."""
    try:
        load_library()
    except NativeLibraryError as exc:
        return str(exc)
    return None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _call(lib, entry: str, *args) -> None:
    rc = getattr(lib, entry)(*args)
    if rc != 0:
        message = lib.remamberCpuScanLastError()
        raise NativeLibraryError(f"{entry} failed (code {rc}): "
                                 f"{message.decode('utf-8', 'replace') if message else '(no message)'}")


def _check(op: str, tensors, dims: dict[str, int]) -> None:
    for t in tensors:
        if t is not None and t.device.type != "cpu":
            raise InputError(f"{op} (cpu backend): inputs must be CPU tensors, got device {t.device}")
    for name, value in dims.items():
        if value > _INT32_MAX:
            raise InputError(f"{op} (cpu backend): {name} = {value} exceeds the library's int32 range")


def _contiguous(*ts):
    return [None if t is None else t.contiguous() for t in ts]


def _threads() -> int:
    return max(1, torch.get_num_threads())


def cpu_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """Selective scan v1 forward on the CPU kernel; float32 output of u's shape."""
    batch, channels, length = u.shape
    _check("selective_scan", (u, delta, A, B, C, D, delta_bias), {"batch*channels*length": batch * channels * length})
    if u.dtype not in DTYPE_CODES:
        raise InputError(f"selective_scan (cpu backend): unsupported dtype {u.dtype}")
    u, delta, A, B, C, D, delta_bias = _contiguous(u, delta, A, B, C, D, delta_bias)
    y = torch.empty(u.shape, dtype=torch.float32)
    _call(load_library(), "remamberCpuSelectiveScanForward", _ptr(u), _ptr(delta), _ptr(A), _ptr(B), _ptr(C), _ptr(D),
          _ptr(delta_bias), _ptr(y), batch, channels, length, B.shape[1], A.shape[1], DTYPE_CODES[u.dtype],
          int(bool(delta_softplus)), _threads())
    return y


def cpu_ss2d_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, layout=0) -> torch.Tensor:
    """SS2DScan forward on the CPU kernel; float32 (batch, D, H, W)."""
    batch, dim, height, width = u.shape
    _check("ss2d_scan", (u, delta, A, B, C, D, delta_bias), {"batch*4*D*H*W": batch * 4 * dim * height * width})
    if u.dtype not in DTYPE_CODES:
        raise InputError(f"ss2d_scan (cpu backend): unsupported dtype {u.dtype}")
    u, delta, A, B, C, D, delta_bias = _contiguous(u, delta, A, B, C, D, delta_bias)
    y = torch.empty(u.shape, dtype=torch.float32)
    _call(load_library(), "remamberCpuSS2DScanForward", _ptr(u), _ptr(delta), _ptr(A), _ptr(B), _ptr(C), _ptr(D),
          _ptr(delta_bias), _ptr(y), batch, dim, height, width, A.shape[1], int(layout), DTYPE_CODES[u.dtype],
          int(bool(delta_softplus)), _threads())
    return y


def native_backward(op: str, saved, needs) -> bool:
    """Whether the ops' autograd should take the native backward for these saved inputs: the "cpu"
    backend is the one selected on CPU, and every tensor is a float32 CPU tensor."""
    try:
        if backends.resolve_backend("cpu", op).name != BACKEND_NAME:
            return False
    except RemamberError:  # another backend named for another device: not ours to take
        return False
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in saved)


def _backward(entry: str, saved, needs, grad_y, shape_args) -> list[torch.Tensor | None]:
    u, delta, A, B, C, D, delta_bias = _contiguous(*saved)
    grad_y = grad_y.to(torch.float32).contiguous()
    du, ddelta, dA, dB, dC = (torch.empty_like(t, dtype=torch.float32) for t in (u, delta, A, B, C))
    dD = torch.empty_like(D) if D is not None and needs[5] else None
    dbias = torch.empty_like(delta_bias) if delta_bias is not None and needs[6] else None
    _call(load_library(), entry, _ptr(u), _ptr(delta), _ptr(A), _ptr(B), _ptr(C), _ptr(D), _ptr(delta_bias),
          _ptr(grad_y), _ptr(du), _ptr(ddelta), _ptr(dA), _ptr(dB), _ptr(dC), _ptr(dD), _ptr(dbias), *shape_args,
          _threads())
    grads = [du, ddelta, dA, dB, dC, dD, dbias]
    return [g if n else None for g, n in zip(grads, needs)]


def selective_scan_backward(saved, needs, grad_y, delta_softplus) -> list[torch.Tensor | None]:
    """Gradients of the selective scan w.r.t. (u, delta, A, B, C, D, delta_bias), None where not needed."""
    u, A, B = saved[0], saved[2], saved[3]
    batch, channels, length = u.shape
    return _backward("remamberCpuSelectiveScanBackward", saved, needs, grad_y,
                     (batch, channels, length, B.shape[1], A.shape[1], int(bool(delta_softplus))))


def ss2d_scan_backward(saved, needs, grad_y, delta_softplus, layout) -> list[torch.Tensor | None]:
    """Gradients of the SS2D scan w.r.t. (u, delta, A, B, C, D, delta_bias), None where not needed."""
    u, A = saved[0], saved[2]
    batch, dim, height, width = u.shape
    return _backward("remamberCpuSS2DScanBackward", saved, needs, grad_y,
                     (batch, dim, height, width, A.shape[1], int(layout), int(bool(delta_softplus))))


_DESCRIPTION = "our CPU kernels (SIMD forward, native backward) via libremamber_cpu_ops.so; only when named"
backends.register_backend(backends.ScanBackend(
    name=BACKEND_NAME, fn=cpu_scan, devices=frozenset({"cpu"}), priority=5, description=_DESCRIPTION,
    unavailable_reason=unavailable_reason, auto_devices=frozenset()))
backends.register_backend(backends.ScanBackend(
    name=BACKEND_NAME, fn=cpu_ss2d_scan, devices=frozenset({"cpu"}), priority=5, description=_DESCRIPTION,
    unavailable_reason=unavailable_reason, op=backends.OP_SS2D_SCAN, auto_devices=frozenset()))
