"""The process environment a PyTriton server needs here, set up by ``serve`` itself.

Two facts about nvidia-pytriton 0.7.0 (Triton Inference Server 2.51) that users must never meet as
a failed model load (TOOLCHAIN.md, "Triton Inference Server on the CPU"):

* Its Python-backend stub links ``libpython3.X.so`` through the dynamic loader. With a pyenv (or any
  non-system) interpreter the loader finds the system's libpython first, another patch release, and
  the stub dies with "'_thread.RLock' object has no attribute '_recursion_count'". The interpreter's
  own ``LIBDIR`` must come first in ``LD_LIBRARY_PATH`` of the server process.
* The stub was built against NumPy 1.x: under NumPy 2 it reads every tensor as empty. PyTriton runs the
  stub in "the Python environment of the backend", which it takes to be ``sys.exec_prefix``. When this
  environment has NumPy 2 (the project pins it), the stub gets its own small environment with NumPy 1
  and pyzmq (``serve/stub-requirements.txt``; ``scripts/setup.sh`` creates it), and PyTriton is pointed
  at it. The stub only relays tensors between Triton and this process, so nothing else goes there.

Both are applied before the server process starts (PyTriton copies ``os.environ`` when it launches
``tritonserver``); this process's own imports are unaffected.
"""

from __future__ import annotations

import os
import socket
import sys
import sysconfig
from pathlib import Path

from remamber.errors import RemamberError

STUB_ENV_VAR = "REMAMBER_TRITON_STUB_ENV"
STUB_REQUIREMENTS = Path(__file__).with_name("stub-requirements.txt")
DEFAULT_STUB_ENV = Path(sys.prefix) / "triton-stub-env"
LOOPBACK = "127.0.0.1"


class ServeSetupError(RemamberError):
    """PyTriton / tritonclient missing, or the Python-backend stub environment not created."""


def require_pytriton():
    """Import PyTriton, or say how to install it (the optional extra ``serve``)."""
    try:
        import pytriton.triton  # noqa: F401
        import tritonclient.grpc  # noqa: F401
    except ImportError as exc:
        raise ServeSetupError(
            f"Triton serving needs nvidia-pytriton and tritonclient ({exc.name or exc} is missing): "
            "pip install 'remamber-deploy[serve]' (with scripts/constraints-cpu.txt), or run bash scripts/setup.sh"
        ) from None


def interpreter_libdir() -> str | None:
    """The folder holding this interpreter's libpython (None for a static build without one)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if libdir and ldlibrary.endswith(".so") and (Path(libdir) / ldlibrary).exists():
        return libdir
    if libdir and list(Path(libdir).glob("libpython3*.so*")):
        return libdir
    return None


def _numpy_major() -> int:
    import numpy

    return int(numpy.__version__.split(".")[0])


def stub_environment() -> Path:
    """The environment the Python-backend stub runs in: this one under NumPy 1, else the stub env."""
    if _numpy_major() < 2:
        return Path(sys.exec_prefix)
    env = Path(os.environ.get(STUB_ENV_VAR) or DEFAULT_STUB_ENV)
    python = env / "bin" / "python3"
    if not python.exists() or not list(env.glob("lib/python3*/site-packages/numpy")):
        raise ServeSetupError(
            f"the Triton Python-backend stub environment {env} is missing: PyTriton's stub needs NumPy 1 and "
            f"this environment has NumPy 2. Create it with: {sys.executable} -m venv --without-pip {env} && "
            f"{sys.executable} -m pip --python {python} install -r {STUB_REQUIREMENTS} "
            f"(scripts/setup.sh does this), or point {STUB_ENV_VAR} at such an environment"
        )
    return env


def prepare_server_environment() -> dict[str, str]:
    """Set LD_LIBRARY_PATH and the stub environment for the server PyTriton will start; returns what was set."""
    import pytriton.server.triton_server as triton_server

    applied: dict[str, str] = {}
    libdir = interpreter_libdir()
    if libdir:
        parts = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *parts])
        applied["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    env = stub_environment()
    if env != Path(sys.exec_prefix):
        # PyTriton asks this function for the stub's environment (it puts <env>/bin first on the server's
        # PATH, where the embedded interpreter finds its prefix); it has no public option for it.
        triton_server.get_triton_python_backend_python_env = lambda: env
    applied["python_backend_env"] = str(env)
    return applied


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` now (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
