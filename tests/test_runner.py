"""The C++ runner (apps/trt_runner) and its Python side: prepare-inputs and compare --runtime-logits.

What runs here without TensorRT or a GPU: the runner binary built by scripts/build_native.sh
(build/remamber_trt_runner, or $REMAMBER_TRT_RUNNER) stops with its "libnvinfer not found" message
and exit status 3; its .npy reader and writer round-trip NumPy's own files (checked with NumPy);
prepare-inputs writes the three inputs the runner binds by ONNX input name (checked against PIL and
the CLIP special tokens, not against the code that wrote them); compare --runtime-logits passes
PyTorch's own logits and fails perturbed ones. Running an engine needs TensorRT and a GPU.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def _runner() -> str:
    path = pathlib.Path(os.environ.get("REMAMBER_TRT_RUNNER") or REPO / "build" / "remamber_trt_runner")
    if not path.is_file():
        reason = f"{path} is not built (bash scripts/build_native.sh builds it beside the plugin)"
        if os.environ.get("REMAMBER_REQUIRE_COMPAT") == "1":
            pytest.fail(f"REMAMBER_REQUIRE_COMPAT=1: {reason}")
        pytest.skip(reason)
    return str(path)


def _run(*args, env=None):
    return subprocess.run([_runner(), *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def test_runner_without_tensorrt_says_what_is_missing(tmp_path):
    if ctypes.util.find_library("nvinfer"):
        pytest.skip("TensorRT (libnvinfer) is installed here: the no-TensorRT path cannot be shown")
    env = {k: v for k, v in os.environ.items() if k not in ("REMAMBER_LIBNVINFER", "LD_LIBRARY_PATH")}
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    proc = _run("--engine", engine, "--plugin", tmp_path / "libplugin.so", "--inputs", tmp_path, env=env)
    assert proc.returncode == 3, proc.stderr
    assert "the TensorRT runtime library (libnvinfer) not found" in proc.stderr
    assert "libnvinfer.so.10" in proc.stderr and "--libnvinfer PATH" in proc.stderr
    # an explicit path that does not exist is named as tried
    proc = _run("--engine", engine, "--plugin", "x.so", "--libnvinfer", tmp_path / "nope.so", env=env)
    assert proc.returncode == 3 and str(tmp_path / "nope.so") in proc.stderr


@pytest.mark.parametrize("argv,message", [
    ([], "--engine FILE is required"),
    (["--engine", "m.engine"], "--plugin LIB is required"),
    (["--engine", "m.engine", "--plugin", "p.so", "--iterations", "0"], "--iterations 0: expected an integer >= 1"),
    (["--engine", "m.engine", "--plugin", "p.so", "--input", "image"], "expected NAME=FILE.npy"),
    (["--bogus"], "unknown argument --bogus"),
])
def test_runner_usage_errors(argv, message):
    env = {k: v for k, v in os.environ.items() if k != "REMAMBER_TRT_PLUGIN_LIB"}
    proc = _run(*argv, env=env)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


ARRAYS = {
    "image_f32": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32),
    "f16": np.random.default_rng(1).standard_normal((2, 5)).astype(np.float16),
    "ids_i64": np.arange(40, dtype=np.int64).reshape(2, 20) * 1234567890123,
    "i32_1d": np.array([-5, 0, 7], dtype=np.int32),
    "f64_long_header": np.linspace(0, 1, 7 * 11 * 13).reshape(7, 11, 13),
    "bool_0d": np.array(True),
    "empty": np.zeros((0, 4), dtype=np.float32),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_runner_npy_round_trip_checked_by_numpy(tmp_path, name):
    src, dst = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, ARRAYS[name])
    proc = _run("--copy-npy", src, dst)
    assert proc.returncode == 0, proc.stderr
    back = np.load(dst, allow_pickle=False)
    assert back.dtype == ARRAYS[name].dtype and back.shape == ARRAYS[name].shape
    np.testing.assert_array_equal(back, ARRAYS[name])
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("array,message", [
    (np.asfortranarray(np.ones((3, 4), dtype=np.float32)), "Fortran-order"),
    (np.ones(3, dtype=">f4"), "dtype '>f4' is not supported"),
    (np.array(["a"]), "is not supported"),
])
def test_runner_npy_refusals(tmp_path, array, message):
    src = tmp_path / "in.npy"
    np.save(src, array)
    proc = _run("--copy-npy", src, tmp_path / "out.npy")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out.npy").exists()


def test_prepare_inputs_writes_the_network_inputs(tmp_path):
    from PIL import Image

    from remamber.cli import main
    from remamber.imageio import MEAN, STD
    from remamber.samples import sample_image

    out = tmp_path / "inputs"
    assert main(["prepare-inputs", "--sample", "cat", "--size", "64", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["attention_mask.npy", "image.npy", "input_ids.npy", "inputs.json"]
    image = np.load(out / "image.npy")
    ids, mask = np.load(out / "input_ids.npy"), np.load(out / "attention_mask.npy")
    assert image.dtype == np.float32 and image.shape == (1, 3, 64, 64)
    assert ids.dtype == np.int64 and ids.shape == (1, 20) and mask.dtype == np.int64 and mask.shape == (1, 20)
    # independent preprocessing: PIL bilinear resize, /255, CLIP mean/std
    pil, _ = sample_image("cat")
    pil = pil if isinstance(pil, Image.Image) else Image.fromarray(pil)
    expected = np.asarray(pil.convert("RGB").resize((64, 64), Image.BILINEAR), dtype=np.float32) / 255
    expected = (expected - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    np.testing.assert_allclose(image[0], expected.transpose(2, 0, 1), atol=1e-6)
    # CLIP: <start_of_text> 49406 first, <end_of_text> 49407 last of the attended tokens, mask 1...1 0...0
    n = int(mask.sum())
    assert ids[0, 0] == 49406 and ids[0, n - 1] == 49407 and n == 4  # "the cat" = 2 words + 2 special tokens
    assert mask[0].tolist() == [1] * n + [0] * (20 - n)
    manifest = json.loads((out / "inputs.json").read_text())
    assert manifest["text"] == "the cat" and manifest["inputs"]["image"]["shape"] == [1, 3, 64, 64]
    # refuses to overwrite a foreign file, and exits 2 on bad input
    assert main(["prepare-inputs", "--size", "60", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("edit,message", [
    (lambda a: a["input_ids"].__setitem__((0, 1), -1), "input_ids"),
    (lambda a: a["attention_mask"].__setitem__((0, 0), 2), "attention_mask"),
    (lambda a: a["image"].__setitem__((0, 0, 0, 0), np.nan), "image"),
])
def test_prepare_inputs_folder_values_are_checked_like_any_runtime_feed(tmp_path, edit, message):
    """A hand-edited inputs folder (token id -1, mask value 2, a NaN pixel) is refused when read back,
    as predict and bench refuse the same values, instead of reaching PyTorch or a runtime."""
    from remamber.cli import main
    from remamber.errors import InputError
    from remamber.prepare_inputs import load_inputs

    out = tmp_path / "inputs"
    assert main(["prepare-inputs", "--sample", "cat", "--size", "64", "--out", str(out)]) == 0
    arrays = load_inputs(out)  # the untouched folder is accepted
    edit(arrays)
    np.save(out / f"{message}.npy", arrays[message])  # message names the edited input
    with pytest.raises(InputError, match=message):
        load_inputs(out)


class _TinyNet:
    """A fast stand-in model: logits from the image and the token mask (the comparison is under test)."""

    def __new__(cls):
        import torch

        class Net(torch.nn.Module):
            def forward(self, image, input_ids, attention_mask):
                return image.mean(1, keepdim=True) * 3 + attention_mask.sum() * 0.01 - 0.5

        return Net().eval()


def test_compare_runtime_logits_passes_equal_and_fails_perturbed(tmp_path):
    import torch

    from remamber.cli import main
    from remamber.errors import InputError
    from remamber.export.runtime_logits import compare_runtime_logits

    inputs = tmp_path / "inputs"
    assert main(["prepare-inputs", "--sample", "cat", "--size", "64", "--out", str(inputs)]) == 0
    feeds = {k: torch.from_numpy(np.load(inputs / f"{k}.npy")) for k in ("image", "input_ids", "attention_mask")}
    model = _TinyNet()
    with torch.no_grad():
        logits = model(**feeds).numpy()
    good, bad = tmp_path / "good.npy", tmp_path / "bad.npy"
    np.save(good, logits)
    perturbed = logits.copy()
    perturbed[0, 0, 10, 10] += 0.05 * np.abs(logits).max()  # 5% of the scale: far beyond fp32's 1e-4
    np.save(bad, perturbed)
    text, passed = compare_runtime_logits(good, inputs, model, "fp32", 64)
    assert passed and "PARITY PASS" in text
    text, passed = compare_runtime_logits(bad, inputs, model, "fp32", 64)
    assert not passed and "max abs error" in text
    with pytest.raises(InputError, match="--size 480"):
        compare_runtime_logits(good, inputs, model, "fp32", 480)
    np.save(tmp_path / "wrong.npy", logits[:, :, :32])
    with pytest.raises(InputError, match="has shape"):
        compare_runtime_logits(tmp_path / "wrong.npy", inputs, model, "fp32", 64)
    with pytest.raises(InputError, match="needs --inputs"):
        compare_runtime_logits(good, None, model, "fp32", 64)
