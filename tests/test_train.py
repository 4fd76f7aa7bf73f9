"""Training support (remamber/train): the official loss against an independent NumPy computation,
deterministic training (same command -> same losses), exact resume, the fp16 export read by the
checkpoint loader, the learning-rate schedule, and clear errors for bad options.

Kept fast: the tiny model at 64 x 64 on a 6-image generated dataset, a handful of steps.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from remamber.errors import InputError
from remamber.train.loss import segmentation_loss
from remamber.train.schedule import lr_factor

RES = 64


def numpy_loss(logits: np.ndarray, masks: np.ndarray) -> float:
    """dice + mean BCE-with-logits written out in float64 from the formulas (REMAMBER_SPEC 1.2)."""
    x = logits.astype(np.float64).reshape(logits.shape[0], -1)
    t = masks.astype(np.float64).reshape(masks.shape[0], -1)
    p = 1.0 / (1.0 + np.exp(-x))
    dice = 1.0 - (2.0 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    bce = -(t * np.log(p) + (1.0 - t) * np.log(1.0 - p))
    return float(dice.mean() + bce.mean())


def test_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(3, 1, 8, 8)).astype(np.float32)
    masks = (rng.random((3, 1, 8, 8)) > 0.6).astype(np.float32)
    masks[2] = 0  # an empty target: dice's +1 smoothing keeps it finite
    got = segmentation_loss(torch.from_numpy(logits), torch.from_numpy(masks)).item()
    assert got == pytest.approx(numpy_loss(logits, masks), rel=1e-5, abs=1e-6)


def test_loss_hand_values():
    # logits 0 everywhere: p = 0.5, BCE = ln 2; one pixel of four is foreground:
    # dice = 1 - (2*0.5 + 1) / (2 + 1 + 1) = 0.5
    logits = torch.zeros(1, 1, 2, 2)
    masks = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert segmentation_loss(logits, masks).item() == pytest.approx(0.5 + math.log(2), rel=1e-6)


def test_loss_refuses_mismatched_shapes():
    with pytest.raises(InputError, match="resize the masks"):
        segmentation_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 8, 8))


def test_lr_schedule():
    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from remamber.data.refcoco import RefDataset
    from remamber.data.synthetic import generate
    from remamber.train.data import load_split

    root = tmp_path_factory.mktemp("train-data")
    generate(root, images=6, seed=1)
    dataset = RefDataset(root)
    return root, load_split(dataset, "train", RES), load_split(dataset, "val", RES)


def _config(**kw):
    from remamber.train.loop import TrainConfig

    base = dict(resolution=RES, batch_size=2, steps=4, lr=1e-3, warmup=1, seed=3, eval_every=0, eval_limit=4,
                checkpoint_every=2, log_every=1, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_preloaded_split(tiny_data):
    _, train, val = tiny_data
    assert train.images.shape[1:] == (3, RES, RES) and train.masks.shape[1:] == (1, RES, RES)
    assert len(train) == train.input_ids.shape[0] > 0 and len(val) > 0
    images, ids, attention, masks = train.batch(torch.arange(2))
    assert masks.dtype == torch.float32 and set(masks.unique().tolist()) <= {0.0, 1.0}


def test_training_is_deterministic_and_resume_is_exact(tiny_data, tmp_path):
    from remamber.train.loop import train

    _, train_split, _ = tiny_data
    first = train(_config(), train_split, None, tmp_path / "a", say=lambda *_: None)
    second = train(_config(), train_split, None, tmp_path / "b", say=lambda *_: None)
    assert first["losses"] == second["losses"]
    assert len(first["losses"]) == 4 and all(math.isfinite(v) for v in first["losses"])
    assert first["losses"][-1] != first["losses"][0]  # the weights did change

    # Interrupt a run right after its step-2 checkpoint, resume it, and compare with the uninterrupted run.
    _stop_at(train_split, tmp_path / "mid", 2)
    resumed = train(_config(), train_split, None, tmp_path / "mid", resume=tmp_path / "mid" / "checkpoint.pth",
                    say=lambda *_: None)
    assert resumed["losses"] == first["losses"][2:]
    final_a = first["model"].state_dict()
    for k, v in resumed["model"].state_dict().items():
        assert torch.equal(v, final_a[k]), k
    rows = [json.loads(x) for x in (tmp_path / "mid" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def _stop_at(train_split, out, stop):
    """Run the 4-step configuration but interrupt it right after step ``stop``'s checkpoint."""
    from remamber.train import loop

    original = loop.save_training_state

    class Stop(Exception):
        pass

    def save_then_stop(path, model, optimizer, scheduler, step, config, heads=None):
        original(path, model, optimizer, scheduler, step, config, heads)
        if step == stop:
            raise Stop

    loop.save_training_state = save_then_stop
    try:
        with pytest.raises(Stop):
            loop.train(_config(), train_split, None, out, say=lambda *_: None)
    finally:
        loop.save_training_state = original


def test_resume_refuses_other_options(tiny_data, tmp_path):
    from remamber.train.loop import train

    _, train_split, _ = tiny_data
    train(_config(steps=2), train_split, None, tmp_path / "a", say=lambda *_: None)
    with pytest.raises(InputError, match="lr: checkpoint 0.001, now 0.002"):
        train(_config(steps=2, lr=2e-3), train_split, None, tmp_path / "b", resume=tmp_path / "a" / "checkpoint.pth")
    with pytest.raises(InputError, match="sentences_per_image: checkpoint None, now 2"):
        train(_config(steps=2, sentences_per_image=2), train_split, None, tmp_path / "c",
              resume=tmp_path / "a" / "checkpoint.pth")


def test_grouped_batches_put_sentences_about_different_objects_of_one_image_together():
    from remamber.train.loop import GroupedBatches

    # 5 images; image i has i + 1 referred objects (mask ids 10 * i + o), object o has o + 1 sentences.
    image_index, mask_index = [], []
    for i in range(5):
        for o in range(i + 1):
            image_index += [i] * (o + 1)
            mask_index += [10 * i + o] * (o + 1)
    image_index, mask_index = torch.tensor(image_index), torch.tensor(mask_index)
    sampler = GroupedBatches(image_index, mask_index, batch_size=6, per_image=3)
    seen_images = []
    for step in range(4):
        idx = sampler(seed=7, step=step)
        assert idx.shape == (6,) and torch.equal(idx, sampler(seed=7, step=step))  # a function of (seed, step)
        for group in idx.view(2, 3):
            images = set(image_index[group].tolist())
            assert len(images) == 1  # one image per group of 3
            image = images.pop()
            seen_images.append(image)
            masks = mask_index[group].tolist()
            # as many different objects as the image has, up to 3
            assert len(set(masks)) == min(3, image + 1)
    # one epoch = floor(5 / 2) = 2 steps; each epoch shows distinct images
    assert len(set(seen_images[:4])) == 4 and len(set(seen_images[4:])) == 4
    assert not torch.equal(sampler(seed=7, step=0), sampler(seed=8, step=0))
    with pytest.raises(ValueError, match="not a multiple"):
        GroupedBatches(image_index, mask_index, batch_size=5, per_image=3)


def test_grouped_training_runs_and_is_deterministic(tiny_data, tmp_path):
    from remamber.train.loop import train

    _, train_split, _ = tiny_data
    first = train(_config(steps=2, sentences_per_image=2), train_split, None, tmp_path / "a", say=lambda *_: None)
    second = train(_config(steps=2, sentences_per_image=2), train_split, None, tmp_path / "b", say=lambda *_: None)
    assert first["losses"] == second["losses"] and all(math.isfinite(v) for v in first["losses"])


def test_evaluate_groups_partition_the_sentences(tiny_data):
    """evaluate(group_of=...): one group for everything reproduces the overall scores; the grammar's
    kinds split the sentences without losing or repeating one."""
    from remamber.data.synthetic import SENTENCE_KINDS, sentence_kind
    from remamber.model import build_model
    from remamber.train.evaluate import evaluate

    _, _, val = tiny_data
    model = build_model("conv", "tiny", seed=0)
    overall = evaluate(model, val, batch_size=4)
    assert "groups" not in overall
    single = evaluate(model, val, batch_size=4, group_of=lambda sentence: "all")
    assert single["groups"] == {"all": {k: single[k] for k in ("oIoU", "mIoU", "n")}}
    assert {k: single[k] for k in ("oIoU", "mIoU", "n")} == overall
    by_kind = evaluate(model, val, batch_size=4, group_of=sentence_kind)["groups"]
    assert set(by_kind) <= set(SENTENCE_KINDS)
    assert sum(g["n"] for g in by_kind.values()) == overall["n"] == len(val)
    counts = {k: sum(sentence_kind(s) == k for s in val.sentences) for k in by_kind}
    assert {k: g["n"] for k, g in by_kind.items()} == counts


def test_cli_end_to_end_and_export_loads(tiny_data, tmp_path, capsys):
    """remamber-deploy train on a tiny folder: metrics, curve, and an fp16 file the loader reads."""
    from remamber.checkpoint import load_checkpoint
    from remamber.cli import main
    from remamber.model import build_model

    root, _, _ = tiny_data
    out = tmp_path / "run"
    rc = main(["train", "--data", str(root), "--out", str(out), "--resolution", str(RES), "--batch-size", "2",
               "--steps", "2", "--warmup", "1", "--eval-every", "1", "--eval-limit", "2", "--final-splits", "val",
               "--threads", "1", "--no-progress"])
    assert rc == 0
    meta = json.loads((out / "model_fp16.json").read_text())
    assert meta["storage_dtype"] == "float16" and meta["resolution"] == RES and meta["training"]["steps"] == 2
    # the native backward is used when the library is built, and the metadata says which ran
    from remamber.ops import cpu_backend

    assert meta["training"]["scan_backend"] == ("cpu" if cpu_backend.unavailable_reason() is None else "reference")
    assert 0.0 <= meta["metrics"]["val"]["oIoU"] <= 1.0
    assert (out / "curve.png").stat().st_size > 0
    assert (out / "metrics.csv").read_text().startswith("step,loss,lr,val_oIoU")
    saved = torch.load(out / "model_fp16.pth", weights_only=True)
    assert all(v.dtype == torch.float16 for v in saved["model"].values() if v.is_floating_point())
    model = build_model("conv", "tiny", seed=99)
    report = load_checkpoint(model, out / "model_fp16.pth")
    assert not report.missing
    trained = torch.load(out / "checkpoint.pth", weights_only=True)["model"]
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, trained[k].to(v.dtype), rtol=1e-3, atol=1e-3)
    # the exported file scores through measure, per kind of sentence too
    from remamber.train import measure

    capsys.readouterr()
    assert measure.main(["--checkpoint", str(out / "model_fp16.pth"), "--data", str(root), "--split", "val",
                         "--resolution", str(RES), "--threads", "1", "--by-kind", "--by-word", "--queries"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert sum(g["n"] for g in scores["groups"].values()) == scores["n"] > 0
    assert sum(scores["outcomes"].values()) == pytest.approx(1.0)
    # --by-word splits exactly the "several objects" share
    details = scores.get("outcome_details", {})
    assert sum(details.values()) == pytest.approx(scores["outcomes"]["several objects"])
    assert all(k.startswith("several objects: ") for k in details)
    assert set(scores["queries"]) <= {"shape", "colour", "colour and shape"} and scores["queries"]


def test_word_fit_says_which_named_word_the_other_marked_objects_contradict():
    from remamber.train.evaluate import WORD_FITS, word_fit

    assert word_fit("red", "circle", [("red", "circle")]) == "fit the colour and shape words"
    assert word_fit("red", "circle", [("red", "square")]) == "contradict the shape word"
    assert word_fit("red", "circle", [("blue", "circle"), ("red", "circle")]) == "contradict the colour word"
    assert word_fit("red", "circle", [("blue", "star")]) == "contradict both words"
    # a word the sentence does not say cannot be contradicted
    assert word_fit(None, "circle", [("blue", "circle")]) == "fit the colour and shape words"
    assert word_fit("red", None, [("red", "star")]) == "fit the colour and shape words"
    assert set(WORD_FITS) == {word_fit(c, "circle", [(o, s)]) for c in ("red",) for o in ("red", "blue")
                              for s in ("circle", "star")}


def test_outcome_names_what_the_mask_picked():
    """remamber.train.evaluate.outcome on hand-made masks, one case per outcome (from its definition)."""
    from remamber.train.evaluate import MARKED_SHARE, OUTCOMES, outcome

    objects = {}
    for k, (y, x) in enumerate([(2, 2), (2, 20), (20, 2)], start=1):
        m = np.zeros((32, 32), dtype=bool)
        m[y:y + 8, x:x + 8] = True
        objects[k] = m
    empty = np.zeros((32, 32), dtype=bool)
    half_target = objects[1].copy()
    half_target[2:7] = False  # 3 of 8 rows: IoU 0.375 with the target, every pixel on it
    two = objects[2] | objects[3]
    off = empty.copy()
    off[28:32, 28:32] = True
    mostly_off = off | objects[2]
    mostly_off[2:9, 20:28] = False  # one row of object 2 (8 px) against 16 px of background: 1/3 > MARKED_SHARE
    assert 8 / 24 > MARKED_SHARE
    cases = {"right object": objects[1], "target, poor mask": half_target, "one wrong object": objects[2],
             "several objects": two, "background": off, "empty": empty}
    assert set(cases) == set(OUTCOMES)
    for expected, pred in cases.items():
        assert outcome(pred, 1, objects) == expected, expected
    assert outcome(mostly_off, 1, objects) == "one wrong object"


def test_text_encoder_lr_mult_gives_the_text_encoder_its_own_group():
    from remamber.train.loop import TEXT_ENCODER_PREFIX, TrainConfig, build

    model, optimizer, scheduler, _ = build(TrainConfig(steps=10, warmup=2, lr=1e-3, text_encoder_lr_mult=5.0))
    assert len(optimizer.param_groups) == 2
    rest, text = optimizer.param_groups
    assert text["lr"] == pytest.approx(5 * rest["lr"])
    text_ids = {id(p) for p in text["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in text_ids) == name.startswith(TEXT_ENCODER_PREFIX), name
    assert any(n.startswith("text_encoder.") for n, _ in model.named_parameters())
    scheduler.step()
    assert text["lr"] == pytest.approx(5 * rest["lr"])  # the schedule scales both groups alike
    # default: one group, as before the option (old checkpoints resume)
    _, plain, _, _ = build(TrainConfig(steps=10, warmup=2))
    assert len(plain.param_groups) == 1


@pytest.mark.parametrize("argv,message", [
    (["--data", "/nonexistent/folder"], "--data /nonexistent/folder is not a folder"),
    (["--text-encoder-lr-mult", "-1"], "--text-encoder-lr-mult"),
    (["--resolution", "100"], "multiple of 32"),
    (["--steps", "5", "--warmup", "5"], "--warmup 5 must be below --steps 5"),
    (["--resume", "/nonexistent/ckpt.pth"], "no such file"),
    (["--batch-size", "6", "--sentences-per-image", "4"], "--batch-size 6 is not a multiple of --sentences-per-image 4"),
    (["--object-shape-loss-start", "5"], "--object-shape-loss-start needs --object-shape-loss WEIGHT"),
    (["--steps", "5", "--warmup", "1", "--object-shape-loss", "1", "--object-shape-loss-start", "5"],
     "--object-shape-loss-start 5 must be below --steps 5"),
])
def test_cli_refuses_bad_input(tmp_path, capsys, argv, message):
    from remamber.cli import main

    rc = main(["train", "--out", str(tmp_path / "o"), "--no-progress", *argv])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_object_probe_reads_colour_from_pixel_features_and_nothing_from_constant_ones(tmp_path):
    """remamber.train.probe.object_decodability with stand-in models: stage features that are the
    image itself (average-pooled) carry each object's colour, so the colour probe is right on the
    held-out objects; constant features score the majority rate only."""
    import torch.nn.functional as F

    from remamber.data.refcoco import RefDataset
    from remamber.data.synthetic import generate
    from remamber.train.probe import object_decodability

    generate(tmp_path, images=40, seed=2)
    dataset = RefDataset(tmp_path)

    class Pixels:
        def forward_features(self, image, ids, attention):
            return [F.avg_pool2d(image, k) for k in (4, 8, 16, 32)]

    class Constant:
        def forward_features(self, image, ids, attention):
            return [torch.ones(image.shape[0], 3, image.shape[2] // k, image.shape[3] // k) for k in (4, 8, 16, 32)]

    found = object_decodability(Pixels(), dataset, "train", "val", 64)
    assert found["n"] > 10 and len(found["stages"]) == 4
    assert found["stages"][0]["colour"] >= 0.9 > found["colour_majority"]
    flat = object_decodability(Constant(), dataset, "train", "val", 64)
    for stage in flat["stages"]:
        assert stage["colour"] == pytest.approx(flat["colour_majority"])
        assert stage["shape"] == pytest.approx(flat["shape_majority"])


def test_decodability_probe_finds_the_words_and_nothing_in_constant_features():
    """remamber.train.probe.attribute_decodability: a random tiny encoder's pooled features name the colour
    and shape word of sentences it was not fitted on; forced constant, they score the majority rate only."""
    from remamber.data.synthetic import COLOURS, SHAPES
    from remamber.model import build_model
    from remamber.train.probe import attribute_decodability

    sentences = [f"the {size}{colour} {shape}{where}" for colour in COLOURS for shape in SHAPES
                 for size in ("", "small ", "big ") for where in ("", " on the left", " at the top")]
    fit, held_out = sentences[0::2], sentences[1::2]
    model = build_model("conv", "tiny", seed=3).eval()
    found = attribute_decodability(model, fit, held_out)
    assert found["n"] == len(held_out)
    assert found["colour"] > 0.9 and found["shape"] > 0.9
    assert found["colour_majority"] < 0.3 and found["shape_majority"] < 0.4
    norm = model.text_encoder.text_model.final_layer_norm
    with torch.no_grad():
        norm.weight.zero_()  # every sentence gets the same pooled feature
    blind = attribute_decodability(model, fit, held_out)
    assert blind["colour"] == pytest.approx(blind["colour_majority"])
    assert blind["shape"] == pytest.approx(blind["shape_majority"])


def test_probe_tells_a_text_blind_model_from_one_that_reads_the_text(tiny_data):
    """remamber.train.probe: a random model's sentences differ (cosine well below 1) and swapping them
    changes its mask; with the text encoder's output forced constant the cosine is 1 and nothing changes."""
    from remamber.model import build_model
    from remamber.train.probe import sentence_swap, text_feature_cosine

    _, _, val = tiny_data
    model = build_model("conv", "tiny", seed=3).eval()
    assert text_feature_cosine(model) < 0.9
    reads = sentence_swap(model, val, 4)
    assert reads["n"] == 4 and reads["changed_fraction"] > 0
    norm = model.text_encoder.text_model.final_layer_norm
    with torch.no_grad():
        norm.weight.zero_()  # every token's feature becomes the bias: the collapse, made exact
        norm.bias.copy_(torch.linspace(-1.0, 1.0, norm.bias.numel()))
    assert text_feature_cosine(model) == pytest.approx(1.0, abs=1e-6)
    assert sentence_swap(model, val, 4)["changed_fraction"] == 0.0


def _nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest resize written out: output pixel (i, j) takes input (floor(i * h / H), floor(j * w / W))."""
    rows = (np.arange(height) * mask.shape[0] // height).clip(max=mask.shape[0] - 1)
    cols = (np.arange(width) * mask.shape[1] // width).clip(max=mask.shape[1] - 1)
    return mask[rows][:, cols]


def test_ceiling_scores_the_true_masks_resized_there_and_back(tiny_data, capsys):
    """measure --ceiling against the same I/U computed with a NumPy nearest resize."""
    from remamber.train import measure
    from remamber.train.evaluate import ceiling

    root, _, val = tiny_data
    inter = union = 0
    ious = []
    for i in range(len(val)):
        gt = val.gt_masks[int(val.mask_index[i])]
        back = _nearest(_nearest(gt, RES, RES), *gt.shape)
        inter_i, union_i = int((back & gt).sum()), int((back | gt).sum())
        inter, union = inter + inter_i, union + union_i
        ious.append(inter_i / union_i)
    result = ceiling(val)
    assert result["n"] == len(val)
    assert result["oIoU"] == pytest.approx(inter / union) and result["mIoU"] == pytest.approx(np.mean(ious))
    assert 0.5 < result["oIoU"] < 1.0  # 64 px loses the outlines of 240-320 px images, but not the objects
    capsys.readouterr()
    assert measure.main(["--ceiling", "--data", str(root), "--split", "val", "--resolution", str(RES)]) == 0
    assert json.loads(capsys.readouterr().out)["oIoU"] == pytest.approx(result["oIoU"])
    with pytest.raises(SystemExit):
        measure.main(["--data", str(root), "--resolution", str(RES)])  # neither --checkpoint nor --ceiling


def test_mask_resize_nearest_takes_the_corner_and_area_the_majority():
    from remamber.train.data import resize_mask

    mask = np.zeros((4, 4), dtype=bool)
    mask[1:, 1:] = True  # bottom-right 3 x 3
    assert resize_mask(mask, 2, "nearest")[0].tolist() == [[0, 0], [0, 1]]
    assert resize_mask(mask, 2, "area")[0].tolist() == [[0, 1], [1, 1]]  # 1/4 -> 0, 2/4 -> 1, 4/4 -> 1
    with pytest.raises(InputError, match="unknown mask resize"):
        resize_mask(mask, 2, "bilinear")


def _area_majority(mask: np.ndarray, size: int) -> np.ndarray:
    """Adaptive average pooling written out: cell i covers rows floor(i*h/S) .. ceil((i+1)*h/S) - 1."""
    h, w = mask.shape
    out = np.zeros((size, size), dtype=bool)
    for i in range(size):
        r0, r1 = i * h // size, -(-(i + 1) * h // size)
        for j in range(size):
            c0, c1 = j * w // size, -(-(j + 1) * w // size)
            out[i, j] = mask[r0:r1, c0:c1].mean() >= 0.5
    return out


def test_area_targets_raise_the_ceiling(tiny_data):
    from remamber.data.refcoco import RefDataset
    from remamber.train.data import load_split
    from remamber.train.evaluate import ceiling

    root, _, near = tiny_data
    area = load_split(RefDataset(root), "val", RES, mask_resize="area")
    inter = union = 0
    for i in range(len(area)):
        gt = area.gt_masks[int(area.mask_index[i])]
        assert np.array_equal(area.masks[int(area.mask_index[i])][0].numpy().astype(bool), _area_majority(gt, RES))
        back = _nearest(_area_majority(gt, RES), *gt.shape)
        inter, union = inter + int((back & gt).sum()), union + int((back | gt).sum())
    assert ceiling(area)["oIoU"] == pytest.approx(inter / union)
    assert ceiling(area)["oIoU"] > ceiling(near)["oIoU"]


def test_training_refuses_targets_resized_otherwise_than_configured(tiny_data, tmp_path):
    from remamber.train.loop import train

    _, train_split, _ = tiny_data  # loaded with the default, nearest
    with pytest.raises(ValueError, match="resized with 'nearest', the config says 'area'"):
        train(_config(steps=2, mask_resize="area"), train_split, None, tmp_path / "a", say=lambda *_: None)


def test_match_probe_finds_a_comparison_where_the_features_make_it_and_none_in_constant_ones(tmp_path):
    """remamber.train.probe.match_features / match_decodability / match_head_accuracy with a stand-in
    model: its "corr" tap compares every pixel with the colour the sentence names (minus the distance to
    that palette colour, a function of image and sentence), its "backbone" tap is constant. The colour
    question is answered from the first on held-out sentences and not from the second, which scores the
    share of "no" only; a head reading the comparison channel gets the same answers, and its negation the
    opposite ones."""
    import torch.nn.functional as F

    from remamber import tokenizer
    from remamber.data.refcoco import RefDataset
    from remamber.data.synthetic import COLOURS, generate, target_words
    from remamber.imageio import MEAN, STD
    from remamber.train.objects import SHAPE_STAGES, ShapeHead
    from remamber.train.probe import match_decodability, match_features, match_head_accuracy

    generate(tmp_path, images=60, seed=4)
    dataset = RefDataset(tmp_path)
    named = {}  # token ids -> the sentence's named colour, normalised as the model's input
    for sample in (*dataset.samples("train"), *dataset.samples("val")):
        colour = target_words(sample.sentence)[0]
        ids = tuple(tokenizer.tokenize([sample.sentence])[0][0].tolist())
        rgb = torch.tensor(COLOURS[colour] if colour else (0, 0, 0), dtype=torch.float32) / 255
        named[ids] = (rgb - torch.tensor(MEAN)) / torch.tensor(STD)

    class Comparer:
        def forward_and_taps(self, image, ids, attention):
            want = torch.stack([named[tuple(row.tolist())] for row in ids])[:, :, None, None]
            close = -(image - want).abs().sum(1, keepdim=True)
            # stage 1 at full resolution: the objects' edges blend with the background less
            taps = {"corr": [F.avg_pool2d(close, k) for k in (1, 2, 16, 32)],
                    "backbone": [torch.ones(image.shape[0], 2, image.shape[2] // k, image.shape[3] // k)
                                 for k in (1, 2, 16, 32)]}
            taps["fused"] = taps["corr"]
            return None, taps

    fit = match_features(Comparer(), dataset, "train", 64)
    test = match_features(Comparer(), dataset, "val", 64)
    found = match_decodability(fit, test)
    assert found["colour_n"] > 20 and 0.5 < found["colour_no"] < 0.95
    assert set(found["probes"]) == {(tap, s) for tap in ("backbone", "corr", "fused") for s in SHAPE_STAGES}
    for s in SHAPE_STAGES:
        assert found["probes"][("corr", s)]["colour"] >= 0.9
        assert found["probes"][("backbone", s)]["colour"] == pytest.approx(found["colour_no"])
    head = ShapeHead((1, 1, 1, 1), 2)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        head.linear.bias.copy_(torch.tensor([0.5, -1.0]))  # stage-1 distance below 0.5: "has the colour"
    right = match_head_accuracy(head, *test, "corr")
    assert right["colour"] >= 0.9
    assert right["shape"] == pytest.approx(found["shape_no"])  # its shape logit is -1: always "no"
    with torch.no_grad():
        head.linear.weight.neg_()
        head.linear.bias.neg_()
    assert match_head_accuracy(head, *test, "corr")["colour"] <= 0.1
