"""The selective-scan op: public function, torch custom op and backend registry."""

from .backends import ScanBackend, register_backend, registered_backends, resolve_backend, set_backend, use_backend
from .reference import selective_scan_reference, softplus_thresholded
from .selective_scan import selective_scan, validate_scan_inputs

__all__ = [
    "ScanBackend",
    "register_backend",
    "registered_backends",
    "resolve_backend",
    "selective_scan",
    "selective_scan_reference",
    "set_backend",
    "softplus_thresholded",
    "use_backend",
    "validate_scan_inputs",
]

from . import cuda_backend  # noqa: E402,F401  (registers the lazy "cuda" backend; loads no library)
