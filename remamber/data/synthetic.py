"""Synthetic referring-segmentation dataset in the RefCOCO layout: coloured shapes and sentences.

Writes exactly what ``remamber.data.refcoco`` (and the official LAVT/ReMamber loader) reads:

    <out>/<dataset>/instances.json   COCO images, annotations (polygons, one- or multi-part), categories
    <out>/<dataset>/refs(unc).p      refs with train / val / testA splits, several sentences per ref
    <out>/train2014/*.png            the images
    <out>/<dataset>/synthetic.json   the generator's settings (seed, counts), for provenance

Each image holds several objects that differ in shape (circle, square, triangle, star), colour,
size and position; some are cut in two by a grey pole drawn in front of them, so their polygon
annotation has two parts. Sentences come from a small grammar ("the red circle", "the small blue
square", "the star on the left", "the triangle below the green star"). An expression is kept only
when, evaluated on the image's objects, it selects exactly its target: every sentence is
unambiguous by construction, and since one image carries refs to different objects, a model must
read the text to solve it. This is the data of issue #16 (a trained demo checkpoint) and the test
data of ``remamber-deploy eval``.

Deterministic: the same arguments give byte-identical files (per-image random generators seeded
from (seed, image index); JSON with sorted keys; pickle protocol 2; PNG without timestamps).
"""

from __future__ import annotations

import io
import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic, write_text_atomic
from ..errors import InputError

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {
    "red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220),
    "yellow": (235, 200, 30), "purple": (140, 60, 190), "orange": (245, 135, 25),
}
POLE_COLOUR = (120, 120, 120)
IMAGE_SIZES = ((320, 240), (256, 256), (240, 320))  # (W, H): varied, so masks return to several sizes
# Object radius as a fraction of the shorter side, per generator version. Version 2's ranges are about
# 1.65x version 1's (large objects fit less often, so the mean object area is 2.1x, not 2.7x, on 1000
# images): a model that sees the image at 96 x 96 gets version 1's small objects at a radius of
# 7-9 px (two stage-1 feature cells), and a mask output at 96 x 96 can score at most oIoU 0.850 on
# version 1's val split, 0.893 on version 2's (measure --ceiling; docs/TRAINING.md). The rest of the
# procedure is the same (larger objects collide more often, so the scenes differ). The packaged demo
# checkpoint is trained on version 2, the default since 2026-12-05 (before, version 1; it stays
# byte-identical to the generator of that time with --generator-version 1).
SIZE_CLASSES_BY_VERSION = {
    1: {"small": (0.07, 0.095), "big": (0.14, 0.17)},
    2: {"small": (0.12, 0.16), "big": (0.23, 0.28)},
}
GENERATOR_VERSION = 2  # the default version (make-dataset --generator-version)
SIZE_CLASSES = SIZE_CLASSES_BY_VERSION[GENERATOR_VERSION]
SPLIT_FRACTIONS = (("val", 0.1), ("testA", 0.1))  # the rest is train
SENTENCES_PER_REF = 3


@dataclass
class Shape:
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    polygon: list[tuple[float, float]] = field(default_factory=list)  # the whole outline
    parts: list[list[tuple[float, float]]] = field(default_factory=list)  # what is visible (1 or 2 parts)


# ---------------------------------------------------------------------------------------- geometry

def outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a shape centred at (cx, cy) with circumradius r, rotated by ``angle``."""
    if shape == "circle":
        angles, radii = np.linspace(0, 2 * math.pi, 32, endpoint=False), [r] * 32
    elif shape == "square":
        angles, radii = angle + math.pi / 4 + np.arange(4) * math.pi / 2, [r] * 4
    elif shape == "triangle":
        angles, radii = -math.pi / 2 + angle + np.arange(3) * 2 * math.pi / 3, [r] * 3
    elif shape == "star":
        angles, radii = -math.pi / 2 + angle + np.arange(10) * math.pi / 5, [r, 0.45 * r] * 5
    else:
        raise InputError(f"unknown shape {shape!r}; use one of {', '.join(SHAPES)}")
    return [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a, rr in zip(angles, radii)]


def clip_half_plane(poly, x: float, keep_left: bool):
    """Sutherland-Hodgman clip of a convex polygon to x <= ``x`` (keep_left) or x >= ``x``."""
    inside = (lambda p: p[0] <= x) if keep_left else (lambda p: p[0] >= x)
    out = []
    for i, cur in enumerate(poly):
        prev = poly[i - 1]
        if inside(cur) != inside(prev):
            t = (x - prev[0]) / (cur[0] - prev[0])
            out.append((x, prev[1] + t * (cur[1] - prev[1])))
        if inside(cur):
            out.append(cur)
    return out


def polygon_area(poly) -> float:
    xs, ys = np.array([p[0] for p in poly]), np.array([p[1] for p in poly])
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


# ------------------------------------------------------------------------------------------ scenes

def make_scene(rng: np.random.Generator, width: int, height: int,
               size_classes: dict = SIZE_CLASSES) -> tuple[list[Shape], tuple[float, float] | None]:
    """3 to 5 non-overlapping objects, and maybe a vertical pole (x0, x1) cutting some convex ones.
    size_classes: radius ranges per size word (SIZE_CLASSES_BY_VERSION)."""
    short = min(width, height)
    shapes: list[Shape] = []
    count = int(rng.integers(3, 6))
    for _ in range(200):
        if len(shapes) == count:
            break
        size = str(rng.choice(list(size_classes)))
        lo, hi = size_classes[size]
        r = float(rng.uniform(lo, hi)) * short
        cx, cy = float(rng.uniform(r + 2, width - r - 2)), float(rng.uniform(r + 2, height - r - 2))
        if any(math.hypot(cx - s.cx, cy - s.cy) < r + s.radius + 6 for s in shapes):
            continue
        # Repeat an existing shape+colour now and then, so position and size words are needed.
        if shapes and rng.random() < 0.3:
            twin = shapes[int(rng.integers(len(shapes)))]
            kind, colour = twin.shape, twin.colour
        else:
            kind, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
        poly = outline(kind, cx, cy, r, float(rng.uniform(0, math.pi / 6)))
        shapes.append(Shape(kind, colour, size, cx, cy, r, poly, [poly]))
    pole = None
    if rng.random() < 0.4:
        pole = _place_pole(rng, shapes, width)
    return shapes, pole


def _place_pole(rng, shapes: list[Shape], width: int):
    """A pole through the middle part of one convex shape and through no star (which is not convex)."""
    convex = [s for s in shapes if s.shape != "star" and s.size == "big"]
    for _ in range(10):
        if not convex:
            return None
        target = convex[int(rng.integers(len(convex)))]
        w = max(3.0, 0.12 * target.radius * 2)
        x0 = float(target.cx + rng.uniform(-0.3, 0.3) * target.radius - w / 2)
        x1 = x0 + w
        hit = [s for s in shapes if min(p[0] for p in s.polygon) < x1 and max(p[0] for p in s.polygon) > x0]
        if any(s.shape == "star" for s in hit):
            continue
        for s in hit:
            parts = [clip_half_plane(s.polygon, x0, True), clip_half_plane(s.polygon, x1, False)]
            s.parts = [p for p in parts if len(p) >= 3 and polygon_area(p) >= 4.0]
        if all(s.parts for s in hit):
            return (x0, x1)
        for s in hit:
            s.parts = [s.polygon]
    return None


def render(shapes: list[Shape], pole, width: int, height: int, rng: np.random.Generator):
    from PIL import Image, ImageDraw

    top, bottom = rng.uniform(200, 250, 3), rng.uniform(170, 235, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    background = (top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp).repeat(width, axis=1)
    image = Image.fromarray(np.rint(background).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for s in shapes:
        draw.polygon(s.polygon, fill=COLOURS[s.colour])
    if pole is not None:
        draw.rectangle([pole[0], 0, pole[1], height], fill=POLE_COLOUR)
    return image


# ------------------------------------------------------------------------------------------ grammar

def _matches(shapes: list[Shape], shape=None, colour=None, size=None) -> list[int]:
    return [i for i, s in enumerate(shapes)
            if (shape is None or s.shape == shape) and (colour is None or s.colour == colour)
            and (size is None or s.size == size)]


# The grammar's three kinds of sentence, in the order expressions() tries them. Scoring a model per
# kind (python -m remamber.train.measure --by-kind) tells whether it fails on the words that name an
# object or on the position and relation words.
SENTENCE_KINDS = ("attribute", "position", "relation")
POSITION_WORDS = ("on the left", "on the right", "at the top", "at the bottom")
RELATION_WORDS = ("below", "above", "left of", "right of")


def sentence_kind(sentence: str) -> str:
    """The grammar rule that made ``sentence``: "relation" ("the triangle below the green star"),
    "position" ("the blue square on the left") or "attribute" ("the small red circle")."""
    if any(f" {word} the " in sentence for word in RELATION_WORDS):
        return "relation"
    if sentence.endswith(POSITION_WORDS):
        return "position"
    return "attribute"


def target_words(sentence: str) -> tuple[str | None, str | None]:
    """The colour word and shape word that describe the target (None where the sentence names none):
    the first of each before a relation word, so "the triangle below the green star" names the shape
    "triangle" and no colour (green is the other object's)."""
    phrase = sentence
    for word in RELATION_WORDS:
        phrase = phrase.split(f" {word} the ")[0]
    words = phrase.split()
    return (next((w for w in words if w in COLOURS), None), next((w for w in words if w in SHAPES), None))


def object_shape(annotation: dict) -> str:
    """The shape of a generated object from its annotation (category ids are SHAPES' order, from 1)."""
    return SHAPES[annotation["category_id"] - 1]


def object_colour(image: np.ndarray, mask: np.ndarray) -> str:
    """The palette colour of an object in a generated image: the nearest COLOURS entry to the median of
    its pixels (the median ignores the grey pole drawn across some objects)."""
    median = np.median(np.asarray(image)[mask].reshape(-1, 3).astype(np.float64), axis=0)
    return min(COLOURS, key=lambda name: float(np.abs(np.array(COLOURS[name]) - median).sum()))


def expressions(shapes: list[Shape], target: int) -> list[str]:
    """Every sentence of the grammar that selects exactly ``target`` among ``shapes``."""
    return list(dict.fromkeys(sentence for _, sentence in tagged_expressions(shapes, target)))


def tagged_expressions(shapes: list[Shape], target: int) -> list[tuple[str, str]]:
    """expressions() with the kind (SENTENCE_KINDS) of the rule that made each sentence."""
    t = shapes[target]
    margin = 0.5 * t.radius
    found: list[tuple[str, str]] = []

    def noun(shape=None, colour=None, size=None) -> str:
        return " ".join(w for w in (size, colour, shape or "shape") if w)

    # 1. attributes alone: "the circle", "the red circle", "the small circle", "the small red circle"
    for colour in (None, t.colour):
        for size in (None, t.size):
            if _matches(shapes, t.shape, colour, size) == [target]:
                found.append(("attribute", f"the {noun(t.shape, colour, size)}"))
    if _matches(shapes, colour=t.colour) == [target]:
        found.append(("attribute", f"the {t.colour} shape"))
    # 2. extreme position among same-looking objects: "the blue square on the left", "the top star"
    for colour in (None, t.colour):
        group = _matches(shapes, t.shape, colour)
        if len(group) < 2:
            continue
        for word, key, sign in zip(POSITION_WORDS, ("cx", "cx", "cy", "cy"), (1, -1, 1, -1)):
            others = [sign * getattr(shapes[i], key) for i in group if i != target]
            if sign * getattr(t, key) + margin < min(others):
                found.append(("position", f"the {noun(t.shape, colour)} {word}"))
    # 3. relation to a uniquely named landmark: "the triangle below the green star"
    for li, landmark in enumerate(shapes):
        if li == target or _matches(shapes, landmark.shape, landmark.colour) != [li]:
            continue
        tests = (lambda s, l: s.cy - l.cy > s.radius + l.radius, lambda s, l: l.cy - s.cy > s.radius + l.radius,
                 lambda s, l: l.cx - s.cx > s.radius + l.radius, lambda s, l: s.cx - l.cx > s.radius + l.radius)
        for word, test in zip(RELATION_WORDS, tests):
            for colour in (None, t.colour):
                selected = [i for i in _matches(shapes, t.shape, colour) if i != li and test(shapes[i], landmark)]
                if selected == [target]:
                    found.append(("relation", f"the {noun(t.shape, colour)} {word} the {landmark.colour} {landmark.shape}"))
                    break
    return found


# ----------------------------------------------------------------------------------------- writing

@dataclass
class GeneratedDataset:
    root: Path
    images: int
    refs: int
    sentences: int
    annotations: int
    multi_part: int  # annotations with more than one polygon
    splits: dict[str, int]  # refs per split


def _splits(n: int) -> list[str]:
    """Split per image index: the last images go to val and testA, at least one each."""
    names = ["train"] * n
    start = n
    for name, fraction in SPLIT_FRACTIONS:
        k = max(1, round(n * fraction))
        for i in range(start - k, start):
            names[i] = name
        start -= k
    return names


def generate(out: str | Path, images: int = 200, seed: int = 0, dataset: str = "refcoco",
             version: int = GENERATOR_VERSION) -> GeneratedDataset:
    """Write a synthetic dataset of ``images`` images to ``out`` (see the module docstring); ``version``
    picks the object sizes (SIZE_CLASSES_BY_VERSION)."""
    from pycocotools import mask as mask_utils

    from ..imageio import save_png_atomic
    from .refcoco import DATASETS, IMAGE_FOLDER

    if isinstance(images, bool) or not isinstance(images, int) or images < 3:
        raise InputError(f"--images {images!r}: give at least 3 images (one each for train, val and testA)")
    if dataset not in DATASETS:
        raise InputError(f"--dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    if isinstance(version, bool) or version not in SIZE_CLASSES_BY_VERSION:
        raise InputError(f"--generator-version {version!r}: use one of {', '.join(map(str, SIZE_CLASSES_BY_VERSION))}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; pass a folder path")
    image_dir, data_dir = out / IMAGE_FOLDER, out / dataset
    split_of = _splits(images)
    coco_images, annotations, refs = [], [], []
    ann_id = ref_id = sent_id = 0
    for index in range(images):
        rng = np.random.default_rng([seed, index])
        width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        shapes, pole = make_scene(rng, width, height, SIZE_CLASSES_BY_VERSION[version])
        image_id = index + 1
        file_name = f"synthetic_{image_id:06d}.png"
        save_png_atomic(render(shapes, pole, width, height, rng), image_dir / file_name)
        coco_images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for i, s in enumerate(shapes):
            ann_id += 1
            segmentation = [[round(v, 2) for xy in part for v in xy] for part in s.parts]
            rles = mask_utils.frPyObjects(segmentation, height, width)
            xs = [p[0] for part in s.parts for p in part]
            ys = [p[1] for part in s.parts for p in part]
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": SHAPES.index(s.shape) + 1,
                "segmentation": segmentation, "area": float(mask_utils.area(mask_utils.merge(rles))),
                "bbox": [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)],
                "iscrowd": 0,
            })
            candidates = expressions(shapes, i)
            if not candidates:
                continue  # an object no sentence can single out stays a distractor
            order = rng.permutation(len(candidates))[:SENTENCES_PER_REF]
            sentences = []
            for k in sorted(int(j) for j in order):
                sent_id += 1
                text = candidates[k]
                sentences.append({"sent_id": sent_id, "sent": text, "raw": text, "tokens": text.split()})
            ref_id += 1
            refs.append({
                "ref_id": ref_id, "image_id": image_id, "ann_id": ann_id, "category_id": SHAPES.index(s.shape) + 1,
                "split": split_of[index], "file_name": f"synthetic_{image_id:06d}_{ann_id}.png",
                "sentences": sentences, "sent_ids": [x["sent_id"] for x in sentences],
            })
    instances = {
        "info": {"description": "remamber-deploy synthetic shapes (remamber.data.synthetic)", "version": version},
        "images": coco_images, "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)],
    }
    write_text_atomic(data_dir / "instances.json", json.dumps(instances, sort_keys=True, separators=(",", ":")))
    buffer = io.BytesIO()
    pickle.dump(refs, buffer, protocol=2)
    write_bytes_atomic(data_dir / "refs(unc).p", buffer.getvalue())
    splits = {name: sum(r["split"] == name for r in refs) for name in ("train", "val", "testA")}
    result = GeneratedDataset(root=out, images=images, refs=len(refs), sentences=sent_id, annotations=len(annotations),
                              multi_part=sum(len(a["segmentation"]) > 1 for a in annotations), splits=splits)
    settings = {"generator": "remamber.data.synthetic", "version": version, "seed": seed, "images": images,
                "dataset": dataset, "refs": result.refs, "sentences": result.sentences,
                "annotations": result.annotations, "multi_part_annotations": result.multi_part, "refs_per_split": splits}
    write_text_atomic(data_dir / "synthetic.json", json.dumps(settings, sort_keys=True, indent=2) + "\n")
    return result
