"""Tests for remamber.imageio and remamber.samples.

Independent references used here:
- resize: torch's ``F.interpolate(bilinear, antialias=True)``, a separate implementation written to
  match PIL's antialiased bilinear (within one grey level; PIL rounds to uint8 in fixed point), and a
  1-pixel stripe pattern whose antialiased downscale must be grey while a plain bilinear sample is not;
- ToTensor + Normalize: float64 numpy arithmetic on the resized pixels;
- nearest resize of the logits: the integer formula src = floor(dst * in / out) of PyTorch's legacy
  "nearest" mode, evaluated in exact integer arithmetic;
- overlay: numpy blending written out in the test;
- sample sizes: the image sizes documented for skimage.data.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from remamber import imageio
from remamber.errors import InputError
from remamber.samples import list_samples, sample_image

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def random_image(h, w, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def denormalise(x: torch.Tensor) -> np.ndarray:
    """(1,3,S,S) network input back to HxWx3 in the 0..255 scale (float64)."""
    arr = x[0].double().numpy().transpose(1, 2, 0)
    return (arr * STD + MEAN) * 255.0


# ---------------------------------------------------------------- load_image


def test_load_image_converts_to_rgb(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((7, 5), 200, np.uint8)).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.zeros((4, 6, 4), np.uint8)).save(rgba)
    for path, size in ((grey, (5, 7)), (rgba, (6, 4))):
        img = imageio.load_image(path)
        assert img.mode == "RGB" and img.size == size
    assert np.asarray(imageio.load_image(grey))[0, 0].tolist() == [200, 200, 200]


def test_load_image_missing_unreadable_and_directory(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError, match="nope.png"):
        imageio.load_image(missing)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="broken.jpg"):
        imageio.load_image(broken)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(random_image(64, 64)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(InputError, match="truncated.png"):
        imageio.load_image(truncated)
    with pytest.raises(InputError, match="not a file"):
        imageio.load_image(tmp_path)


# ---------------------------------------------------------------- preprocess


@pytest.mark.parametrize("hw,size", [((300, 451), 64), ((50, 70), 96), ((427, 640), 480)])
def test_preprocess_matches_independent_antialiased_bilinear(hw, size):
    pixels = random_image(*hw, seed=size)
    x = imageio.preprocess(pixels, size)
    assert x.dtype == torch.float32 and x.shape == (1, 3, size, size) and x.is_contiguous()
    src = torch.from_numpy(pixels).permute(2, 0, 1)[None].double()
    ref = F.interpolate(src, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    ref = ref[0].permute(1, 2, 0).numpy()
    assert np.abs(denormalise(x) - ref).max() <= 1.25  # grey levels; PIL rounds to uint8


def test_preprocess_normalisation_is_exact():
    colour = (10, 128, 250)
    img = Image.new("RGB", (45, 33), colour)
    x = imageio.preprocess(img, 32)
    want = (np.array(colour) / 255.0 - MEAN) / STD
    got = x[0].double().numpy().reshape(3, -1)
    assert np.abs(got - want[:, None]).max() < 1e-6


def test_preprocess_orientation_non_square():
    """Left half red / right half blue, top half green: quadrants must land where they started."""
    img = np.zeros((60, 120, 3), np.uint8)
    img[:, :60, 0] = 255
    img[:, 60:, 2] = 255
    img[:30, :, 1] = 255
    out = denormalise(imageio.preprocess(img, 32))
    assert out[:, :12, 0].min() > 250 and out[:, 20:, 0].max() < 5
    assert out[:, 20:, 2].min() > 250 and out[:, :12, 2].max() < 5
    assert out[:12, :, 1].min() > 250 and out[20:, :, 1].max() < 5


def test_preprocess_antialiases_when_shrinking():
    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[:, ::2] = 255
    out = denormalise(imageio.preprocess(stripes, 32))  # factor 3: plain bilinear would hit 0/255 columns
    assert out[:, 1:-1].min() > 60 and out[:, 1:-1].max() < 195
    plain = F.interpolate(torch.from_numpy(stripes).permute(2, 0, 1)[None].float(), size=(32, 32), mode="bilinear")
    assert plain.max() - plain.min() > 200  # the contrast case: no antialias keeps the stripes


def test_preprocess_pil_and_numpy_agree():
    pixels = random_image(41, 77, seed=3)
    assert torch.equal(imageio.preprocess(pixels, 64), imageio.preprocess(Image.fromarray(pixels), 64))
    grey = Image.fromarray(pixels[:, :, 0])  # mode L is converted to RGB
    assert imageio.preprocess(grey, 32).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("size", [0, -32, 100, 33, 480.0, True, "480", None])
def test_preprocess_rejects_bad_sizes(size):
    with pytest.raises(InputError, match="multiple of 32"):
        imageio.preprocess(random_image(8, 8), size)


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32), [[1, 2]]]
)
def test_preprocess_rejects_bad_images(bad):
    with pytest.raises(InputError):
        imageio.preprocess(bad, 32)


# ---------------------------------------------------------------- postprocess


def nearest_reference(logits: np.ndarray, width: int, height: int) -> np.ndarray:
    s_h, s_w = logits.shape
    rows = np.minimum(np.arange(height) * s_h // height, s_h - 1)
    cols = np.minimum(np.arange(width) * s_w // width, s_w - 1)
    return logits[rows][:, cols]


@pytest.mark.parametrize("size,orig", [(32, (451, 300)), (64, (40, 24)), (32, (32, 32)), (32, (7, 100))])
def test_postprocess_nearest_then_threshold(size, orig):
    logits = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(size))
    mask = imageio.postprocess(logits, orig)
    width, height = orig
    assert mask.dtype == np.bool_ and mask.shape == (height, width)
    want = nearest_reference(logits[0, 0].numpy(), width, height) > 0
    assert np.array_equal(mask, want)


def test_postprocess_threshold_edges_and_numpy_input():
    logits = np.array([[[[0.0, 1e-3], [-1e-3, 50.0]]]], np.float32)
    mask = imageio.postprocess(logits, (2, 2))
    assert mask.tolist() == [[False, True], [False, True]]


def test_postprocess_rejects_bad_logits():
    with pytest.raises(InputError, match="NaN"):
        imageio.postprocess(torch.full((1, 1, 4, 4), float("nan")), (4, 4))
    with pytest.raises(InputError, match="shape"):
        imageio.postprocess(torch.zeros(2, 1, 4, 4), (4, 4))
    with pytest.raises(InputError, match="original_size"):
        imageio.postprocess(torch.zeros(1, 1, 4, 4), (0, 4))


# ---------------------------------------------------------------- overlay and atomic PNG


def test_overlay_blends_only_the_mask():
    pixels = random_image(10, 12, seed=5)
    mask = np.zeros((10, 12), bool)
    mask[2:6, 3:9] = True
    out = np.asarray(imageio.overlay(Image.fromarray(pixels), mask, color=(255, 0, 0), alpha=0.5)).astype(int)
    p = pixels.astype(int)
    assert np.array_equal(out[~mask], p[~mask])
    want = np.floor(p[mask] * 0.5 + np.array([255, 0, 0]) * 0.5 + 0.5)  # exact halves round up or to even
    assert np.abs(out[mask] - want).max() <= 1
    assert (out[mask][:, 0] >= p[mask][:, 0]).all() and (out[mask][:, 1:] <= p[mask][:, 1:]).all()
    with pytest.raises(InputError, match="does not match"):
        imageio.overlay(Image.fromarray(pixels), mask.T)


def test_save_png_atomic_writes_whole_file(tmp_path):
    mask = np.zeros((5, 7), bool)
    mask[1:3] = True
    target = tmp_path / "sub" / "mask.png"
    assert imageio.save_png_atomic(imageio.mask_to_image(mask), target) == target
    back = np.asarray(Image.open(target))
    assert back.dtype == np.uint8 and set(np.unique(back)) == {0, 255}
    assert np.array_equal(back == 255, mask)
    assert sorted(os.listdir(target.parent)) == ["mask.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file's mode, not mkstemp's 0600


def test_save_png_atomic_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    target = tmp_path / "overlay.png"
    with pytest.raises(OSError, match="simulated"):
        imageio.save_png_atomic(Image.new("RGB", (4, 4)), target)
    assert os.listdir(tmp_path) == []

    # An existing file survives a failed overwrite untouched.
    target.write_bytes(b"old content")
    with pytest.raises(OSError):
        imageio.save_png_atomic(Image.new("RGB", (4, 4)), target)
    assert target.read_bytes() == b"old content" and os.listdir(tmp_path) == ["overlay.png"]


# ---------------------------------------------------------------- samples


# Sizes (W, H) documented for these skimage.data images.
SAMPLE_SIZES = {
    "cat": (451, 300),
    "astronaut": (512, 512),
    "coffee": (600, 400),
    "rocket": (640, 427),
    "camera": (512, 512),
}


def test_samples_load_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a sample image tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    samples = list_samples()
    assert list(samples) == list(SAMPLE_SIZES)
    for name, sentence in samples.items():
        img, text = sample_image(name)
        assert img.mode == "RGB" and img.size == SAMPLE_SIZES[name]
        assert text == sentence and text.strip()
    img, text = sample_image()
    assert text == "the cat" and img.size == (451, 300)


def test_unknown_sample():
    with pytest.raises(InputError, match="astronaut"):
        sample_image("horse_on_mars")
