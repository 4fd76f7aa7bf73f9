"""The demo checkpoint and the demo image: what ``predict``, ``bench`` and ``eval`` use by default.

The official ReMamber checkpoints cannot be downloaded here, and random weights paint nearly the
whole image, so out of the box every command uses a small ReMamber trained by this project
(issue #16): the tiny preset, conv variant, trained on the synthetic shapes of
``remamber.data.synthetic``. It segments coloured shapes named by the generator's grammar; it is
not a RefCOCO model and knows nothing about photographs.

Files, next to this module (committed by the trainer, see docs/TRAINING.md):

* ``demo_tiny_conv.pth``: ``{"model": state_dict}`` stored in float16 (loaded into float32 models);
* ``demo_tiny_conv.json``: preset, variant, training resolution, provenance and metrics,
  validated by ``load_demo_metadata()``.

``REMAMBER_DEMO_DIR`` points the lookup at another folder (tests, a retrained demo).

``demo_sample()`` generates the demo input: one scene of the synthetic generator from a fixed
seed that is not used for training data, a sentence of its grammar that names exactly one object
(unambiguous by construction), and that object's ground-truth mask, so reports can show the IoU
of a prediction against the truth.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, InputError

DEMO_DESCRIPTION = "demo: tiny preset trained on synthetic shapes; not a RefCOCO model"
CHECKPOINT_NAME = "demo_tiny_conv.pth"
METADATA_NAME = "demo_tiny_conv.json"
ENV_DIR = "REMAMBER_DEMO_DIR"
PACKAGE_DIR = Path(__file__).resolve().parent

# The demo scene: image DEMO_INDEX of `remamber-deploy make-dataset --seed DEMO_SEED`, a seed the
# training data does not use (its images come from (data seed, index) generators), rendered at
# DEMO_SCALE times the generator's size so the overlay is photo-sized (640x480 here). The index is one
# whose sentence the demo checkpoint gets right (scored over indices 0-23 with the checkpoint; re-check
# it when the checkpoint or the generator's default version changes): "the blue circle on the right",
# where two other blue circles make the position words needed.
DEMO_SEED = 20261202
DEMO_INDEX = 14
DEMO_SCALE = 2


class DemoCheckpointError(CheckpointError):
    """The demo checkpoint or its metadata is missing or damaged."""


def demo_dir() -> Path:
    override = os.environ.get(ENV_DIR)
    return Path(override) if override else PACKAGE_DIR


def checkpoint_path() -> Path:
    return demo_dir() / CHECKPOINT_NAME


def metadata_path() -> Path:
    return demo_dir() / METADATA_NAME


_FIX = ("reinstall remamber-deploy (or `git checkout remamber/demo/` in a clone), or pass your own "
        "--checkpoint FILE, or --random-weights to run the pipeline on seeded random weights")


# ------------------------------------------------------------------------------------------ metadata

@dataclass(frozen=True)
class DemoMetadata:
    """The validated content of ``demo_tiny_conv.json``."""

    preset: str
    variant: str
    resolution: int
    storage_dtype: str
    description: str
    final: bool
    training: dict
    metrics: dict
    path: Path
    raw: dict = field(repr=False)

    @property
    def label(self) -> str:
        """The description, plus a warning while the checkpoint is a pilot of an unfinished training."""
        return self.description if self.final else f"{self.description} (pilot checkpoint: training not finished)"


def _need(data: dict, key: str, kinds, where: str, path: Path):
    if key not in data:
        raise DemoCheckpointError(f"demo metadata {path}: {where}{key!r} is missing; {_FIX}")
    value = data[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise DemoCheckpointError(f"demo metadata {path}: {where}{key!r} is {value!r}, not a number; {_FIX}")
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise DemoCheckpointError(f"demo metadata {path}: {where}{key!r} is {value!r}, expected {names}; {_FIX}")
    return value


def load_demo_metadata(path: str | os.PathLike | None = None) -> DemoMetadata:
    """Read and validate the demo metadata; DemoCheckpointError names the file, the problem and the fix."""
    from ..model.presets import PRESETS, VARIANTS

    path = Path(path) if path is not None else metadata_path()
    if not path.is_file():
        raise DemoCheckpointError(f"the demo checkpoint's metadata {path} is missing; {_FIX}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DemoCheckpointError(f"demo metadata {path} is not valid JSON ({exc}); the file is damaged; {_FIX}") from exc
    if not isinstance(data, dict):
        raise DemoCheckpointError(f"demo metadata {path} holds a {type(data).__name__}, expected a JSON object; {_FIX}")
    preset = _need(data, "preset", str, "", path)
    variant = _need(data, "variant", str, "", path)
    if preset not in PRESETS or variant not in VARIANTS:
        raise DemoCheckpointError(f"demo metadata {path}: preset {preset!r} / variant {variant!r} is not a model this "
                                  f"version builds ({', '.join(PRESETS)} / {', '.join(VARIANTS)}); {_FIX}")
    resolution = _need(data, "resolution", int, "", path)
    if resolution < 32 or resolution % 32:
        raise DemoCheckpointError(f"demo metadata {path}: resolution {resolution} is not a positive multiple of 32; {_FIX}")
    storage = _need(data, "storage_dtype", str, "", path)
    description = _need(data, "description", str, "", path).strip()
    if not description:
        raise DemoCheckpointError(f"demo metadata {path}: 'description' is empty; {_FIX}")
    final = _need(data, "final", bool, "", path)
    training = _need(data, "training", dict, "", path)
    for key, kinds in (("command", str), ("seed", int), ("data", dict)):
        _need(training, key, kinds, "training.", path)
    if "path" not in training["data"]:  # generated by the trainer (else trained on a folder it names)
        for key in ("images", "seed", "generator_version"):
            _need(training["data"], key, int, "training.data.", path)
    metrics = _need(data, "metrics", dict, "", path)
    for split, values in metrics.items():
        if not isinstance(values, dict):
            raise DemoCheckpointError(f"demo metadata {path}: metrics.{split} is {values!r}, expected an object; {_FIX}")
        for key in ("oIoU", "mIoU"):
            value = _need(values, key, (int, float), f"metrics.{split}.", path)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise DemoCheckpointError(f"demo metadata {path}: metrics.{split}.{key} = {value!r} is not in [0, 1]; {_FIX}")
        _need(values, "n", int, f"metrics.{split}.", path)
    return DemoMetadata(preset=preset, variant=variant, resolution=resolution, storage_dtype=storage,
                        description=description, final=final, training=training, metrics=metrics, path=path, raw=data)


def demo_checkpoint() -> tuple[Path, DemoMetadata]:
    """(checkpoint path, metadata), both checked to exist (the checkpoint's content is read when loaded)."""
    meta = load_demo_metadata()
    path = checkpoint_path()
    if not path.is_file():
        raise DemoCheckpointError(f"the demo checkpoint {path} is missing; {_FIX}")
    return path, meta


# ------------------------------------------------------------------------------------------- sample

@dataclass(frozen=True)
class DemoSample:
    """The demo input: an image, a sentence naming one object in it, and that object's true mask."""

    name: str
    image: object  # PIL.Image.Image, RGB
    sentence: str
    mask: np.ndarray  # bool (H, W): ground truth, foreground where exactly one polygon part covers the pixel
    seed: int
    index: int
    scale: int
    target: dict  # shape, colour, size of the object the sentence names


def _scaled(shape, k: float):
    pts = lambda poly: [(x * k, y * k) for x, y in poly]  # noqa: E731
    return replace(shape, cx=shape.cx * k, cy=shape.cy * k, radius=shape.radius * k,
                   polygon=pts(shape.polygon), parts=[pts(p) for p in shape.parts])


def _pick_sentence(shapes) -> tuple[int, str]:
    """The target and sentence: the first object (generation order) that shares its shape with
    another object, so the shape word alone does not single it out and the rest of the sentence
    matters; its longest grammar sentence (ties: the grammar's order). Otherwise the first object
    any sentence singles out."""
    from ..data.synthetic import expressions

    fallback = None
    for i, s in enumerate(shapes):
        candidates = expressions(shapes, i)
        if not candidates:
            continue
        best = max(candidates, key=len)  # max keeps the first of equal lengths
        if sum(o.shape == s.shape for o in shapes) > 1:
            return i, best
        if fallback is None:
            fallback = (i, best)
    if fallback is None:
        raise InputError("demo_sample: no object of this scene can be named by the grammar; choose another seed")
    return fallback


def _truth(parts, width: int, height: int) -> np.ndarray:
    """Ground truth as the dataset and the official loader decode it: pycocotools polygons,
    foreground where exactly one part covers the pixel."""
    from pycocotools import mask as mask_utils

    segmentation = [[round(v, 2) for xy in part for v in xy] for part in parts]
    with warnings.catch_warnings():  # pycocotools' NumPy-2 copy= deprecation notice, not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width))
    return decoded.reshape(height, width, -1).sum(axis=2) == 1


def demo_sample(seed: int = DEMO_SEED, index: int = DEMO_INDEX, scale: int = DEMO_SCALE) -> DemoSample:
    """The demo scene (deterministic): image ``index`` of the synthetic generator with ``seed``,
    drawn ``scale`` times larger, with its sentence and ground-truth mask."""
    from ..data.synthetic import IMAGE_SIZES, make_scene, render

    for name, value, low in (("seed", seed, 0), ("index", index, 0), ("scale", scale, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"demo_sample: {name} {value!r} must be an integer >= {low}")
    # The same draws, in the same order, as remamber.data.synthetic.generate for this image.
    rng = np.random.default_rng([seed, index])
    width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    shapes, pole = make_scene(rng, width, height)
    big = [_scaled(s, scale) for s in shapes]
    big_pole = None if pole is None else (pole[0] * scale, pole[1] * scale)
    image = render(big, big_pole, width * scale, height * scale, rng)
    target, sentence = _pick_sentence(shapes)
    t = big[target]
    return DemoSample(name=f"demo:shapes seed {seed} image {index}", image=image, sentence=sentence,
                      mask=_truth(t.parts, width * scale, height * scale), seed=seed, index=index, scale=scale,
                      target={"shape": t.shape, "colour": t.colour, "size": t.size})


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape (1.0 when both are empty)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    if predicted.shape != truth.shape:
        raise InputError(f"mask_iou: shapes differ: {predicted.shape} and {truth.shape}")
    union = np.count_nonzero(predicted | truth)
    return float(np.count_nonzero(predicted & truth) / union) if union else 1.0
