"""Atomic output files: write under a temporary name in the target folder, rename when whole.

A crash, Ctrl-C or error never leaves a partial ONNX/engine/sidecar under the final name. For an
ONNX file with external data, both files are written into a private temporary folder beside the
target under their FINAL names (the .onnx file records the data file's relative name), then the
data file is renamed into place first and the .onnx last, so a visible .onnx always has its data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates mode 0600; the finished file gets a normal file's mode.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(final: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(final)


def write_text_atomic(final: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(final, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a private temporary folder beside ``final``; the caller writes ``<folder>/<final.name>``
    (plus any side files such as external data). On success every file in the folder is moved to
    ``final.parent``, side files first and ``final.name`` last."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmpdir", dir=final.parent))
    try:
        yield tmp_dir
        main = tmp_dir / final.name
        if not main.exists():
            raise FileNotFoundError(f"atomic_folder: {main} was not written")
        for side in sorted(p for p in tmp_dir.iterdir() if p.name != final.name):
            os.replace(side, final.parent / side.name)
        os.replace(main, final)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
