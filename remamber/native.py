"""Locate and load the compiled remamber::SelectiveScan libraries.

Four libraries come out of the root CMakeLists.txt (``bash scripts/build_native.sh``), installed
into ``remamber/lib/``:

- ``ort``:  libremamber_ort_ops.so     ONNX Runtime custom-op library (RegisterCustomOps)
- ``trt``:  libremamber_trt_plugin.so  TensorRT / TensorRT-RTX IPluginV3 plugin (getCreators)
- ``cuda``: libremamber_scan_cuda.so   the CUDA kernel behind a C ABI (remamberSelectiveScanForward)
- ``cpu``:  libremamber_cpu_ops.so     both ops' CPU kernels, forward and backward, behind a C ABI (training)

Users who keep them elsewhere set REMAMBER_ORT_LIB, REMAMBER_TRT_PLUGIN_LIB, REMAMBER_CUDA_LIB or REMAMBER_CPU_LIB to
the file. ``remamber-deploy native`` prints what was found.
"""

from __future__ import annotations

import argparse
import os
import pathlib

from .errors import NativeLibraryError

BUILD_COMMAND = "bash scripts/build_native.sh"

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent

# kind -> (file name, environment override, what it is)
LIBRARIES: dict[str, tuple[str, str, str]] = {
    "ort": ("libremamber_ort_ops.so", "REMAMBER_ORT_LIB", "ONNX Runtime custom-op library"),
    "trt": ("libremamber_trt_plugin.so", "REMAMBER_TRT_PLUGIN_LIB", "TensorRT plugin library"),
    "cuda": ("libremamber_scan_cuda.so", "REMAMBER_CUDA_LIB", "CUDA scan kernel library"),
    "cpu": ("libremamber_cpu_ops.so", "REMAMBER_CPU_LIB", "CPU scan kernel library (forward and backward)"),
}


def _search_dirs() -> list[pathlib.Path]:
    # The install folder first, then a build tree left by a plain `cmake --build build`.
    return [_PACKAGE_DIR / "lib", _REPO_ROOT / "build"]


def library_path(kind: str) -> pathlib.Path:
    """Path of a compiled library: kind is "ort", "trt" or "cuda".

    Raises NativeLibraryError naming the searched paths and the build command when it is missing.
    """
    if kind not in LIBRARIES:
        raise NativeLibraryError(f"unknown native library kind {kind!r}; expected one of {sorted(LIBRARIES)}")
    name, env_var, what = LIBRARIES[kind]
    override = os.environ.get(env_var)
    if override:
        path = pathlib.Path(override).expanduser()
        if path.is_file():
            return path.resolve()
        raise NativeLibraryError(
            f"{env_var}={override} does not name a file; point it at {name} or unset it to use the "
            f"library built by `{BUILD_COMMAND}`"
        )
    searched = [d / name for d in _search_dirs()]
    for path in searched:
        if path.is_file():
            return path
    raise NativeLibraryError(
        f"the {what} {name} was not found (searched: {', '.join(str(p) for p in searched)}); "
        f"build it with `{BUILD_COMMAND}` from the repository root, or set {env_var} to its path"
    )


def ort_session_options(threads: int | None = None):
    """onnxruntime.SessionOptions with the remamber custom-op library registered.

    threads: intra-op threads (the SelectiveScan CPU kernel runs on this pool); None keeps ORT's default.
    """
    import onnxruntime as ort

    path = library_path("ort")
    options = ort.SessionOptions()
    if threads is not None:
        if int(threads) < 0:
            raise NativeLibraryError(f"threads must be >= 0 (0 = ORT default), got {threads}")
        options.intra_op_num_threads = int(threads)
    try:
        options.register_custom_ops_library(str(path))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise NativeLibraryError(
            f"onnxruntime could not load {path}: {exc}; rebuild it with `{BUILD_COMMAND}`"
        ) from exc
    return options


# What TensorRT looks up in a plugin library (IPluginRegistry::loadLibrary / trtexec --dynamicPlugins).
PLUGIN_ENTRY_POINTS = ("getCreators", "getPluginCreators")


def diagnose_library(path, symbols) -> str:
    """Why a shared library may have been refused, found by loading it ourselves: the loader's own
    error (not a shared library, wrong architecture, missing dependency), or the entry points it lacks.
    TensorRT-RTX logs nothing when it refuses a library, so this is the only reason the user gets."""
    import ctypes

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if head != b"\x7fELF":
        return "it is not a shared library (no ELF header): the file is something else"
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return f"the dynamic loader cannot load it ({exc})"
    present = [name for name in symbols if hasattr(lib, name)]
    if not present:
        return (f"it exports none of {', '.join(symbols)}, so it is not a TensorRT plugin library "
                "(e.g. the ONNX Runtime custom-op library)")
    return (f"it loads and exports {', '.join(present)}, but TensorRT did not accept it (built against another "
            "TensorRT major version?)")


def load_trt_plugin(trt_module):
    """Register the SelectiveScan plugin in a ``tensorrt`` or ``tensorrt_rtx`` module's registry.

    Returns the plugin registry. Loading twice is harmless (the registry keeps one copy).
    """
    path = library_path("trt")
    registry = trt_module.get_plugin_registry()
    loaded = getattr(load_trt_plugin, "_loaded", {})
    key = (trt_module.__name__, str(path))
    if key in loaded:
        return registry
    try:
        handle = registry.load_library(str(path))
    except Exception as exc:
        raise NativeLibraryError(
            f"{trt_module.__name__} could not load the plugin library {path}: {exc}; rebuild it with `{BUILD_COMMAND}`"
        ) from exc
    if handle is None:
        raise NativeLibraryError(
            f"{trt_module.__name__} refused the plugin library {path}: {diagnose_library(path, PLUGIN_ENTRY_POINTS)}; "
            f"rebuild it with `{BUILD_COMMAND}`, or point {LIBRARIES['trt'][1]} at libremamber_trt_plugin.so"
        )
    loaded[key] = handle  # keep the handle alive: dropping it may unload the library
    load_trt_plugin._loaded = loaded
    return registry


# ---- `remamber-deploy native` -----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kind", choices=sorted(LIBRARIES), action="append",
        help="only report this library (repeatable); default: all",
    )


def run(args) -> int:
    kinds = args.kind or list(LIBRARIES)
    missing = 0
    for kind in kinds:
        name, env_var, what = LIBRARIES[kind]
        try:
            path = library_path(kind)
            print(f"{kind:5s} {what}: {path}")
        except NativeLibraryError as exc:
            missing += 1
            print(f"{kind:5s} {what}: MISSING - {exc}")
    if missing:
        print(f"\nbuild the missing libraries with: {BUILD_COMMAND}")
    return 1 if missing else 0
