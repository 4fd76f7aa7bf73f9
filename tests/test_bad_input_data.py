"""Bad data of every kind gets a clear error (or a documented conversion), never a silent answer:
numeric options, baselines, checkpoints, images, text. Expected values are worked out by hand from
the documented rules (module docstrings of remamber.validate.* and remamber.imageio)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from remamber.cli import main
from remamber.errors import CheckpointError, InputError


def cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


# ---- numeric options ---------------------------------------------------------------------------------

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize("argv,message", [
    (["build-engine", "x.onnx", "--batch", "0"], "--batch must be at least 1, got 0"),
    (["build-engine", "x.onnx", "--batch", "4,2,1"], "--batch '4,2,1' must satisfy MIN <= OPT <= MAX"),
    (["build-engine", "x.onnx", "--batch", "1,2"], "must be N or MIN,OPT,MAX"),
    (["build-engine", "x.onnx", "--workspace", "0"], "--workspace must be at least 1"),
    (["scan-bench", "--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["scan-bench", "--warmup", "-1"], "--warmup must be at least 0"),
    (["scan-bench", "--device", "banana"], "--device 'banana' is not a device; use cpu, cuda or cuda:N"),
    (["scan-bench", "--device", "cuda" if NO_GPU else "cuda:999"],
     "no CUDA GPU is visible" if NO_GPU else "CUDA device(s) are visible"),
    (["scan-bench", "--resolutions", "480", "100"], "100 is not a positive multiple of 32"),
    (["predict", "--size", "2147483648"], "--size 2147483648 is above the supported maximum 4096"),
    (["predict", "--size", "500"], "use e.g. 480 or 512"),
    (["export", "--resolution", "2147483648"], "above the supported maximum"),
    (["export", "--static-batch", "0"], "--static-batch must be at least 1"),
    (["compare", "x.onnx", "--batch", "0"], "--batch must be at least 1"),
    (["bench", "--max-regression", "nan"], "--max-regression must be a finite number"),
    (["bench", "--max-regression", "inf"], "--max-regression must be a finite number"),
    (["bench", "--max-parity-error", "nan"], "--max-parity-error must be a finite number"),
    (["bench", "--max-parity-error=-1"], "--max-parity-error must be at least 0"),
    (["bench", "--duration", "nan"], "--duration must be a finite number"),
    (["bench", "--batch", "0"], "--batch must be at least 1"),
])
def test_numeric_options_refused_in_one_line(capsys, tmp_path, argv, message):
    code, err = cli(capsys, *argv, *(["--out", str(tmp_path / "r")] if argv[0] == "bench" else []))
    assert code == 2
    assert err.startswith(f"remamber-deploy {argv[0]}: error:") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


# ---- baselines -----------------------------------------------------------------------------------------

def baseline_text(median="10.0", mad="0.5"):
    row = ('{"runtime": "ort", "resolution": 64, "precision": "fp32", "batch": 1, "metric": "latency", '
           f'"median_ms": {median}, "mad_ms": {mad}, "iqr_ms": 1.0, "count": 5}}')
    return ('{"schema_version": 1, "kind": "remamber-bench-baseline", "created_utc": "2026-01-01T00:00:00Z", '
            f'"device": "cpu", "git_commit": "abc", "rows": [{row}]}}')


@pytest.mark.parametrize("median,mad,message", [
    ("NaN", "0.5", "NaN is not a number JSON allows"),
    ("10.0", "NaN", "NaN is not a number JSON allows"),
    ("Infinity", "0.5", "Infinity is not a number JSON allows"),
    ("1e999", "0.5", "median_ms (median latency) is inf, not a finite number"),
    ("0", "0.5", "median_ms: 0 is less than or equal to the minimum of 0"),  # the JSON schema's rule
    ("10.0", "-1", "mad_ms: -1 is less than the minimum of 0"),
])
def test_baseline_values_refused(tmp_path, median, mad, message):
    from remamber.bench.baseline import load_baseline

    path = tmp_path / "base.json"
    path.write_text(baseline_text(median, mad))
    with pytest.raises(InputError) as exc:
        load_baseline(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


def test_good_baseline_loads_and_nan_never_passes_the_gate(tmp_path):
    from remamber.bench import baseline as gate

    path = tmp_path / "base.json"
    path.write_text(baseline_text())
    assert gate.load_baseline(path)["rows"][0]["median_ms"] == 10.0
    # the two-part rule on ordinary numbers: 20% slower with a small spread is a regression
    assert gate.judge_latency(10.0, 0.1, 12.0, 0.1, 10.0)[2] is True
    assert gate.judge_latency(10.0, 0.1, 10.5, 0.1, 10.0)[2] is False
    # a NaN that slipped past validation fails the gate instead of switching it off
    for args in ((math.nan, 0.1, 12.0, 0.1, 10.0), (10.0, math.nan, 12.0, 0.1, 10.0), (10.0, 0.1, 12.0, 0.1, math.nan)):
        assert gate.judge_latency(*args)[2] is True
    with pytest.raises(InputError):
        gate.parity_threshold("fp32", math.nan)


# ---- checkpoints -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_state():
    import remamber

    return remamber.build_model("conv", "tiny").state_dict()


def _load(tmp_path, state):
    import remamber
    from remamber.checkpoint import load_checkpoint

    path = tmp_path / "ckpt.pth"
    torch.save({"model": state}, path)
    return load_checkpoint(remamber.build_model("conv", "tiny"), path)


def _first(state, suffix):
    return next(k for k in state if k.endswith(suffix))


@pytest.mark.parametrize("case,message", [
    ("int64", "have the wrong kind of dtype: backbone."),
    ("inf-bias", "(8 of 8 values are +inf)"),
    ("nan-weight", "1 of"),
])
def test_checkpoint_values_refused_with_the_tensor_named(tmp_path, tiny_state, case, message):
    state = {k: v.clone() for k, v in tiny_state.items()}
    if case == "int64":
        state = {k: v.to(torch.int64) for k, v in state.items()}
        name = next(iter(state))
    elif case == "inf-bias":
        name = _first(state, "patch_embed.0.bias")
        state[name].fill_(math.inf)
    else:
        name = _first(state, "weight")
        state[name].view(-1)[3] = math.nan
    with pytest.raises(CheckpointError) as exc:
        _load(tmp_path, state)
    assert name in str(exc.value) and message in str(exc.value), str(exc.value)


def test_checkpoint_missing_key_advice(tmp_path, tiny_state):
    state = dict(tiny_state)
    gone = _first(state, "bias")
    del state[gone]
    with pytest.raises(CheckpointError) as exc:
        _load(tmp_path, state)
    text = str(exc.value)
    assert gone in text and "lacks 1 of the model's tensors" in text
    assert "'base' preset" not in text  # the old, wrong advice for a tiny file with one key missing


def test_checkpoint_of_another_preset_is_named(tmp_path, tiny_state):
    """A tiny checkpoint given to a base model: the advice names the tiny preset (shapes compared on
    the meta device, so no base weights are allocated)."""
    from remamber.checkpoint import load_checkpoint
    from remamber.model import ReMamber, get_preset

    path = tmp_path / "tiny.pth"
    torch.save({"model": tiny_state}, path)
    with torch.device("meta"):
        base = ReMamber(get_preset("base"), "conv")
    base.variant, base.preset = "conv", "base"
    with pytest.raises(CheckpointError, match="those of the 'tiny' preset"):
        load_checkpoint(base, path)


# ---- images ---------------------------------------------------------------------------------------------

def _pixel(img):
    from remamber.imageio import to_rgb

    return to_rgb(img).getpixel((0, 0))


@pytest.mark.parametrize("mode,value,expected", [
    ("I;16", 65535, 255), ("I;16", 40000, 156), ("I;16", 0, 0),   # 40000 * 255 / 65535 = 155.6
    ("I;16B", 32768, 128),                                          # 32768 * 255 / 65535 = 127.5 -> 128
    ("I", 65535, 255), ("I", 257, 1),                               # Pillow's mode for 16-bit PNGs
    ("F", 1.0, 255), ("F", 0.5, 128), ("F", 0.0, 0),                # float intensities in [0, 1]
])
def test_wide_modes_rescaled_by_their_range(mode, value, expected):
    img = Image.new(mode, (3, 2), value)
    assert _pixel(img) == (expected,) * 3


def test_16_bit_png_file_is_not_white(tmp_path):
    from remamber.imageio import load_image

    ramp = (np.arange(64, dtype=np.uint16) * 1024).reshape(8, 8)  # 0 .. 64512
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    got = np.asarray(load_image(tmp_path / "ramp16.png"))[..., 0]
    np.testing.assert_array_equal(got, np.rint(ramp * (255 / 65535)).astype(np.uint8))
    assert (got == 255).mean() < 0.02  # it used to be 99.7 % white


def test_float_tiff_is_not_black(tmp_path):
    from remamber.imageio import load_image

    Image.fromarray(np.full((4, 4), 0.25, np.float32)).save(tmp_path / "f.tif")
    assert load_image(tmp_path / "f.tif").getpixel((0, 0)) == (64, 64, 64)  # 0.25 * 255 = 63.75


@pytest.mark.parametrize("mode,value,message", [
    ("F", 2.0, "values 2..2"),
    ("F", math.nan, "NaN or Inf"),
    ("I", -5, "outside the 16-bit range"),
    ("I", 70000, "outside the 16-bit range"),
    ("La", (10, 20), "mode 'La'"),
])
def test_unconvertible_images_refused(mode, value, message):
    from remamber.imageio import to_rgb

    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        to_rgb(Image.new(mode, (2, 2), value))


@pytest.mark.parametrize("mode,color,expected", [
    ("L", 77, (77, 77, 77)), ("1", 1, (255, 255, 255)), ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
    ("LA", (90, 0), (90, 90, 90)), ("CMYK", (0, 0, 0, 0), (255, 255, 255)), ("HSV", (0, 0, 255), (255, 255, 255)),
    ("YCbCr", (128, 128, 128), (128, 128, 128)),
])
def test_8_bit_modes_convert_like_the_official_loader(mode, color, expected):
    assert _pixel(Image.new(mode, (2, 2), color)) == expected


def test_palette_image():
    img = Image.new("P", (2, 2), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert _pixel(img) == (200, 100, 50)


# ---- text ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\t\n", "\u200b\u200b", "\x00\x07"])
def test_empty_sentences_refused(capsys, text):
    from remamber.validate.text import check_text

    with pytest.raises(InputError, match="empty once whitespace and control characters are removed"):
        check_text(text, "--text")
    code, err = cli(capsys, "predict", "--text", text)
    assert code == 2 and "--text" in err and "Traceback" not in err


def test_truncation_reports_words_kept():
    from remamber.tokenizer import tokenize

    messages = []
    tokenize(" ".join(["cat"] * 19), on_truncate=messages.append)  # "cat" is one word piece
    assert len(messages) == 1 and "19 word pieces" in messages[0] and "18 of 19 words kept" in messages[0]
    messages.clear()
    tokenize(" ".join(["cat"] * 18), on_truncate=messages.append)  # exactly fits
    assert messages == []
    messages.clear()
    tokenize(" ".join(["word"] * 1000), on_truncate=messages.append)
    assert "1000 word pieces" in messages[0] and "18 of 1000 words kept" in messages[0]


def test_truncation_warns_by_default():
    from remamber.tokenizer import TruncationWarning, tokenize

    with pytest.warns(TruncationWarning, match="18 of 25 words kept"):
        tokenize(" ".join(["cat"] * 25))


def test_latin1_sentences_file_refused(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "sentences.txt").write_bytes("a.png\tthe caf\u00e9 sign\n".encode("latin-1"))
    code, err = cli(capsys, "bench", "--images-dir", str(folder), "--out", str(tmp_path / "r"))
    assert code == 2 and "is not UTF-8 (byte 0xe9 on line 1)" in err and "iconv" in err
    assert not (tmp_path / "r").exists()
