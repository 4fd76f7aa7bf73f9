"""CLIP BPE tokenisation to the 20 token slots ReMamber was trained with, offline.

ReMamber tokenises inside its forward pass with HF ``CLIPTokenizerFast`` from
``openai/clip-vit-large-patch14`` called as ``padding='max_length', truncation=True, max_length=20``
(REMAMBER_SPEC.md section 2). For deployment the tokenizer runs outside the model and gives

    input_ids      (B, 20) int64: BOS 49406, up to 18 BPE ids, EOS 49407, then padding with 49407
    attention_mask (B, 20) int64: 1 for BOS..EOS, 0 for the padding slots

Where the vocabulary comes from (first match wins; nothing is downloaded):
  1. ``tokenizer_path`` argument, else the ``REMAMBER_TOKENIZER_PATH`` environment variable: a folder
     in HF format, either ``vocab.json`` + ``merges.txt`` (the files of the hub repo) or a
     ``tokenizer.json`` (what ``CLIPTokenizer.save_pretrained`` writes in transformers 5); a path to a
     CLIP ``bpe_simple_vocab_16e6.txt.gz`` file is accepted too.
  2. ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip_torch`` wheel. The file is
     located with ``importlib.util.find_spec`` (which does not run the package: importing open_clip
     would pull its model code and torchvision). The vocab and merges are derived from it exactly as
     OpenAI's CLIP does (byte-to-unicode table, merges = lines[1:48895], vocab = 256 byte symbols +
     the same with ``</w>`` + joined merges + the two special tokens = 49408 entries).

Why ``transformers.CLIPTokenizer`` for the BPE: in transformers 5 that class *is* the former
``CLIPTokenizerFast`` (tokenizers-library BPE with CLIP's normaliser, pre-tokeniser and
BOS/EOS post-processor), i.e. the same code path ReMamber used. Only the vocab and merges come from
the local files; the pipeline is the class's own, so a folder's tokenizer.json settings other than
its BPE vocab/merges are not used.

Text cleanup, and the difference from OpenAI's tokenizer: the fast tokenizer applies Unicode NFC,
collapses every whitespace run to one space and lower-cases. It does NOT run ``ftfy.fix_text`` or
``html.unescape`` as OpenAI's pure-Python tokenizer (and HF's old slow ``CLIPTokenizer`` when ftfy was
installed) does. ReMamber's training used the fast tokenizer, so this module deliberately does not
use ftfy even when it is installed: a sentence with mojibake or HTML entities (``"caf&amp;e"``) gets
the ids ReMamber saw in training, which can differ from OpenAI CLIP's ids for that text. For ordinary
text both give identical ids. One more fast-tokenizer trait kept as is: the literal strings
``<|startoftext|>`` / ``<|endoftext|>`` inside a sentence are read as the special tokens.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch

from .errors import InputError, RemamberError

MAX_LENGTH = 20  # baked into ReMamber's weights: ImageTextCorr's Conv2d(20 -> 512)
BOS_ID = 49406
EOS_ID = 49407
PAD_ID = EOS_ID  # openai/clip-vit-large-patch14 pads with <|endoftext|>
VOCAB_SIZE = 49408
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"

ENV_VAR = "REMAMBER_TOKENIZER_PATH"
CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 49152 - 256 - 2 merges of the file (line 0 is a version header).
_NUM_MERGES = 49152 - 256 - 2
_INSTALL_HINT = "pip install --no-deps open_clip_torch"


class TruncationWarning(UserWarning):
    """A sentence longer than ReMamber's 18 word pieces was cut (the model never sees the rest)."""


def tokenize(
    texts: str | Sequence[str], tokenizer_path: str | os.PathLike | None = None,
    on_truncate: Callable[[str], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise one sentence or a list of sentences to ReMamber's 20 slots.

    Returns ``(input_ids, attention_mask)``, both int64 tensors of shape (B, 20). A single string gives
    B = 1. Sentences longer than 18 BPE tokens are cut to their first 18 tokens, and EOS stays in slot 19,
    as the official tokenizer call does; each cut is reported (how many words were kept) through
    ``on_truncate(message)``, by default as a ``TruncationWarning``. This function tokenises faithfully,
    the empty string included; entry points refuse empty sentences first
    (``remamber.validate.text.check_texts``).
    """
    batch = _check_texts(texts)
    tokenizer = _load_tokenizer(_resolve_source(tokenizer_path))
    for message in truncation_messages(tokenizer, batch):
        if on_truncate is not None:
            on_truncate(message)
        else:
            warnings.warn(message, TruncationWarning, stacklevel=2)
    encoded = tokenizer(
        batch, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    input_ids = encoded["input_ids"].to(torch.int64)
    attention_mask = encoded["attention_mask"].to(torch.int64)
    # The model needs exactly 20 slots; guard against a tokenizer that ignored max_length.
    if input_ids.shape != (len(batch), MAX_LENGTH) or attention_mask.shape != input_ids.shape:
        raise RemamberError(
            f"tokenizer returned shape {tuple(input_ids.shape)} instead of ({len(batch)}, {MAX_LENGTH}); "
            "check the tokenizer files"
        )
    return input_ids, attention_mask


def truncation_messages(tokenizer, batch: list[str]) -> list[str]:
    """One message per sentence longer than the 18 word-piece slots: how many words were kept."""
    room = MAX_LENGTH - 2  # BOS and EOS take two slots
    def count(text) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    lengths = [len(ids) for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]]
    messages = []
    for index, (text, length) in enumerate(zip(batch, lengths)):
        if length <= room:
            continue
        words = text.split()
        lo, hi = 0, len(words)  # the longest prefix of whole words that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(" ".join(words[:mid])) <= room:
                lo = mid
            else:
                hi = mid - 1
        kept = " ".join(words[:lo])
        partial = lo < len(words) and count(kept) < room  # the next word's first pieces fill the rest
        where = f"sentence {index} " if len(batch) > 1 else "sentence "
        messages.append(
            f"{where}has {length} word pieces but ReMamber reads only the first {room}: {lo} of {len(words)} words "
            f"kept whole ({kept!r}{', plus part of the next' if partial else ''}); the rest is ignored, "
            "so put what identifies the object first"
        )
    return messages


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (list, tuple)):
        if not texts:
            raise InputError("no sentences given to tokenize: pass a string or a non-empty list of strings")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(
                    f"sentence {i} is a {type(text).__name__}, not a str: pass the referring expressions as strings"
                )
        return list(texts)
    raise InputError(
        f"texts is a {type(texts).__name__}: pass a string or a list of strings (the referring expressions)"
    )


def find_clip_bpe_file() -> Path | None:
    """The CLIP BPE vocabulary shipped in the open_clip_torch wheel, or None when it is not installed.

    ``find_spec`` on a top-level package finds its folder without executing its ``__init__``.
    """
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / CLIP_BPE_FILE
        if candidate.is_file():
            return candidate
    return None


def _resolve_source(tokenizer_path) -> str:
    """Absolute path of the vocabulary source: argument, then env var, then the open_clip wheel."""
    if tokenizer_path is not None:
        origin, raw = "tokenizer_path", tokenizer_path
    elif os.environ.get(ENV_VAR):
        origin, raw = f"environment variable {ENV_VAR}", os.environ[ENV_VAR]
    else:
        bpe = find_clip_bpe_file()
        if bpe is None:
            raise RemamberError(
                "no CLIP tokenizer vocabulary found. Either point tokenizer_path or the environment variable "
                f"{ENV_VAR} at a local tokenizer folder (vocab.json + merges.txt, or tokenizer.json, e.g. a copy "
                "of openai/clip-vit-large-patch14 or the output of CLIPTokenizer.save_pretrained), or install "
                f"the CLIP BPE vocabulary file with: {_INSTALL_HINT}"
            )
        return str(bpe.resolve())
    path = Path(os.fspath(raw)).expanduser()
    if not path.exists():
        raise InputError(
            f"tokenizer path {str(path)!r} (from {origin}) does not exist: give a folder with vocab.json + merges.txt "
            f"(or tokenizer.json), or unset it to use the vocabulary of open_clip_torch ({_INSTALL_HINT})"
        )
    return str(path.resolve())


@lru_cache(maxsize=4)
def _load_tokenizer(source: str):
    """Build (once per source) a transformers CLIPTokenizer from the local vocab and merges."""
    vocab, merges = _read_vocab_and_merges(Path(source))
    for token, expected in ((BOS_TOKEN, BOS_ID), (EOS_TOKEN, EOS_ID)):
        if vocab.get(token) != expected:
            raise InputError(
                f"tokenizer vocabulary from {source} maps {token} to {vocab.get(token)}, not {expected}: "
                "ReMamber needs the CLIP vocabulary of openai/clip-vit-large-patch14"
            )
    # Imported here: transformers takes over a second to import, and only tokenisation needs it.
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=77,
    )


def _read_vocab_and_merges(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    if path.is_file():
        if path.name.endswith(".gz"):
            return clip_vocab_from_bpe_gz(path)
        raise InputError(
            f"tokenizer path {str(path)!r} is a file: give the tokenizer folder (vocab.json + merges.txt or "
            f"tokenizer.json) or a CLIP {CLIP_BPE_FILE}"
        )
    vocab_file, merges_file, json_file = path / "vocab.json", path / "merges.txt", path / "tokenizer.json"
    try:
        if vocab_file.is_file() and merges_file.is_file():
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
            merges = _parse_merge_lines(merges_file.read_text(encoding="utf-8").split("\n"))
            return vocab, merges
        if json_file.is_file():
            model = json.loads(json_file.read_text(encoding="utf-8")).get("model", {})
            if model.get("type") != "BPE" or "vocab" not in model or "merges" not in model:
                raise InputError(f"{json_file} does not hold a BPE tokenizer: ReMamber needs CLIP's BPE vocabulary")
            merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
            return dict(model["vocab"]), merges
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the tokenizer files in {path}: {exc}; replace them with intact copies") from exc
    raise InputError(
        f"tokenizer folder {str(path)!r} has neither vocab.json + merges.txt nor tokenizer.json: save one with "
        "CLIPTokenizer.save_pretrained, copy openai/clip-vit-large-patch14's files there, or use the vocabulary "
        f"of open_clip_torch ({_INSTALL_HINT})"
    )


def _parse_merge_lines(lines: list[str]) -> list[tuple[str, str]]:
    merges = []
    for line in lines:
        if not line or line.startswith("#version"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"bad line in merges.txt: {line!r} (expected two symbols separated by a space)")
        merges.append((parts[0], parts[1]))
    return merges


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from the 256 byte values to printable unicode symbols.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to chr(256 + n) in byte order.
    The insertion order (printable bytes first) is the order of the first 256 vocabulary entries.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def clip_vocab_from_bpe_gz(path: str | os.PathLike) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab (token -> id) and ranked merges from CLIP's ``bpe_simple_vocab_16e6.txt.gz``, as CLIP builds them."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"cannot read the CLIP BPE file {path}: {exc}; reinstall it with: {_INSTALL_HINT}") from exc
    merge_lines = lines[1 : _NUM_MERGES + 1]
    if len(merge_lines) != _NUM_MERGES:
        raise InputError(
            f"CLIP BPE file {path} has {len(merge_lines)} merges, expected {_NUM_MERGES}: "
            f"reinstall it with: {_INSTALL_HINT}"
        )
    merges = _parse_merge_lines(merge_lines)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise InputError(f"CLIP BPE file {path} gives {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab, merges
