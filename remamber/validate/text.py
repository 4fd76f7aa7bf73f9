"""Referring sentences and the text files they come from.

A sentence that is empty once normalised (whitespace, control and format characters removed) gives
the model no expression at all: it used to run and return a mask anyway. Here it is refused, naming
which sentence. Truncation to ReMamber's 18 word-piece slots is not an error (the official model
truncates too) but it is reported, with how many words were kept, by ``remamber.tokenizer``.
Sentence files must be UTF-8; a Latin-1 (or other) file is refused with the line and the fix.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Sequence

from ..errors import InputError

MAX_CHARS = 10_000  # far beyond 18 tokens; a whole document passed as --text is a mistake


def normalise(text: str) -> str:
    """NFC, without control/format/unassigned characters, whitespace collapsed and stripped."""
    text = unicodedata.normalize("NFC", text)
    kept = "".join(" " if ch.isspace() else ch for ch in text if unicodedata.category(ch)[0] != "C" or ch.isspace())
    return " ".join(kept.split())


def check_text(text, what: str = "sentence") -> str:
    """One referring expression: a str with something left after normalisation."""
    if not isinstance(text, str):
        raise InputError(f"{what} is a {type(text).__name__}, not a str: pass the referring expression as text")
    if len(text) > MAX_CHARS:
        raise InputError(f"{what} is {len(text):,} characters long; a referring expression is a short phrase "
                         "(ReMamber reads its first 18 word pieces): pass the sentence, not a document")
    if not normalise(text):
        raise InputError(
            f"{what} {text!r} is empty once whitespace and control characters are removed: ReMamber needs a "
            "referring expression, e.g. \"the cat on the left\""
        )
    return text


def check_texts(texts: Sequence, names: Sequence[str] | None = None) -> list[str]:
    """Every sentence of a batch; ``names`` (same length) say where each came from."""
    out = []
    for i, text in enumerate(texts):
        where = f"sentence for {names[i]}" if names is not None else f"sentence {i}"
        out.append(check_text(text, where))
    return out


def read_text_file(path, what: str = "text file") -> str:
    """A UTF-8 text file (a BOM is accepted); any other encoding is refused with the fix."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read ({exc.strerror or exc}); check the path") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{what} {path} is not UTF-8 (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > utf8.txt`"
        ) from None
