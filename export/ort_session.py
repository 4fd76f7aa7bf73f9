"""ONNX Runtime sessions for graphs with ``remamber::SelectiveScan`` nodes.

The custom-op library comes from ``remamber.native.ort_session_options`` (REMAMBER_ORT_LIB or the
library built by ``bash scripts/build_native.sh``); a missing library is a NativeLibraryError
that names the build command.
"""

from __future__ import annotations

from pathlib import Path

from remamber.errors import InputError, NativeLibraryError


def make_session(onnx_path, providers=None, threads=None):
    """An ``onnxruntime.InferenceSession`` for ``onnx_path`` with the remamber custom ops registered.

    providers: ORT execution providers (default: CPUExecutionProvider); threads: intra-op threads.
    """
    import onnxruntime as ort

    from remamber import native

    path = Path(onnx_path)
    if not path.is_file():
        raise InputError(f"ONNX file {path} does not exist; create it with `remamber-deploy export`")
    options = native.ort_session_options(threads=threads)
    options.log_severity_level = 3  # warnings from ORT's fp16 cast insertion are expected noise
    providers = list(providers) if providers else ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    unknown = [p for p in providers if (p[0] if isinstance(p, tuple) else p) not in available]
    if unknown:
        raise InputError(f"ONNX Runtime providers {unknown} are not available here (available: {available})")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own exception classes (Fail, InvalidGraph, ...)
        msg = str(exc)
        if "remamber" in msg or "SelectiveScan" in msg:
            raise NativeLibraryError(
                f"onnxruntime could not create a session for {path}: {msg}; check that the custom-op "
                f"library ({native.library_path('ort')}) matches this graph (rebuild with "
                f"`{native.BUILD_COMMAND}`)"
            ) from exc
        raise InputError(f"onnxruntime could not load {path}: {msg}") from exc
