"""Backend registry for the selective scan.

A backend is a function with the contract's signature that returns float32. Backends register
here; compiled kernels (our CUDA launcher, mamba-ssm's extension) register themselves lazily, so
importing this module never loads a shared library.

Selection: an explicit name (``use_backend("cuda")``, ``set_backend``, or the environment variable
``REMAMBER_SCAN_BACKEND``), else "auto": the highest-priority backend that is available and
supports the inputs' device.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..errors import RemamberError

ScanFn = Callable[..., torch.Tensor]


@dataclass
class ScanBackend:
    name: str
    fn: ScanFn
    devices: frozenset[str]
    priority: int = 0
    description: str = ""
    # Returns None when usable, else the reason it is not (shown to users).
    unavailable_reason: Callable[[], str | None] = field(default=lambda: None)

    def available(self) -> bool:
        return self.unavailable_reason() is None


_REGISTRY: dict[str, ScanBackend] = {}
_LOCAL = threading.local()
_ENV_VAR = "REMAMBER_SCAN_BACKEND"


def register_backend(backend: ScanBackend) -> None:
    _REGISTRY[backend.name] = backend


def registered_backends() -> dict[str, ScanBackend]:
    return dict(_REGISTRY)


def _requested_name() -> str:
    name = getattr(_LOCAL, "name", None) or os.environ.get(_ENV_VAR) or "auto"
    return name


def set_backend(name: str) -> None:
    """Select a backend for this thread ("auto" restores automatic choice)."""
    if name != "auto":
        get_backend(name)  # validates
    _LOCAL.name = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    previous = getattr(_LOCAL, "name", None)
    set_backend(name)
    try:
        yield
    finally:
        _LOCAL.name = previous


def get_backend(name: str) -> ScanBackend:
    if name not in _REGISTRY:
        raise RemamberError(
            f"unknown selective-scan backend {name!r}; registered: {sorted(_REGISTRY)} "
            f"(set {_ENV_VAR} or use_backend() with one of those)"
        )
    backend = _REGISTRY[name]
    reason = backend.unavailable_reason()
    if reason is not None:
        raise RemamberError(f"selective-scan backend {name!r} is not available: {reason}")
    return backend


def resolve_backend(device_type: str) -> ScanBackend:
    """The backend that will run a scan whose inputs live on ``device_type``."""
    name = _requested_name()
    if name != "auto":
        backend = get_backend(name)
        if device_type not in backend.devices:
            raise RemamberError(
                f"selective-scan backend {name!r} runs on {sorted(backend.devices)}, but the inputs "
                f"are on {device_type!r}; move the inputs or choose another backend"
            )
        return backend
    candidates = [
        b for b in _REGISTRY.values() if device_type in b.devices and b.available()
    ]
    if not candidates:
        raise RemamberError(f"no selective-scan backend available for device {device_type!r}")
    return max(candidates, key=lambda b: b.priority)
