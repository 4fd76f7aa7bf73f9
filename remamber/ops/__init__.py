"""The scan ops: selective scan (v1) and the fused SS2D scan, torch custom ops and the backend registry."""

from .backends import ScanBackend, register_backend, registered_backends, resolve_backend, set_backend, use_backend
from .reference import selective_scan_reference, softplus_thresholded, ss2d_scan_reference
from .selective_scan import selective_scan, validate_scan_inputs
from .ss2d_scan import ss2d_scan, validate_ss2d_inputs

__all__ = [
    "ScanBackend",
    "register_backend",
    "registered_backends",
    "resolve_backend",
    "selective_scan",
    "selective_scan_reference",
    "set_backend",
    "softplus_thresholded",
    "ss2d_scan",
    "ss2d_scan_reference",
    "use_backend",
    "validate_scan_inputs",
    "validate_ss2d_inputs",
]

from . import cpu_backend  # noqa: E402,F401  (registers the "cpu" backend, used only when named; loads no library)
from . import cuda_backend  # noqa: E402,F401  (registers the lazy "cuda" backend; loads no library)
from . import triton_backend  # noqa: E402,F401  (registers the lazy "triton" backend; imports no triton)
