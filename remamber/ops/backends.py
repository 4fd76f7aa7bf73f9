"""Backend registry for the scan ops: ``selective_scan`` (v1) and ``ss2d_scan`` (SS2DScan v1).

A backend is a function with its op's contract signature that returns float32. Each op has its own
table (``ScanBackend.op`` says which), so one backend name (e.g. "cuda", "reference") can serve
several ops with a different function each:

- ``selective_scan``: ``fn(u, delta, A, B, C, D, delta_bias, delta_softplus) -> (batch, G*D, L)``
- ``ss2d_scan``: ``fn(u, delta, A, B, C, D, delta_bias, delta_softplus, layout) -> (batch, D, H, W)``
  with ``layout`` an int (0 cross, 1 bidi; plugins/ss2dScanPlugin/README.md).

Backends register here; compiled kernels (our CUDA launcher, mamba-ssm's extension) register
themselves lazily, so importing this module never loads a shared library.

Selection: an explicit name (``use_backend("cuda")``, ``set_backend``, or the environment variable
``REMAMBER_SCAN_BACKEND``), else "auto": the highest-priority backend that is available and
supports the inputs' device (``auto_devices`` where a backend narrows it). Priorities: "cuda" 20
(remamber/ops/cuda_backend.py), "triton" 15 (remamber/ops/triton_backend.py), "mamba-ssm" 10,
"reference" 0.
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

OP_SELECTIVE_SCAN = "selective_scan"
OP_SS2D_SCAN = "ss2d_scan"


@dataclass
class ScanBackend:
    name: str
    fn: ScanFn
    devices: frozenset[str]
    priority: int = 0
    description: str = ""
    # Returns None when usable, else the reason it is not (shown to users).
    unavailable_reason: Callable[[], str | None] = field(default=lambda: None)
    # Which op's table this entry belongs to (OP_SELECTIVE_SCAN or OP_SS2D_SCAN).
    op: str = OP_SELECTIVE_SCAN
    # Devices on which "auto" may pick it (None: all of ``devices``). A backend that takes a device
    # only when named (Triton's interpreter on CPU tensors: exact but very slow) leaves it out here.
    auto_devices: frozenset[str] | None = None

    def available(self) -> bool:
        return self.unavailable_reason() is None


_REGISTRY: dict[str, dict[str, ScanBackend]] = {}  # op -> name -> backend
_LOCAL = threading.local()
_ENV_VAR = "REMAMBER_SCAN_BACKEND"


def register_backend(backend: ScanBackend) -> None:
    _REGISTRY.setdefault(backend.op, {})[backend.name] = backend


def registered_backends(op: str = OP_SELECTIVE_SCAN) -> dict[str, ScanBackend]:
    return dict(_REGISTRY.get(op, {}))


def _all_names() -> set[str]:
    return {name for table in _REGISTRY.values() for name in table}


def _requested_name() -> str:
    name = getattr(_LOCAL, "name", None) or os.environ.get(_ENV_VAR) or "auto"
    return name


def set_backend(name: str) -> None:
    """Select a backend for this thread, for every op that has it ("auto" restores automatic choice)."""
    if name != "auto" and name not in _all_names():
        raise RemamberError(
            f"unknown scan backend {name!r}; registered: {sorted(_all_names())} "
            f"(set {_ENV_VAR} or use_backend() with one of those)"
        )
    if name != "auto":
        table = next(t for t in _REGISTRY.values() if name in t)
        reason = table[name].unavailable_reason()
        if reason is not None:
            raise RemamberError(f"scan backend {name!r} is not available: {reason}")
    _LOCAL.name = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    previous = getattr(_LOCAL, "name", None)
    set_backend(name)
    try:
        yield
    finally:
        _LOCAL.name = previous


def _label(op: str) -> str:
    return "selective-scan" if op == OP_SELECTIVE_SCAN else op.replace("_", "-")


def get_backend(name: str, op: str = OP_SELECTIVE_SCAN) -> ScanBackend:
    table = _REGISTRY.get(op, {})
    if name not in table:
        raise RemamberError(
            f"unknown {_label(op)} backend {name!r}; registered: {sorted(table)} "
            f"(set {_ENV_VAR} or use_backend() with one of those)"
        )
    backend = table[name]
    reason = backend.unavailable_reason()
    if reason is not None:
        raise RemamberError(f"{_label(op)} backend {name!r} is not available: {reason}")
    return backend


def resolve_backend(device_type: str, op: str = OP_SELECTIVE_SCAN) -> ScanBackend:
    """The backend that will run ``op`` on inputs that live on ``device_type``."""
    name = _requested_name()
    if name != "auto":
        backend = get_backend(name, op)
        if device_type not in backend.devices:
            raise RemamberError(
                f"{_label(op)} backend {name!r} runs on {sorted(backend.devices)}, but the inputs "
                f"are on {device_type!r}; move the inputs or choose another backend"
            )
        return backend
    candidates = [
        b for b in _REGISTRY.get(op, {}).values()
        if device_type in (b.devices if b.auto_devices is None else b.auto_devices) and b.available()
    ]
    if not candidates:
        raise RemamberError(f"no {_label(op)} backend available for device {device_type!r}")
    return max(candidates, key=lambda b: b.priority)
