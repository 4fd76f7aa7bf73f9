"""The (image, sentence) pairs a bench runs on, and their batched, preprocessed tensors.

Sources, in order of precedence:
* ``--image FILE --text SENTENCE`` (repeatable; one --text for all images or one per image);
* ``--images-dir DIR``: every image file in DIR, with sentences from ``DIR/sentences.txt``
  (lines ``<file name><TAB><sentence>``; several lines per file give several pairs; ``#`` starts a
  comment) or, for files not listed there, from ``<stem>.txt`` beside the image;
* default: the generated demo image, its sentence and its true mask (``remamber.demo.demo_sample()``).

Batches are filled in order; when the pairs do not fill the last batch it is completed by cycling
from the first pair, so every batch has the requested size (engines are built for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Pair:
    name: str     # shown in reports: a file path or "demo:..."
    image: object  # PIL.Image
    text: str
    truth: np.ndarray | None = None  # ground-truth mask (H, W) bool when known (the demo input)


@dataclass
class Batch:
    pairs: list[Pair]
    feeds: dict[str, np.ndarray]  # ONNX input names -> arrays: image (B,3,S,S) f32, input_ids/attention_mask (B,20) i64


def _load_image(path: Path):
    from .. import imageio

    if not path.is_file():
        raise InputError(f"image {path} does not exist; pass an existing image file with --image (or use --images-dir)")
    return imageio.load_image(path)


def pairs_from_files(images: list[str], texts: list[str] | None) -> list[Pair]:
    texts = list(texts or [])
    if not texts:
        raise InputError("--image needs a referring sentence: add --text \"the object to segment\" (one per image, or one for all)")
    if len(texts) not in (1, len(images)):
        raise InputError(
            f"{len(images)} --image files but {len(texts)} --text sentences; give one --text for all images or one per image"
        )
    if len(texts) == 1:
        texts = texts * len(images)
    return [Pair(name=str(p), image=_load_image(Path(p)), text=t) for p, t in zip(images, texts)]


def _sentences_file(directory: Path) -> dict[str, list[str]]:
    listing = directory / "sentences.txt"
    table: dict[str, list[str]] = {}
    if not listing.is_file():
        return table
    from ..validate.text import read_text_file

    for number, raw in enumerate(read_text_file(listing, "sentences file").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" not in line:
            raise InputError(
                f"{listing}:{number}: expected '<image file name><TAB><sentence>', got {raw!r}; separate the two with a tab"
            )
        name, sentence = (part.strip() for part in line.split("\t", 1))
        table.setdefault(name, []).append(sentence)
    return table


def pairs_from_directory(directory: str | Path) -> list[Pair]:
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"--images-dir {directory} is not a folder; pass a folder of images with a sentences.txt")
    listed = _sentences_file(directory)
    pairs = []
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for name in listed:
        if not (directory / name).is_file():
            raise InputError(f"{directory / 'sentences.txt'} names {name!r}, which is not an image in {directory}")
    for path in files:
        sentences = listed.get(path.name)
        if sentences is None and path.with_suffix(".txt").is_file():
            from ..validate.text import read_text_file

            sentences = [read_text_file(path.with_suffix(".txt"), "sentence file").strip()]
        if not sentences:
            continue  # an image without a sentence is not a referring-segmentation input
        image = _load_image(path)
        pairs.extend(Pair(name=str(path), image=image, text=s) for s in sentences)
    if not pairs:
        raise InputError(
            f"--images-dir {directory}: no image with a sentence found; add sentences.txt "
            f"('<file name><TAB><sentence>' per line) or a <image stem>.txt per image ({', '.join(IMAGE_SUFFIXES)})"
        )
    return pairs


def default_pairs() -> list[Pair]:
    from ..demo import demo_sample

    demo = demo_sample()
    return [Pair(name=demo.name, image=demo.image, text=demo.sentence, truth=demo.mask)]


def collect_pairs(images: list[str] | None, texts: list[str] | None, images_dir: str | None) -> list[Pair]:
    if images and images_dir:
        raise InputError("give either --image/--text or --images-dir, not both")
    if images:
        return pairs_from_files(images, texts)
    if texts:
        raise InputError("--text needs --image: pass the image the sentence refers to")
    if images_dir:
        return pairs_from_directory(images_dir)
    return default_pairs()


def make_batches(pairs: list[Pair], batch: int, resolution: int) -> list[Batch]:
    """Preprocess every pair at ``resolution`` and group them into full batches of ``batch``."""
    import torch

    from .. import imageio, tokenizer

    if batch < 1:
        raise InputError(f"--batch must be at least 1, got {batch}")
    count = -(-len(pairs) // batch) * batch
    ordered = [pairs[i % len(pairs)] for i in range(count)]
    # Preprocess each distinct pair once; cycling reuses the tensors.
    cache: dict[int, object] = {}
    for pair in ordered:
        if id(pair) not in cache:
            cache[id(pair)] = imageio.preprocess(pair.image, resolution)
    batches = []
    for start in range(0, count, batch):
        chunk = ordered[start : start + batch]
        image = torch.cat([cache[id(p)] for p in chunk], dim=0)
        input_ids, attention_mask = tokenizer.tokenize([p.text for p in chunk])
        batches.append(
            Batch(
                pairs=chunk,
                feeds={
                    "image": np.ascontiguousarray(image.numpy(), dtype=np.float32),
                    "input_ids": np.ascontiguousarray(np.asarray(input_ids), dtype=np.int64),
                    "attention_mask": np.ascontiguousarray(np.asarray(attention_mask), dtype=np.int64),
                },
            )
        )
    return batches
