"""The synthetic RefCOCO-layout generator (remamber.data.synthetic) and `make-dataset`.

Checks that do not trust the generator's own bookkeeping: byte-identical output per seed, the
ground-truth masks (decoded by pycocotools) against the rendered pixels' colours, the sentences
against the objects they name, and the layout through the dataset reader."""

from __future__ import annotations

import json
import pickle
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from remamber.data.refcoco import RefDataset
from remamber.data.synthetic import (COLOURS, SENTENCE_KINDS, SHAPES, expressions, generate, make_scene,
                                     object_colour, target_words,
                                     sentence_kind, tagged_expressions)
from remamber.errors import InputError

IMAGES = 24


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    result = generate(root, images=IMAGES, seed=3)
    return root, result


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(dataset, tmp_path):
    root, _ = dataset
    again = generate(tmp_path / "again", images=IMAGES, seed=3)
    assert _files(again.root) == _files(root)
    other = generate(tmp_path / "other", images=IMAGES, seed=4)
    assert _files(other.root)["refcoco/instances.json"] != _files(root)["refcoco/instances.json"]


def test_layout_splits_and_sentences(dataset):
    root, result = dataset
    data = RefDataset(root, "refcoco", "unc")
    assert data.splits() == ["testA", "train", "val"]
    refs = data.refs
    assert len(refs) == result.refs and sum(len(r["sentences"]) for r in refs) == result.sentences
    assert max(len(r["sentences"]) for r in refs) >= 2
    assert {r["split"] for r in refs} == {"train", "val", "testA"}
    # splits are per image, as in RefCOCO (unc): no image in two splits
    split_of_image = {}
    for r in refs:
        assert split_of_image.setdefault(r["image_id"], r["split"]) == r["split"]
    for split in ("train", "val", "testA"):
        assert data.samples(split)
    # several refs per image: the sentence, not the image, decides the answer
    per_image = Counter(r["image_id"] for r in refs)
    assert max(per_image.values()) >= 3
    # one- and multi-part polygons
    parts = Counter(len(a["segmentation"]) for a in data.annotations.values())
    assert parts[1] > 0 and parts[2] > 0 and set(parts) <= {1, 2}
    assert all(isinstance(a["segmentation"][0], list) for a in data.annotations.values())


def _dominant_colour(pixels: np.ndarray) -> tuple[str, float]:
    """The palette colour nearest to most pixels, and the share of pixels within 40 of it."""
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names], np.float32)
    dist = np.linalg.norm(pixels[:, None, :].astype(np.float32) - palette[None], axis=2)
    nearest = dist.argmin(axis=1)
    best = np.bincount(nearest, minlength=len(names)).argmax()
    return names[best], float((dist[:, best] < 40).mean())


def test_masks_cover_the_drawn_objects_and_sentences_name_them(dataset):
    root, _ = dataset
    data = RefDataset(root)
    checked = 0
    for ref in data.refs:
        ann = data.annotations[ref["ann_id"]]
        image = np.asarray(Image.open(root / "train2014" / data.images[ref["image_id"]]["file_name"]).convert("RGB"))
        mask = data.mask(ann["id"])
        assert mask.sum() > 20
        colour, share = _dominant_colour(image[mask])
        assert share > 0.9, f"ref {ref['ref_id']}: only {share:.0%} of its mask has the object's colour"
        shape = SHAPES[ann["category_id"] - 1]
        for sentence in ref["sentences"]:
            words = sentence["sent"].split()
            assert words[0] == "the" and sentence["tokens"] == words
            # the noun phrase before any position/relation words describes the target itself
            head = words[1:words.index(shape) + 1] if shape in words else words[1:words.index("shape") + 1]
            assert head[-1] in (shape, "shape")
            named_colours = [w for w in head if w in COLOURS]
            assert named_colours in ([], [colour]), f"{sentence['sent']!r} but the object is {colour}"
            # target_words (measure --by-word) reads the same words from the sentence alone
            assert target_words(sentence["sent"]) == (named_colours[0] if named_colours else None,
                                                      shape if shape in head else None), sentence["sent"]
            checked += 1
        # object_colour (measure --by-word) finds the colour the pixel count above found, pole or not
        assert object_colour(image, mask) == colour
    assert checked > 50


def test_no_sentence_names_two_objects_of_one_image(dataset):
    root, _ = dataset
    refs = pickle.loads((root / "refcoco" / "refs(unc).p").read_bytes())
    seen = {}
    for ref in refs:
        for s in ref["sentences"]:
            key = (ref["image_id"], s["sent"])
            assert seen.setdefault(key, ref["ann_id"]) == ref["ann_id"], f"ambiguous: {key}"
    # every sentence id is unique and listed in sent_ids
    ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert len(ids) == len(set(ids)) and all(r["sent_ids"] == [s["sent_id"] for s in r["sentences"]] for r in refs)


def test_make_dataset_command(tmp_path, capsys):
    from remamber.cli import main

    assert main(["make-dataset", "--out", str(tmp_path / "d"), "--images", "5", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "5 images" in out and "remamber-deploy eval --data" in out
    settings = json.loads((tmp_path / "d" / "refcoco" / "synthetic.json").read_text())
    assert settings["seed"] == 1 and settings["images"] == 5
    assert main(["make-dataset", "--out", str(tmp_path / "e"), "--images", "2"]) == 2
    assert "--images must be at least 3" in capsys.readouterr().err


def test_generator_version_2_draws_larger_objects_and_says_so(tmp_path, capsys):
    """make-dataset --generator-version 2: every object's radius lies in version 2's range for its size
    word (which starts above version 1's), the written objects are larger (mean annotation area over
    1.5x version 1's for the same seed: 1.77x on these 6 images, 2.08x on 1000), both files record the
    version, and an unknown version is refused by name."""
    from remamber.cli import main
    from remamber.data.synthetic import IMAGE_SIZES, SIZE_CLASSES_BY_VERSION

    v1, v2 = SIZE_CLASSES_BY_VERSION[1], SIZE_CLASSES_BY_VERSION[2]
    assert v2["small"][0] > v1["small"][1] and v2["big"][0] > v1["big"][1]
    rng = np.random.default_rng(5)
    for _ in range(40):
        width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        shapes, _ = make_scene(rng, width, height, v2)
        assert len(shapes) >= 2
        for shape in shapes:
            lo, hi = v2[shape.size]
            assert lo <= shape.radius / min(width, height) <= hi

    areas = {}
    for version in (1, 2):
        out = tmp_path / f"v{version}"
        assert main(["make-dataset", "--out", str(out), "--images", "6", "--seed", "2",
                     "--generator-version", str(version)]) == 0
        instances = json.loads((out / "refcoco" / "instances.json").read_text())
        assert instances["info"]["version"] == version
        assert json.loads((out / "refcoco" / "synthetic.json").read_text())["version"] == version
        areas[version] = np.mean([a["area"] for a in instances["annotations"]])
    capsys.readouterr()
    assert areas[2] > 1.5 * areas[1]
    with pytest.raises(InputError, match="--generator-version 3"):
        generate(tmp_path / "v3", images=3, version=3)


def test_sentence_kind_names_the_rule_that_made_each_sentence():
    """sentence_kind() parses a sentence back to the grammar rule that produced it (tagged by the
    generator itself), over many random scenes; every kind occurs, and expressions() is the
    de-duplicated list of the tagged sentences."""
    rng = np.random.default_rng(11)
    kinds = Counter()
    for _ in range(150):
        shapes, _ = make_scene(rng, 320, 240)
        for target in range(len(shapes)):
            tagged = tagged_expressions(shapes, target)
            for kind, sentence in tagged:
                assert sentence_kind(sentence) == kind, (kind, sentence)
                kinds[kind] += 1
            assert expressions(shapes, target) == list(dict.fromkeys(s for _, s in tagged))
    assert set(kinds) == set(SENTENCE_KINDS) and min(kinds.values()) > 20, kinds
    # hand-written sentences of each rule
    assert sentence_kind("the small red circle") == "attribute"
    assert sentence_kind("the green shape") == "attribute"
    assert sentence_kind("the square on the left") == "position"
    assert sentence_kind("the blue star at the bottom") == "position"
    assert sentence_kind("the triangle left of the green star") == "relation"
    assert sentence_kind("the red circle below the blue square") == "relation"
