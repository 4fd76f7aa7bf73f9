"""Input files and output paths, checked before any slow work.

Inputs: exist, are files (not folders), are readable. Outputs: not a folder, in a folder that exists
or can be created and is writable, never the same file as any input of the command (compared with
``os.path.samefile`` when both exist, else by resolved path, so links and ``./x`` spellings are caught),
and never an existing file of ANOTHER kind unless the user passes ``--force`` (an engine written over
an ONNX file, a timing cache over random bytes). Kinds are sniffed from the first bytes, not from the
name, because a clobbered file's name is exactly what cannot be trusted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import InputError

# kind -> human description, for messages
KINDS = {
    "onnx": "an ONNX model",
    "engine": "a TensorRT engine",
    "timing-cache": "a TensorRT timing cache",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "json": "a JSON file",
    "npy": "a NumPy .npy array",
    "zip": "a zip archive (e.g. a PyTorch checkpoint)",
    "pickle": "a pickle (e.g. an old PyTorch checkpoint)",
    "text": "a text file",
    "empty": "an empty file",
    "unknown": "a file of unknown content",
}
ENGINE_MAGICS = (b"ftrt", b"vtrt")  # TensorRT / TensorRT-RTX serialized engines
TIMING_CACHE_MAGICS = (b"ptrt",)    # TensorRT-RTX timing cache (full TensorRT: checked by deserializing)


def sniff(path: str | os.PathLike) -> str:
    """The kind of an existing file, from its first bytes (see KINDS)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "empty"
    if head[:4] in ENGINE_MAGICS:
        return "engine"
    if head[:4] in TIMING_CACHE_MAGICS:
        return "timing-cache"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    # ModelProto: field 1 (ir_version, varint) first, a small version number.
    if head[0] == 0x08 and 1 <= head[1] <= 20 and len(head) > 2 and head[2] in (0x12, 0x1A, 0x22, 0x2A, 0x3A, 0x42):
        return "onnx"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
        if len(head) >= 4:  # a multi-byte character cut at the end of the sample
            try:
                text = head[:-3].decode("utf-8")
            except UnicodeDecodeError:
                pass
    if text is not None and "\x00" not in text:
        return "json" if text.lstrip()[:1] in ("{", "[") else "text"
    return "unknown"


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_input_file(path, what: str, fix: str = "check the path") -> Path:
    """An existing, readable regular file."""
    if path is None:
        raise InputError(f"{what} is missing; {fix}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist; {fix}")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file; {fix}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} is not readable (permission denied); fix its permissions or copy it")
    return path


def check_input_dir(path, what: str, fix: str = "check the path") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{what} {path} is not a folder; {fix}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"{what} {path} is not readable (permission denied); fix its permissions")
    return path


def _writable_folder(folder: Path, what: str, target: Path) -> None:
    probe = folder
    while not probe.exists():  # the nearest existing ancestor must let us create the rest
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(f"{what} {target}: {probe} is a file, so no folder can be made there; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK) or not _can_create_in(probe):
        raise InputError(f"{what} {target}: cannot write in {probe} (permission denied or read-only); "
                         "choose a writable location")


def _can_create_in(folder: Path) -> bool:
    """Really create (and remove) a file: os.access says yes to root on read-only or virtual file systems."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_file(path, kind: str, what: str = "output", *, inputs: Iterable = (), force: bool = False,
                      also_ok: Iterable[str] = ()) -> Path:
    """An output file about to be (re)written with content of ``kind`` (a key of KINDS).

    Refused: a folder; an unwritable location; the same file as any of ``inputs``; an existing file
    whose sniffed kind is neither ``kind``, ``also_ok`` nor empty (unless ``force``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    for given in inputs:
        if given is not None and _same(path, Path(given)):
            raise InputError(
                f"{what} {path} is the same file as the input {given}: writing it would destroy the input; "
                "choose another output name"
            )
    _writable_folder(path.parent if str(path.parent) else Path("."), what, path)
    if path.exists():
        if not os.access(path, os.W_OK) and not os.access(path.parent, os.W_OK):
            raise InputError(f"{what} {path} exists and cannot be replaced (permission denied); choose another path")
        if not force:
            try:
                found = sniff(path)
            except OSError as exc:
                raise InputError(f"{what} {path} exists but cannot be read ({exc.strerror}); choose another path") from None
            if found not in (kind, "empty", *also_ok):
                raise InputError(
                    f"{what} {path} already exists and holds {KINDS[found]}, not {KINDS[kind]}; refusing to overwrite "
                    "it: choose another path, delete it, or pass --force"
                )
    return path


def check_output_dir(path, what: str = "output folder", *, inputs: Iterable = ()) -> Path:
    """A folder that exists (and is writable) or can be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder; give a folder path")
    for given in inputs:
        if given is not None and _same(path, Path(given)):
            raise InputError(f"{what} {path} is the input {given}; choose another folder")
    if path.exists():
        if not os.access(path, os.W_OK | os.X_OK) or not _can_create_in(path):
            raise InputError(f"{what} {path} is not writable (permission denied or read-only); choose a writable folder")
    else:
        _writable_folder(path, what, path)
    return path
