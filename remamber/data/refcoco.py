"""Reader for the RefCOCO / RefCOCO+ / RefCOCOg layout that LAVT and ReMamber use.

    <data>/<dataset>/instances.json      COCO annotations (images, annotations, categories)
    <data>/<dataset>/refs(<split_by>).p  pickled list of refs: ref_id, image_id, ann_id, split,
                                         sentences [{sent, tokens, sent_id}], sent_ids
    <data>/train2014/                    the COCO images, named by instances.json's file_name

It follows the official loader (ReMamber's ``ref_dataset/refer.py`` and ``refdataset.py``):
* split selection as ``REFER.getRefIds``: ``train``/``val`` match exactly, ``testA``/``testB``/
  ``testC`` match refs whose split contains the letter (``testAB`` counts for both), ``test`` matches
  every test split;
* every sentence of every ref of the split, in the pickle's order;
* masks decoded by pycocotools: a list of polygons (``frPyObjects``), a list of RLEs, or one RLE;
  the per-part masks are summed and a pixel is foreground where the sum is exactly 1
  (the official ``annot[ref_mask == 1] = 1``; parts of RefCOCO polygons do not overlap, so this
  is the union in practice).

The refs pickle is read with a restricted unpickler that accepts plain containers, strings and
numbers only: a pickle that names any other class is refused, because unpickling it could run code.
Every problem with the data (missing file, corrupt pickle, a ref naming an absent image or
annotation, an unknown split) raises ``DatasetError`` naming the file and the fix.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

DATASETS = ("refcoco", "refcoco+", "refcocog")
SPLIT_BYS = ("unc", "google", "umd")
IMAGE_FOLDER = "train2014"
REF_KEYS = ("ref_id", "image_id", "ann_id", "split", "sentences")
# Names a refs pickle may use: builtins only (Python 2 pickles say __builtin__). Protocol 2+ pickles
# of plain dicts/lists/strings/numbers need no global at all; these cover older protocols.
_SAFE_GLOBALS = {
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool", "complex")
} | {("__builtin__", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "unicode", "int", "long",
                                   "float", "bool", "complex")}
_PY2_NAMES = {"unicode": "str", "long": "int"}


class DatasetError(InputError):
    """A dataset folder, file or record that cannot be read as the RefCOCO layout."""


@dataclass(frozen=True)
class Sample:
    """One referring expression to evaluate: a sentence of a ref, with what it refers to."""

    key: str  # "<ref_id>:<sent_id>": stable across runs (resume matches on it)
    ref_id: int
    sent_id: int
    image_id: int
    ann_id: int
    sentence: str


class _RefsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            import builtins

            return getattr(builtins, _PY2_NAMES.get(name, name))
        raise pickle.UnpicklingError(
            f"it names the class {module}.{name}; a refs file holds only lists, dicts, strings and numbers, "
            "and unpickling other classes could run code"
        )


def load_refs_pickle(path: Path) -> list:
    """The refs list from ``refs(<split_by>).p``, read without running any code from the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    try:
        refs = _RefsUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, UnicodeDecodeError ...
        raise DatasetError(
            f"{path} is not a readable refs pickle ({type(exc).__name__}: {exc}); re-download or re-generate it "
            "(a refs file is a pickled list of dicts with ref_id, image_id, ann_id, split, sentences)"
        ) from None
    if not isinstance(refs, list):
        raise DatasetError(f"{path} holds a {type(refs).__name__}, expected a list of refs (dicts)")
    for i, ref in enumerate(refs):
        missing = [k for k in REF_KEYS if not isinstance(ref, dict) or k not in ref]
        if missing:
            raise DatasetError(f"{path}: ref #{i} lacks {', '.join(missing)}; every ref needs {', '.join(REF_KEYS)}")
        if not isinstance(ref["sentences"], list) or not all(isinstance(s, dict) and "sent" in s for s in ref["sentences"]):
            raise DatasetError(f"{path}: ref {ref['ref_id']!r} has sentences that are not a list of dicts with 'sent'")
    return refs


def split_matches(split: str, ref_split: str) -> bool:
    """Whether a ref whose split is ``ref_split`` belongs to the requested ``split`` (as REFER.getRefIds)."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split in ("testAB", "testBC", "testAC"):
        return ref_split == split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def decode_segmentation(segmentation, height: int, width: int, where: str = "annotation") -> np.ndarray:
    """Boolean (H, W) mask of a COCO segmentation, as the official loader builds it."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list) and segmentation and isinstance(segmentation[0], list):
            parts = [p for p in segmentation]
            if any(len(p) < 6 or len(p) % 2 for p in parts):
                raise ValueError("a polygon needs an even number of coordinates, at least 3 points")
            rles = mask_utils.frPyObjects(parts, height, width)
        elif isinstance(segmentation, list) and segmentation and all(isinstance(p, dict) for p in segmentation):
            rles = [_rle(p, height, width) for p in segmentation]
        elif isinstance(segmentation, dict):
            rles = [_rle(segmentation, height, width)]
        else:
            raise ValueError(f"expected a list of polygons, a list of RLEs or one RLE, got {type(segmentation).__name__}"
                             + (" (empty)" if not segmentation else ""))
        decoded = mask_utils.decode(rles)
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    except Exception as exc:
        raise DatasetError(f"{where}: cannot decode its segmentation ({type(exc).__name__}: {exc})") from None
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    if decoded.shape[:2] != (height, width):
        raise DatasetError(f"{where}: its RLE is {decoded.shape[0]}x{decoded.shape[1]} but the image is {height}x{width}")
    # Official: m = np.sum(m, axis=2).astype(np.uint8); annot[m == 1] = 1.
    return decoded.sum(axis=2).astype(np.uint8) == 1


def _rle(obj: dict, height: int, width: int) -> dict:
    from pycocotools import mask as mask_utils

    if "counts" not in obj or "size" not in obj:
        raise ValueError("an RLE needs 'size' and 'counts'")
    if [int(v) for v in obj["size"]] != [height, width]:
        raise DatasetError(f"its RLE is {obj['size'][0]}x{obj['size'][1]} but the image is {height}x{width}")
    if isinstance(obj["counts"], list):  # uncompressed RLE
        return mask_utils.frPyObjects(obj, height, width)
    counts = obj["counts"].encode("ascii") if isinstance(obj["counts"], str) else obj["counts"]
    return {"size": list(obj["size"]), "counts": counts}


class RefDataset:
    """The refs, images and annotations of one dataset/split_by, indexed by id."""

    def __init__(self, root: str | Path, dataset: str = "refcoco", split_by: str = "unc"):
        root = Path(root)
        if dataset not in DATASETS:
            raise DatasetError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
        if split_by not in SPLIT_BYS:
            raise DatasetError(f"unknown split-by {split_by!r}; use one of {', '.join(SPLIT_BYS)} "
                               "(refcoco/refcoco+: unc; refcocog: umd or google)")
        if not root.is_dir():
            raise DatasetError(f"data folder {root} does not exist; pass the folder that holds {dataset}/ and {IMAGE_FOLDER}/")
        self.root, self.dataset, self.split_by = root, dataset, split_by
        self.dataset_dir = root / dataset
        self.image_dir = root / IMAGE_FOLDER
        self.instances_path = self.dataset_dir / "instances.json"
        self.refs_path = self.dataset_dir / f"refs({split_by}).p"
        if not self.dataset_dir.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DatasetError(f"{self.dataset_dir} does not exist; folders in {root}: {', '.join(present) or 'none'}")
        for path in (self.instances_path, self.refs_path):
            if not path.is_file():
                hint = ""
                if path == self.refs_path:
                    others = sorted(p.name for p in self.dataset_dir.glob("refs(*).p"))
                    hint = f" (present: {', '.join(others)}; choose it with --split-by)" if others else ""
                raise DatasetError(f"{path} is missing{hint}; the layout is <data>/<dataset>/instances.json and "
                                   f"<data>/<dataset>/refs(<split_by>).p")
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder {self.image_dir} is missing; put the COCO train2014 images there")
        self._read_instances()
        self.refs = load_refs_pickle(self.refs_path)

    def _read_instances(self) -> None:
        try:
            instances = json.loads(self.instances_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{self.instances_path} is not readable JSON ({exc}); re-download or re-generate it") from None
        if not isinstance(instances, dict) or not all(isinstance(instances.get(k), list) for k in ("images", "annotations")):
            raise DatasetError(f"{self.instances_path} lacks the COCO 'images' and 'annotations' lists")
        try:
            self.images = {img["id"]: img for img in instances["images"]}
            self.annotations = {ann["id"]: ann for ann in instances["annotations"]}
        except (TypeError, KeyError):
            raise DatasetError(f"{self.instances_path}: every image and annotation needs an 'id'") from None
        self.categories = {c.get("id"): c.get("name") for c in instances.get("categories") or [] if isinstance(c, dict)}

    def splits(self) -> list[str]:
        """The split names the refs use, e.g. ['testA', 'testB', 'train', 'val']."""
        return sorted({str(r["split"]) for r in self.refs})

    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        """Every sentence of every ref of ``split`` (in file order), the first ``limit`` when given.

        The refs behind the returned samples are checked: their image and annotation exist in
        instances.json, the annotation belongs to the image, and the image file is present."""
        refs = [r for r in self.refs if split_matches(split, str(r["split"]))]
        if not refs:
            raise DatasetError(
                f"split {split!r} has no refs in {self.refs_path}; its refs use the splits {', '.join(self.splits())} "
                "(test selects every test split, testA/testB also select testAB)"
            )
        samples: list[Sample] = []
        for ref in refs:
            sent_ids = ref.get("sent_ids") or []
            for i, sent in enumerate(ref["sentences"]):
                sent_id = sent.get("sent_id", sent_ids[i] if i < len(sent_ids) else i)
                samples.append(Sample(key=f"{ref['ref_id']}:{sent_id}", ref_id=ref["ref_id"], sent_id=sent_id,
                                      image_id=ref["image_id"], ann_id=ref["ann_id"], sentence=str(sent["sent"])))
                if limit is not None and len(samples) >= limit:
                    break
            if limit is not None and len(samples) >= limit:
                break
        self._check(samples)
        return samples

    def _check(self, samples: list[Sample]) -> None:
        bad_images = sorted({s.image_id for s in samples if s.image_id not in self.images}, key=str)
        if bad_images:
            raise DatasetError(f"{self.refs_path} names image ids {_few(bad_images)} that {self.instances_path} does not "
                               "list; the two files come from different downloads")
        bad_anns = sorted({s.ann_id for s in samples if s.ann_id not in self.annotations}, key=str)
        if bad_anns:
            raise DatasetError(f"{self.refs_path} names annotation ids {_few(bad_anns)} that {self.instances_path} does "
                               "not list; the two files come from different downloads")
        wrong = sorted({s.ref_id for s in samples if self.annotations[s.ann_id].get("image_id") != s.image_id}, key=str)
        if wrong:
            raise DatasetError(f"refs {_few(wrong)} name an annotation of another image in {self.instances_path}")
        missing = sorted({self.images[s.image_id].get("file_name", "?") for s in samples
                          if not (self.image_dir / str(self.images[s.image_id].get("file_name", ""))).is_file()})
        if missing:
            raise DatasetError(f"{len(missing)} image file(s) the split needs are not in {self.image_dir}: {_few(missing)}")

    def image_annotations(self, image_id: int) -> list[int]:
        """The annotation ids of one image, in increasing order (every object it holds, referred to or not)."""
        return self._annotations_by_image.get(image_id, [])

    @functools.cached_property
    def _annotations_by_image(self) -> dict:
        by_image: dict = {}
        for ann in self.annotations.values():
            by_image.setdefault(ann.get("image_id"), []).append(ann["id"])
        return {image_id: sorted(ids) for image_id, ids in by_image.items()}

    def image(self, image_id: int):
        """The image as RGB PIL, checked against the size instances.json records."""
        from ..imageio import load_image

        info = self.images[image_id]
        image = load_image(self.image_dir / info["file_name"])
        expected = (info.get("width"), info.get("height"))
        if image.size != expected:
            raise DatasetError(f"{info['file_name']} is {image.size[0]}x{image.size[1]} but {self.instances_path} "
                               f"records {expected[0]}x{expected[1]}; the images and annotations do not match")
        return image

    def mask(self, ann_id: int) -> np.ndarray:
        """The ground-truth mask of an annotation, boolean (H, W) at its image's size."""
        ann = self.annotations[ann_id]
        info = self.images[ann["image_id"]]
        if "segmentation" not in ann:
            raise DatasetError(f"annotation {ann_id} in {self.instances_path} has no segmentation")
        return decode_segmentation(ann["segmentation"], int(info["height"]), int(info["width"]),
                                   where=f"annotation {ann_id} in {self.instances_path}")


def _few(items, n: int = 5) -> str:
    items = list(items)
    shown = ", ".join(map(str, items[:n]))
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
