"""Attribute queries (remamber/train/queries.py, train --attribute-queries): each query's target is
the union of exactly the objects that match its phrase, where "match" comes from the generator's own
scene (shape and colour as drawn), not from the pixel-based colour the queries read; and batches mix
them in deterministically.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from remamber.errors import InputError

from _synthetic_helpers import generator_scenes, small_shapes_split

RES = 64
SEED = 1
IMAGES = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from remamber.train.queries import build_queries

    root, dataset, split = small_shapes_split(tmp_path_factory, "query-data", IMAGES, SEED, RES)
    return root, dataset, split, build_queries(dataset, split)


def test_image_queries_select_every_matching_object():
    from remamber.train.queries import image_queries

    found = image_queries([("circle", "red"), ("circle", "blue"), ("square", "red")])
    assert found == {"the circle": [0, 1], "the red shape": [0, 2], "the red circle": [0],
                     "the blue shape": [1], "the blue circle": [1], "the square": [2], "the red square": [2]}


def test_queries_are_unions_of_the_objects_the_generator_drew_with_those_words(data):
    _, dataset, split, queries = data
    scenes = generator_scenes(SEED, IMAGES)
    assert split.image_ids and len(queries) > 0
    largest = 0
    for slot, image_id in enumerate(split.image_ids):
        objects = scenes[image_id]
        ann_ids = dataset.image_annotations(image_id)
        assert len(ann_ids) == len(objects)
        expected = {}
        for i, (shape, colour) in enumerate(objects):
            for phrase in (f"the {shape}", f"the {colour} shape", f"the {colour} {shape}"):
                expected.setdefault(phrase, set()).add(i)
        rows = (queries.image_index == slot).nonzero().flatten().tolist()
        assert sorted(queries.sentences[r] for r in rows) == sorted(expected)
        largest = max(largest, max(len(m) for m in expected.values()))
        for r in rows:
            members = expected[queries.sentences[r]]
            union = np.zeros_like(dataset.mask(ann_ids[0]))
            for i in members:
                union |= dataset.mask(ann_ids[i])
            want = F.interpolate(torch.from_numpy(union.astype(np.float32))[None, None], size=(RES, RES), mode="nearest")
            assert torch.equal(queries.masks[r].float(), want[0]), queries.sentences[r]
    assert largest > 1  # some query selects several objects (else this would not test the unions)


def test_queries_refuse_a_dataset_that_is_not_the_synthetic_shapes(data):
    from remamber.data.refcoco import RefDataset
    from remamber.train.queries import build_queries

    root, _, split, _ = data
    other = RefDataset(root)
    other.categories = {1: "person", 2: "dog"}
    with pytest.raises(InputError, match="needs the synthetic shapes dataset"):
        build_queries(other, split)


@pytest.mark.parametrize("fraction,batch,slots", [(0.0, 8, 0), (0.5, 8, 4), (0.25, 8, 2), (0.01, 8, 1), (0.9, 2, 1)])
def test_query_slots(fraction, batch, slots):
    from remamber.train.loop import TrainConfig

    assert TrainConfig(batch_size=batch, attribute_queries=fraction).query_slots() == slots


def test_query_stream_is_independent_of_the_sentence_stream():
    from remamber.train.loop import batch_indices

    assert torch.equal(batch_indices(50, 4, 3, 7), batch_indices(50, 4, 3, 7, stream=0))
    assert not torch.equal(batch_indices(50, 4, 3, 7), batch_indices(50, 4, 3, 7, stream=1))


def _config(**kw):
    from remamber.train.loop import TrainConfig

    base = dict(resolution=RES, batch_size=4, steps=2, lr=1e-3, warmup=1, seed=3, eval_every=0, eval_limit=4,
                checkpoint_every=2, log_every=1, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_training_with_queries_is_deterministic_and_uses_them(data, tmp_path, monkeypatch):
    from remamber.train import loop

    _, _, split, queries = data
    seen = []
    original = loop.segmentation_loss

    def spy(logits, masks):
        seen.append(masks.shape[0])
        return original(logits, masks)

    monkeypatch.setattr(loop, "segmentation_loss", spy)
    first = loop.train(_config(attribute_queries=0.5), split, None, tmp_path / "a", say=lambda *_: None, queries=queries)
    second = loop.train(_config(attribute_queries=0.5), split, None, tmp_path / "b", say=lambda *_: None, queries=queries)
    plain = loop.train(_config(), split, None, tmp_path / "c", say=lambda *_: None)
    assert first["losses"] == second["losses"] and all(math.isfinite(v) for v in first["losses"])
    assert first["losses"] != plain["losses"]
    assert seen == [4] * 6  # the batch size holds with queries in it
    with pytest.raises(InputError, match="attribute_queries: checkpoint 0.5, now None"):
        loop.train(_config(), split, None, tmp_path / "d", resume=tmp_path / "a" / "checkpoint.pth")
    with pytest.raises(ValueError, match="no attribute queries were given"):
        loop.train(_config(attribute_queries=0.5), split, None, tmp_path / "e")


def test_cli_trains_with_queries_and_area_targets_and_records_both(data, tmp_path):
    from remamber.cli import main

    root, _, _, _ = data
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(out), "--resolution", str(RES), "--batch-size", "2",
                 "--steps", "2", "--warmup", "1", "--attribute-queries", "0.5", "--mask-resize", "area", "--eval-every", "0",
                 "--final-splits", "", "--threads", "1", "--no-progress"]) == 0
    meta = json.loads((out / "model_fp16.json").read_text())
    assert meta["training"]["attribute_queries"] == 0.5 and meta["training"]["mask_resize"] == "area"
    assert torch.load(out / "checkpoint.pth", weights_only=True)["config"]["mask_resize"] == "area"


@pytest.mark.parametrize("argv,message", [
    (["--attribute-queries", "0.5", "--sentences-per-image", "2"], "do not combine"),
    (["--attribute-queries", "1.5"], "--attribute-queries"),
])
def test_cli_refuses_bad_query_options(tmp_path, capsys, argv, message):
    from remamber.cli import main

    assert main(["train", "--out", str(tmp_path / "o"), "--no-progress", *argv]) == 2
    assert message in capsys.readouterr().err


def test_query_kind():
    from remamber.train.queries import query_kind

    assert [query_kind(p) for p in ("the circle", "the red shape", "the red circle")] == [
        "shape", "colour", "colour and shape"]


class _LookupModel(torch.nn.Module):
    """Stand-in model: returns the mask stored for (image, sentence), as logits of +-1."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, images, ids, attention):
        return torch.stack([self.table[(float(im.sum()), tuple(t.tolist()))] * 2.0 - 1.0 for im, t in zip(images, ids)])


def test_score_queries_oracle_and_every_object(data):
    from remamber.train.data import resize_mask
    from remamber.train.queries import query_kind, score_queries

    _, dataset, split, queries = data
    keys = [(float(split.images[queries.image_index[i]].sum()), tuple(queries.input_ids[i].tolist()))
            for i in range(len(queries))]
    oracle = _LookupModel({k: queries.masks[i].float() for i, k in enumerate(keys)})
    assert all(v["oIoU"] == pytest.approx(1.0) for v in score_queries(oracle, split, queries).values())
    # a model that marks every object of the image: IoU of a query = its objects' pixels / all objects' pixels
    every = {}
    for slot, image_id in enumerate(split.image_ids):
        union = np.logical_or.reduce([dataset.mask(a) for a in dataset.image_annotations(image_id)])
        every[slot] = resize_mask(union, RES).float()
    blind = _LookupModel({k: every[int(queries.image_index[i])] for i, k in enumerate(keys)})
    scores = score_queries(blind, split, queries)
    for kind in scores:
        rows = [i for i in range(len(queries)) if query_kind(queries.sentences[i]) == kind]
        inter = sum(float(queries.masks[i].sum()) for i in rows)
        union = sum(float(every[int(queries.image_index[i])].sum()) for i in rows)
        assert scores[kind]["n"] == len(rows) and scores[kind]["oIoU"] == pytest.approx(inter / union)
        assert scores[kind]["every_object_oIoU"] == pytest.approx(inter / union)
    assert scores["shape"]["oIoU"] < 1.0
