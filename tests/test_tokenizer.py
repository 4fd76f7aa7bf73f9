"""Tests for remamber.tokenizer against references that do not share its code.

Why the comparisons are not circular:
- Hand-written ids, independent of any code here: "a photo of a cat" ->
  [49406, 320, 1125, 539, 320, 2368, 49407] and "dog" = 1929 are the ids widely quoted for CLIP's
  tokenizer (e.g. in the HF CLIP examples); "diagram" = 22697 (the CLIP README's example text) is
  additionally confirmed by the reference below.
- The main reference is OpenAI's own pure-Python ``SimpleTokenizer`` (open_clip/tokenizer.py, "copied
  from https://github.com/openai/CLIP"). It derives vocab and merges from the gz file itself and runs
  its own BPE loop in Python. The module under test uses a different vocab derivation (its own code)
  and a different BPE engine (the Rust ``tokenizers`` library via transformers' CLIPTokenizer). The
  reference file is executed on its own with ``spec_from_file_location``, so open_clip's package
  ``__init__`` (models, torchvision) never runs; that file imports only ftfy, numpy, regex and torch.
  (transformers 5 no longer has HF's slow pure-Python CLIPTokenizer: its ``CLIPTokenizer`` is the
  former CLIPTokenizerFast, which the module under test uses, so it cannot serve as the reference.)
  Both sides read the same gz data file; what is compared is everything built from it.
- The tokenizer-folder path is checked with a vocab.json / merges.txt that the TEST writes from the
  reference tokenizer's tables (not from the module under test).
The 20-slot layout (BOS, 18 tokens, EOS, EOS padding, mask) is assembled in the test from the
reference's BPE ids, following REMAMBER_SPEC.md section 2.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
import unicodedata
from pathlib import Path

import pytest
import torch

from remamber import tokenizer as tok
from remamber.errors import InputError, RemamberError

BOS, EOS = 49406, 49407

SENTENCES = [
    "a photo of a cat",
    "The man on the LEFT holding a red umbrella.",
    "woman's bag, 2nd from right",
    "  lots   of\twhite\nspace  ",
    "guy in blue shirt (partially hidden) next to 3 kids!!",
    "café crème brûlée",  # non-ASCII letters go through the byte-level map
    "zebra 🦓 far right",  # emoji: multi-byte UTF-8, no merges
    "it's the one they're pointing at, isn't it?",
    "",
]


@pytest.fixture(scope="module")
def reference():
    """OpenAI's SimpleTokenizer from the open_clip wheel, loaded as a standalone file."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip_torch is not installed (pip install --no-deps open_clip_torch)")
    source = Path(list(spec.submodule_search_locations)[0]) / "tokenizer.py"
    saved_env = os.environ.get("TOKENIZERS_PARALLELISM")
    stub_ftfy = importlib.util.find_spec("ftfy") is None
    if stub_ftfy:
        # ftfy (a dependency of open_clip_torch, installed --no-deps) may be absent. Its fix_text only
        # repairs mojibake and applies NFC; the sentences here are clean NFC text, so NFC alone is
        # the same cleanup for them.
        sys.modules["ftfy"] = types.SimpleNamespace(fix_text=lambda text: unicodedata.normalize("NFC", text))
    try:
        mod_spec = importlib.util.spec_from_file_location("_openai_clip_simple_tokenizer", source)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    finally:
        if stub_ftfy:
            del sys.modules["ftfy"]
    # The reference module sets this variable at import; do not leak it into other tests.
    if saved_env is None:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
    else:
        os.environ["TOKENIZERS_PARALLELISM"] = saved_env
    return module.SimpleTokenizer()


def expected_slots(bpe_ids: list[int]) -> tuple[list[int], list[int]]:
    """ReMamber's 20 slots from plain BPE ids: BOS, first 18 ids, EOS, EOS padding."""
    body = bpe_ids[:18]
    ids = [BOS] + body + [EOS]
    mask = [1] * len(ids) + [0] * (20 - len(ids))
    return ids + [EOS] * (20 - len(ids)), mask


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv(tok.ENV_VAR, raising=False)


def test_published_clip_ids():
    ids, mask = tok.tokenize(["a photo of a cat", "a diagram", "a dog"])
    assert ids.dtype == torch.int64 and mask.dtype == torch.int64
    assert ids.shape == (3, 20) and mask.shape == (3, 20)
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ids[1, :4].tolist() == [49406, 320, 22697, 49407]
    assert ids[2, :4].tolist() == [49406, 320, 1929, 49407]
    assert ids[0, 7:].tolist() == [EOS] * 13
    assert mask[0].tolist() == [1] * 7 + [0] * 13


def test_matches_openai_simple_tokenizer(reference):
    ids, mask = tok.tokenize(SENTENCES)
    for row, sentence in enumerate(SENTENCES):
        want_ids, want_mask = expected_slots(reference.encode(sentence))
        assert ids[row].tolist() == want_ids, sentence
        assert mask[row].tolist() == want_mask, sentence


def test_single_string_and_empty_string():
    ids, mask = tok.tokenize("")
    assert ids.shape == (1, 20)
    assert ids[0].tolist() == [BOS, EOS] + [EOS] * 18
    assert mask[0].tolist() == [1, 1] + [0] * 18


def test_truncation_keeps_eos_in_last_slot(reference):
    long_sentence = "the tall man standing behind the small white dog near the old wooden fence on the far left side"
    bpe = reference.encode(long_sentence)
    assert len(bpe) > 18  # the case under test
    ids, mask = tok.tokenize(long_sentence)
    assert ids[0].tolist() == [BOS] + bpe[:18] + [EOS]
    assert mask[0].tolist() == [1] * 20


def test_exactly_18_and_19_tokens(reference):
    words18 = " ".join(["cat"] * 18)
    words19 = " ".join(["cat"] * 19)
    assert len(reference.encode(words18)) == 18 and len(reference.encode(words19)) == 19
    ids, mask = tok.tokenize([words18, words19])
    assert ids[0].tolist() == [BOS] + [2368] * 18 + [EOS]
    assert ids[1].tolist() == [BOS] + [2368] * 18 + [EOS]
    assert mask.tolist() == [[1] * 20, [1] * 20]


def test_no_ftfy_or_html_unescape_like_clip_tokenizer_fast(reference):
    """ReMamber used CLIPTokenizerFast, which does not run ftfy/html.unescape (see module docstring).

    Reference: OpenAI's BPE with its cleanup reduced to whitespace collapsing + lower-casing, which is
    what the fast tokenizer's normaliser does for ASCII text.
    """
    text = "Fish &amp; Chips"
    with_ftfy = reference.encode(text)
    reference_no_fix = type(reference)()
    reference_no_fix.clean_fn = lambda x: " ".join(x.split()).lower()
    without = reference_no_fix.encode(text)
    assert with_ftfy != without  # the texts where the two conventions differ
    ids, _ = tok.tokenize(text)
    assert ids[0].tolist() == expected_slots(without)[0]


def test_tokenizer_folder_written_by_the_test(reference, tmp_path):
    """A HF-format folder (vocab.json + merges.txt) built from the reference tokenizer's own tables."""
    vocab = dict(reference.encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    merges = sorted(reference.bpe_ranks, key=reference.bpe_ranks.get)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )
    ids, mask = tok.tokenize(SENTENCES, tokenizer_path=tmp_path)
    for row, sentence in enumerate(SENTENCES):
        want_ids, want_mask = expected_slots(reference.encode(sentence))
        assert ids[row].tolist() == want_ids, sentence
        assert mask[row].tolist() == want_mask


def test_save_pretrained_round_trip_and_env_var(tmp_path, monkeypatch):
    """transformers 5 save_pretrained writes tokenizer.json only; that folder must load too (via the env var)."""
    built = tok._load_tokenizer(tok._resolve_source(None))
    built.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    monkeypatch.setenv(tok.ENV_VAR, str(tmp_path))
    assert tok._resolve_source(None) == str(tmp_path.resolve())
    ids, mask = tok.tokenize(SENTENCES)
    monkeypatch.delenv(tok.ENV_VAR)
    want_ids, want_mask = tok.tokenize(SENTENCES)
    assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)


def test_gz_file_path_is_accepted():
    gz = tok.find_clip_bpe_file()
    assert gz is not None and gz.name == "bpe_simple_vocab_16e6.txt.gz"
    ids, _ = tok.tokenize("a photo of a cat", tokenizer_path=gz)
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["ok", 5], [], {"a": 1}])
def test_non_string_input_is_rejected(bad):
    with pytest.raises(InputError):
        tok.tokenize(bad)


def test_missing_vocabulary_names_both_options(monkeypatch):
    monkeypatch.setattr(tok, "find_clip_bpe_file", lambda: None)
    with pytest.raises(RemamberError) as info:
        tok.tokenize("a cat")
    message = str(info.value)
    assert tok.ENV_VAR in message and "tokenizer_path" in message
    assert "pip install --no-deps open_clip_torch" in message


def test_bad_tokenizer_paths(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="does not exist"):
        tok.tokenize("a cat", tokenizer_path=tmp_path / "nowhere")
    monkeypatch.setenv(tok.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match=tok.ENV_VAR):
        tok.tokenize("a cat")
    monkeypatch.delenv(tok.ENV_VAR)
    with pytest.raises(InputError, match="vocab.json"):
        tok.tokenize("a cat", tokenizer_path=tmp_path)  # empty folder
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0}), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n", encoding="utf-8")
    with pytest.raises(InputError, match="49406"):
        tok.tokenize("a cat", tokenizer_path=tmp_path)  # not CLIP's vocabulary


def test_open_clip_package_is_never_imported():
    code = (
        "import sys\n"
        "from remamber.tokenizer import tokenize\n"
        "tokenize('a cat')\n"
        "assert not [m for m in sys.modules if m.startswith('open_clip')], 'open_clip was imported'\n"
        "assert 'torchvision' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != tok.ENV_VAR}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
