"""The object-shape auxiliary loss (remamber/train/objects.py, train --object-shape-loss): every object
of every image is listed with the shape the generator drew, its cell weights are the share of each
cell it covers, the head averages the features over exactly those weights, the loss reaches the
backbone stages it reads and nothing else, and the head trains and resumes with the run but never
enters the exported weights.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from remamber.errors import InputError

from _synthetic_helpers import generator_scenes, small_shapes_split

RES = 64
SEED = 1
IMAGES = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from remamber.train.objects import build_object_shapes

    root, dataset, split = small_shapes_split(tmp_path_factory, "object-data", IMAGES, SEED, RES)
    return root, dataset, split, build_object_shapes(dataset, split, colours=True)


def _stage_features(split):
    """A seeded tiny model in training mode and its stage features for the first two train images."""
    from remamber.model import build_model

    model = build_model("conv", "tiny", seed=0).train()
    rows = torch.tensor([0, 1])
    _, feats = model.forward_and_features(split.images[rows], split.input_ids[:2], split.attention_mask[:2])
    return model, feats, rows


def _assert_gradient_reaches_the_backbone_and_not_the_decoder(model):
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone.patch_embed"))
    assert all(g is None or g.abs().sum() == 0 for n, g in grads.items() if n.startswith("decoder."))


def _each_objects_logits(head, feats, rows, objects):
    """(sample, image slot, object index, its head logits in float64) for every object of each sample's
    image, scored one at a time on its own sample's features, in the image's object order."""
    for b, slot in enumerate(rows.tolist()):
        for o in objects.by_image[slot].tolist():
            yield b, slot, o, head(feats, torch.tensor([b]), objects.weights[o:o + 1])[0].double()


def _assert_mean_of_the_terms_and_trains(loss, accuracy, terms, right, model, head):
    """The loss is the mean of the independently computed per-object terms, the accuracy the share of
    right answers, and its gradient reaches the backbone and the head but not the decoder."""
    assert loss.item() == pytest.approx(np.mean(terms), rel=1e-5)
    assert accuracy.item() == pytest.approx(np.mean(right))
    loss.backward()
    _assert_gradient_reaches_the_backbone_and_not_the_decoder(model)
    assert head.linear.weight.grad.abs().sum() > 0


def test_objects_are_the_generators_with_their_shapes_and_coverage(data):
    from remamber.data.synthetic import COLOURS, SHAPES

    _, dataset, split, objects = data
    drawn = generator_scenes(SEED, IMAGES)
    scenes = {i: [shape for shape, _ in objs] for i, objs in drawn.items()}
    colours, palette = {i: [colour for _, colour in objs] for i, objs in drawn.items()}, list(COLOURS)
    assert len(objects) == sum(len(scenes[i]) for i in split.image_ids) > len(split.image_ids)
    for slot, image_id in enumerate(split.image_ids):
        mine = objects.by_image[slot]
        assert torch.equal(objects.image_index[mine], torch.full((len(mine),), slot))
        assert [SHAPES[int(c)] for c in objects.label[mine]] == scenes[image_id]
        assert [palette[int(c)] for c in objects.colour[mine]] == colours[image_id]
        for o, ann_id in zip(mine.tolist(), dataset.image_annotations(image_id)):
            mask = dataset.mask(ann_id)
            h, w = mask.shape
            weights = objects.weights[o, 0].double().numpy()
            assert weights.min() >= 0 and weights.max() <= 1
            # the weights are the covered share of each cell: they add up to the object's area in cells
            assert weights.sum() == pytest.approx(mask.sum() * RES * RES / (h * w), rel=2e-3)
        # the per-shape cover of the image is the sum of its objects' shares (at most the whole cell)
        for k in range(len(SHAPES)):
            want = sum((objects.weights[o, 0].float() for o in mine.tolist() if int(objects.label[o]) == k),
                       torch.zeros(RES, RES)).clamp(max=1.0)
            assert torch.allclose(objects.cover[slot, k].float(), want, atol=2e-3)


def test_cell_labels_name_the_shape_covering_most_of_a_cell_and_ignore_the_rest():
    from remamber.train.objects import cell_labels

    cover = torch.zeros(1, 4, 8, 8)
    cover[0, 0, 0:4, 0:4] = 1.0         # a circle fills the top-left quarter
    cover[0, 2, 4:8, 0:1] = 1.0         # a triangle fills a quarter of the bottom-left quarter
    cover[0, 1, 4:8, 4:7] = 1.0         # a square fills three quarters of the bottom-right one
    cover[0, 3, 4:8, 7:8] = 1.0         # and a star the rest of it
    assert cell_labels(cover, (2, 2)).tolist() == [[[0, -100], [-100, 1]]]
    assert cell_labels(cover, (8, 8))[0, 5].tolist() == [2, -100, -100, -100, 1, 1, 1, 3]
    cover[0, 2, 4:8, 0:2] = 1.0         # at half of it, the cell counts
    assert cell_labels(cover, (2, 2))[0, 1, 0] == 2


def test_head_averages_each_stage_over_the_objects_cells():
    from remamber.train.objects import SHAPE_STAGES, ShapeHead

    torch.manual_seed(0)
    dims = (3, 5, 7, 9)
    head = ShapeHead(dims, 4)
    feats = [torch.randn(2, c, 16 // 2 ** i, 16 // 2 ** i) for i, c in enumerate(dims)]
    weights = torch.zeros(2, 1, 16, 16)
    weights[0, 0, 0:4, 0:4] = 1.0     # top-left 4x4 block of sample 1
    weights[1, 0, 8:16, 4:8] = 0.5    # a half-covered strip of sample 0
    sample = torch.tensor([1, 0])
    pooled = []
    for o in range(2):
        parts = []
        for s in SHAPE_STAGES:
            f = feats[s][int(sample[o])].double().numpy()
            k = 16 // f.shape[-1]
            w = weights[o, 0].double().numpy().reshape(f.shape[-2], k, f.shape[-1], k).mean((1, 3))
            parts.append((f * w).sum((1, 2)) / w.sum())
        pooled.append(np.concatenate(parts))
    want = np.stack(pooled) @ head.linear.weight.double().detach().numpy().T + head.linear.bias.double().detach().numpy()
    np.testing.assert_allclose(head(feats, sample, weights).double().detach().numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["shape", "colour"])
def test_object_loss_is_the_cross_entropy_of_each_objects_class_and_reaches_only_the_stages_it_reads(data, kind):
    import torch.nn.functional as F

    from remamber.train import objects as module

    _, _, split, objects = data
    model, feats, rows = _stage_features(split)
    head = getattr(module, f"build_{kind}_head")(model)
    loss, accuracy = getattr(module, f"object_{kind}_loss")(head, feats, rows, objects)
    # independently: every object of the two images, scored on its own sample's features
    labels = objects.label if kind == "shape" else objects.colour
    picked, right = [], []
    for _, _, o, logits in _each_objects_logits(head, feats, rows, objects):
        picked.append(-F.log_softmax(logits, 0)[int(labels[o])].item())
        right.append(int(logits.argmax()) == int(labels[o]))
    assert len(picked) > 2
    _assert_mean_of_the_terms_and_trains(loss, accuracy, picked, right, model, head)


def test_colour_loss_refuses_objects_built_without_colours(data):
    from remamber.train.objects import build_colour_head, build_object_shapes, object_colour_loss

    _, dataset, split, _ = data
    model, feats, rows = _stage_features(split)
    with pytest.raises(ValueError, match="colours=True"):
        object_colour_loss(build_colour_head(model), feats, rows, build_object_shapes(dataset, split))


def test_named_words_are_the_colour_and_shape_of_the_target_not_of_a_related_object():
    from remamber.data.synthetic import COLOURS, SHAPES
    from remamber.train.objects import named_words

    colour, shape = list(COLOURS).index, SHAPES.index
    got = named_words(["the red circle", "the small blue square on the left", "the triangle below the green star",
                       "the purple shape", "the biggest shape"])
    assert got.tolist() == [[colour("red"), shape("circle")], [colour("blue"), shape("square")],
                            [-1, shape("triangle")], [colour("purple"), -1], [-1, -1]]
    assert named_words([]).shape == (0, 2)


def test_match_loss_asks_each_object_whether_it_has_the_named_colour_and_shape(data):
    """The targets come from the generator's own scenes, not from the objects table under test."""
    import torch.nn.functional as F

    from remamber.data.synthetic import COLOURS, SHAPES
    from remamber.train.objects import build_match_head, object_match_loss

    _, _, split, objects = data
    model, feats, rows = _stage_features(split)
    drawn = generator_scenes(SEED, IMAGES)
    first = drawn[split.image_ids[0]][0]  # sample 0 names the colour and shape of image 0's first object
    words = torch.tensor([[list(COLOURS).index(first[1]), SHAPES.index(first[0])],
                          [-1, SHAPES.index(drawn[split.image_ids[1]][-1][0])]])  # sample 1: a shape word only
    head = build_match_head(model)
    loss, accuracy = object_match_loss(head, feats, rows, objects, words)
    terms, right = [], []
    truth = {slot: iter(drawn[split.image_ids[slot]]) for slot in rows.tolist()}  # generator order = object order
    for b, slot, _, logits in _each_objects_logits(head, feats, rows, objects):
        shape, colour = next(truth[slot])
        for k, (asked, has) in enumerate(((int(words[b, 0]), list(COLOURS).index(colour)),
                                          (int(words[b, 1]), SHAPES.index(shape)))):
            if asked < 0:
                continue
            want = float(asked == has)
            terms.append(F.binary_cross_entropy_with_logits(logits[k], torch.tensor(want, dtype=torch.float64)).item())
            right.append((logits[k].item() > 0) == bool(want))
    assert len(terms) == 2 * len(drawn[split.image_ids[0]]) + len(drawn[split.image_ids[1]])
    _assert_mean_of_the_terms_and_trains(loss, accuracy, terms, right, model, head)


@pytest.mark.parametrize("kind", ["object", "pixel"])
def test_match_losses_with_no_word_asked_are_zero_and_need_colours(data, kind):
    from remamber.train import objects as module

    build_head, match_loss = ((module.build_match_head, module.object_match_loss) if kind == "object" else
                              (module.build_pixel_match_head, module.pixel_match_loss))
    _, dataset, split, objects = data
    model, feats, rows = _stage_features(split)
    head = build_head(model)
    loss, accuracy = match_loss(head, feats, rows, objects, torch.full((2, 2), -1))
    assert loss.item() == 0.0 and math.isnan(accuracy.item())
    with pytest.raises(ValueError, match="colours=True"):
        match_loss(head, feats, rows, module.build_object_shapes(dataset, split), torch.zeros((2, 2), dtype=torch.long))


def test_pixel_shape_loss_is_the_cross_entropy_of_the_object_cells_and_reaches_the_backbone(data):
    import torch.nn.functional as F

    from remamber.train.objects import SHAPE_STAGES, build_pixel_shape_head, pixel_shape_loss

    _, _, split, objects = data
    model, feats, rows = _stage_features(split)
    head = build_pixel_shape_head(model)
    loss, accuracy = pixel_shape_loss(head, feats, rows, objects)
    # independently: per stage, the mean of -log softmax over the cells objects cover at least half of
    want = []
    for conv, s in zip(head.convs, SHAPE_STAGES):
        logp = F.log_softmax(conv(feats[s]).double(), 1).detach().numpy()
        h, w = logp.shape[-2:]
        k = RES // h
        shares = objects.cover[rows].double().numpy().reshape(2, 4, h, k, w, k).mean((3, 5))
        picked = [-logp[b, shares[b, :, i, j].argmax(), i, j] for b in range(2) for i in range(h) for j in range(w)
                  if shares[b, :, i, j].sum() >= 0.5]
        assert picked
        want.append(np.mean(picked))
    assert loss.item() == pytest.approx(np.mean(want), rel=1e-5)
    assert 0 <= accuracy.item() <= 1
    loss.backward()
    _assert_gradient_reaches_the_backbone_and_not_the_decoder(model)


def test_pixel_match_loss_asks_every_cell_whether_its_object_has_the_named_colour_and_shape(data):
    """Targets from the generator's own scenes (which object has which colour and shape) and each object's
    cell shares; per stage, the mean binary cross-entropy over the cells of the channels a word is named for."""
    from remamber.data.synthetic import COLOURS, SHAPES
    from remamber.train.objects import SHAPE_STAGES, build_pixel_match_head, pixel_match_loss

    _, _, split, objects = data
    model, feats, rows = _stage_features(split)
    drawn = generator_scenes(SEED, IMAGES)
    first = drawn[split.image_ids[0]][0]
    words = torch.tensor([[list(COLOURS).index(first[1]), SHAPES.index(first[0])],
                          [list(COLOURS).index(drawn[split.image_ids[1]][-1][1]), -1]])  # sample 1: a colour word only
    head = build_pixel_match_head(model)
    loss, accuracy = pixel_match_loss(head, feats, rows, objects, words)
    want, right = [], []
    for conv, s in zip(head.convs, SHAPE_STAGES):
        logits = conv(feats[s]).double().detach().numpy()
        h, w = logits.shape[-2:]
        k = RES // h
        terms = []
        for b, slot in enumerate(rows.tolist()):
            share = np.zeros((2, h, w))
            for o, (shape, colour) in zip(objects.by_image[slot].tolist(), drawn[split.image_ids[slot]]):
                cells = objects.weights[o, 0].double().numpy().reshape(h, k, w, k).mean((1, 3))
                share[0] += cells * (list(COLOURS).index(colour) == int(words[b, 0]))
                share[1] += cells * (SHAPES.index(shape) == int(words[b, 1]))
            share = np.minimum(share, 1.0)
            for c in range(2):
                if words[b, c] < 0:
                    continue
                x, t = logits[b, c], share[c]
                terms += list((np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))).ravel())
                right += list(((x > 0) == (t >= 0.5)).ravel())
        assert len(terms) == 3 * h * w
        want.append(np.mean(terms))
    assert loss.item() == pytest.approx(np.mean(want), rel=1e-5)
    assert accuracy.item() == pytest.approx(np.mean(right), abs=1e-6)  # returned in float32
    loss.backward()
    _assert_gradient_reaches_the_backbone_and_not_the_decoder(model)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_forward_and_features_gives_the_forward_logits(data):
    from remamber.model import build_model

    _, _, split, _ = data
    model = build_model("conv", "tiny", seed=0).eval()
    args = (split.images[:2], split.input_ids[:2], split.attention_mask[:2])
    with torch.no_grad():
        logits, feats = model.forward_and_features(*args)
        assert torch.equal(logits, model(*args))
        assert [f.shape[1] for f in feats] == list(model.config.dims)


def test_backbone_features_are_each_stages_block_output_before_its_twister(data):
    """features="backbone" gives what each stage's VSS blocks return (read here with forward hooks),
    the same logits, and a shape loss on them that reaches no stage's Twister or text fusion except
    through the stages after it (stage s's input is stage s-1's fused output)."""
    from remamber.model import build_model
    from remamber.train.objects import SHAPE_STAGES, build_shape_head, object_shape_loss

    _, _, split, objects = data
    model = build_model("conv", "tiny", seed=0).train()
    args = (split.images[:2], split.input_ids[:2], split.attention_mask[:2])
    hooked = []
    handles = [stage.blocks.register_forward_hook(lambda m, i, o: hooked.append(o)) for stage in model.backbone.layers]
    logits, inner = model.forward_and_features(*args, features="backbone")
    for h in handles:
        h.remove()
    fused_logits, fused = model.forward_and_features(*args)
    assert torch.equal(logits, fused_logits)
    assert len(inner) == len(hooked) == 4 and all(torch.equal(a, b) for a, b in zip(inner, hooked))
    assert not any(torch.equal(a, b) for a, b in zip(inner, fused))  # the Twister changes every stage
    loss, _ = object_shape_loss(build_shape_head(model), inner, torch.tensor([0, 1]), objects)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    reached = lambda prefix: any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix))
    last = max(SHAPE_STAGES)
    assert reached("backbone.patch_embed") and reached("backbone.layers.0.blocks")
    assert reached(f"backbone.multimodal_blocks.{last - 1}")  # feeds stage `last` through the downsample
    assert not reached(f"backbone.multimodal_blocks.{last}") and not reached(f"backbone.local_text_fusion.{last}")
    assert not reached("decoder.")
    with pytest.raises(ValueError, match="fused.*backbone"):
        model.forward_and_features(*args, features="twister")


def test_corr_taps_are_each_stages_local_text_fusion_output(data):
    """forward_and_taps's "corr" is what each stage's ImageTextCorr returns (read with forward hooks), with
    the forward's logits, and a match loss on it reaches the local text fusion of the stages it reads, and
    neither their Twisters nor the decoder (the Twister of stage s - 1 only through stage s's input)."""
    from remamber.model import build_model
    from remamber.train.objects import SHAPE_STAGES, build_match_head, named_words, object_match_loss

    _, _, split, objects = data
    model = build_model("conv", "tiny", seed=0).train()
    args = (split.images[:2], split.input_ids[:2], split.attention_mask[:2])
    hooked = []
    handles = [m.register_forward_hook(lambda m, i, o: hooked.append(o)) for m in model.backbone.local_text_fusion]
    logits, taps = model.forward_and_taps(*args)
    for h in handles:
        h.remove()
    assert sorted(taps) == ["backbone", "corr", "fused"]
    assert len(taps["corr"]) == len(hooked) == 4 and all(a is b for a, b in zip(taps["corr"], hooked))
    assert torch.equal(logits, model.forward_and_features(*args)[0])
    assert [f.shape[1] for f in taps["corr"]] == list(model.config.dims)
    words = named_words(split.sentences[:2])
    loss, _ = object_match_loss(build_match_head(model), taps["corr"], split.image_index[:2], objects, words)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    reached = lambda prefix: any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix))
    last = max(SHAPE_STAGES)
    assert all(reached(f"backbone.local_text_fusion.{s}") for s in SHAPE_STAGES) and reached("text_encoder.")
    assert reached(f"backbone.multimodal_blocks.{last - 1}")  # feeds stage `last` through the downsample
    assert not reached(f"backbone.multimodal_blocks.{last}") and not reached(f"backbone.text_guidencee.{last}")
    assert not reached(f"backbone.local_text_fusion.{last + 1}") and not reached("decoder.")


def test_the_fusion_match_term_reads_the_local_text_fusion_outputs(data, tmp_path, monkeypatch):
    """In the loop, --fusion-match-loss's head gets the very tensors the ImageTextCorr modules returned in
    that step's forward, and --object-match-loss's head the stage outputs (not those)."""
    from remamber.model import fusion
    from remamber.train import loop

    _, _, split, objects = data
    returned, seen = [], {}
    forward = fusion.ImageTextCorr.forward
    monkeypatch.setattr(fusion.ImageTextCorr, "forward",
                        lambda self, img, l_feats: returned.append(forward(self, img, l_feats)) or returned[-1])

    def recording(term):
        def loss(head, feats, *rest):
            seen.setdefault(term.head, []).append(list(feats))
            return term.loss(head, feats, *rest)
        return dataclasses.replace(term, loss=loss)

    monkeypatch.setattr(loop, "AUX_TERMS", tuple(recording(t) for t in loop.AUX_TERMS))
    loop.train(_config(steps=1, object_shape_loss=0.0, object_match_loss=1.0, fusion_match_loss=1.0), split, None,
               tmp_path / "t", say=lambda *_: None, objects=objects)
    assert len(returned) == 4  # one training forward, no evaluation
    assert all(a is b for a, b in zip(seen[loop.FUSION_MATCH_HEAD][0], returned))
    assert not any(a is b for a, b in zip(seen[loop.MATCH_HEAD][0], returned))


def _config_with(**defaults):
    def make(**kw):
        from remamber.train.loop import TrainConfig

        base = dict(resolution=RES, batch_size=2, steps=4, lr=1e-3, warmup=1, seed=3, eval_every=0, eval_limit=4,
                    checkpoint_every=2, log_every=1, progress=False, **defaults)
        base.update(kw)
        return TrainConfig(**base)
    return make


_config = _config_with(object_shape_loss=1.0)


@pytest.mark.parametrize("option,head,logged", [("object_shape_loss", "shape_head", "shape"),
                                                 ("pixel_shape_loss", "pixel_shape_head", "pixel_shape"),
                                                 ("object_colour_loss", "colour_head", "colour"),
                                                 ("object_match_loss", "match_head", "match"),
                                                 ("pixel_match_loss", "pixel_match_head", "pixel_match"),
                                                 ("fusion_match_loss", "fusion_match_head", "fusion_match")])
def test_training_with_a_shape_loss_is_deterministic_resumes_exactly_and_exports_no_head(data, tmp_path, option, head,
                                                                                       logged):
    from remamber.model import build_model
    from remamber.train import loop

    _, _, split, objects = data
    quiet = dict(say=lambda *_: None, objects=objects)
    config = _config_with(**{option: 1.0})
    first = loop.train(config(), split, None, tmp_path / "a", **quiet)
    second = loop.train(config(), split, None, tmp_path / "b", **quiet)
    plain = loop.train(config(**{option: 0.0}), split, None, tmp_path / "c", say=lambda *_: None)
    assert first["losses"] == second["losses"] and all(math.isfinite(v) for v in first["losses"])
    assert first["losses"][1:] != plain["losses"][1:]  # the extra term changed the trajectory
    assert first["losses"][0] == plain["losses"][0]  # and "loss" is the segmentation loss alone
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r[f"{logged}_loss"]) and 0 <= r[f"{logged}_acc"] <= 1 for r in rows)

    saved = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)
    assert set(saved["heads"]) == {head}
    assert set(first["model"].state_dict()) == set(build_model("conv", "tiny", seed=0).state_dict())

    # interrupt after the step-2 checkpoint and resume: the head's state must come back too
    original = loop.save_training_state

    class Stop(Exception):
        pass

    def save_then_stop(path, model, optimizer, scheduler, step, config, heads=None):
        original(path, model, optimizer, scheduler, step, config, heads)
        if step == 2:
            raise Stop

    loop.save_training_state = save_then_stop
    try:
        with pytest.raises(Stop):
            loop.train(config(), split, None, tmp_path / "mid", **quiet)
    finally:
        loop.save_training_state = original
    resumed = loop.train(config(), split, None, tmp_path / "mid", resume=tmp_path / "mid" / "checkpoint.pth", **quiet)
    assert resumed["losses"] == first["losses"][2:]
    final = first["model"].state_dict()
    assert all(torch.equal(v, final[k]) for k, v in resumed["model"].state_dict().items())

    with pytest.raises(InputError, match=f"{option}: checkpoint 1.0, now None"):
        loop.train(config(**{option: 0.0}), split, None, tmp_path / "d", resume=tmp_path / "a" / "checkpoint.pth")
    with pytest.raises(ValueError, match="no objects were given"):
        loop.train(config(), split, None, tmp_path / "e")


def test_backbone_features_change_the_trajectory_and_a_resume_must_keep_them(data, tmp_path):
    from remamber.train import loop

    _, _, split, objects = data
    quiet = dict(say=lambda *_: None, objects=objects)
    fused = loop.train(_config(steps=3), split, None, tmp_path / "f", **quiet)
    inner = loop.train(_config(steps=3, object_loss_features="backbone"), split, None, tmp_path / "b", **quiet)
    assert fused["losses"][0] == inner["losses"][0] and fused["losses"][1:] != inner["losses"][1:]
    with pytest.raises(InputError, match="object_loss_features: checkpoint 'backbone', now None"):
        loop.train(_config(steps=3), split, None, tmp_path / "r", resume=tmp_path / "b" / "checkpoint.pth", **quiet)


def test_a_shape_loss_start_leaves_the_first_steps_to_the_other_terms(data, tmp_path):
    """--object-shape-loss-start 2: steps 0-1 are those of the run without the shape loss (same match term),
    from step 2 on the shape loss counts and is logged; a resume must keep the start."""
    from remamber.train import loop

    _, _, split, objects = data
    quiet = dict(say=lambda *_: None, objects=objects)
    later = loop.train(_config(object_match_loss=1.0, object_shape_loss_start=2), split, None, tmp_path / "s", **quiet)
    without = loop.train(_config(object_match_loss=1.0, object_shape_loss=0.0), split, None, tmp_path / "w", **quiet)
    always = loop.train(_config(object_match_loss=1.0), split, None, tmp_path / "a", **quiet)
    assert later["losses"][:3] == without["losses"][:3]  # step 2's loss is computed before its update
    assert later["losses"][3] != without["losses"][3] and later["losses"][1:3] != always["losses"][1:3]
    rows = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert ["shape_loss" in r for r in rows] == [False, False, True, True]
    assert all("match_loss" in r for r in rows)
    with pytest.raises(InputError, match="object_shape_loss_start: checkpoint 2, now None"):
        loop.train(_config(object_match_loss=1.0), split, None, tmp_path / "r",
                   resume=tmp_path / "s" / "checkpoint.pth", **quiet)


def test_shape_loss_combines_with_attribute_queries(data, tmp_path):
    from remamber.train import loop
    from remamber.train.queries import build_queries

    _, dataset, split, objects = data
    queries = build_queries(dataset, split)
    for extra in (dict(pixel_shape_loss=0.5), dict(object_match_loss=0.5), dict(pixel_match_loss=0.5),
                  dict(fusion_match_loss=0.5)):
        result = loop.train(_config(batch_size=4, steps=2, attribute_queries=0.5, **extra), split, None,
                            tmp_path / "q", say=lambda *_: None, queries=queries, objects=objects)
        assert all(math.isfinite(v) for v in result["losses"])


def test_objects_refuse_a_dataset_that_is_not_the_synthetic_shapes(data):
    from remamber.data.refcoco import RefDataset
    from remamber.train.objects import build_object_shapes

    root, _, split, _ = data
    other = RefDataset(root)
    other.categories = {1: "person", 2: "dog"}
    with pytest.raises(InputError, match="--object-colour-loss needs the synthetic shapes dataset"):
        build_object_shapes(other, split)


def test_cli_records_the_shape_loss(data, tmp_path):
    from remamber.cli import main

    root, _, _, _ = data
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(out), "--resolution", str(RES), "--batch-size", "2",
                 "--steps", "2", "--warmup", "1", "--object-shape-loss", "0.5", "--pixel-shape-loss", "2",
                 "--object-colour-loss", "0.25", "--object-match-loss", "0.75", "--pixel-match-loss", "1.5", "--fusion-match-loss", "3",
                 "--object-loss-features", "backbone", "--eval-every", "0",
                 "--final-splits", "", "--threads", "1", "--no-progress"]) == 0
    meta = json.loads((out / "model_fp16.json").read_text())
    assert meta["training"]["object_shape_loss"] == 0.5 and meta["training"]["pixel_shape_loss"] == 2.0
    assert meta["training"]["object_colour_loss"] == 0.25 and meta["training"]["object_loss_features"] == "backbone"
    assert meta["training"]["object_match_loss"] == 0.75 and meta["training"]["pixel_match_loss"] == 1.5
    assert meta["training"]["fusion_match_loss"] == 3.0
    assert torch.load(out / "checkpoint.pth", weights_only=True)["config"]["object_loss_features"] == "backbone"
    assert set(torch.load(out / "checkpoint.pth", weights_only=True)["heads"]) == {"shape_head", "pixel_shape_head",
                                                                                  "colour_head", "match_head",
                                                                                  "pixel_match_head",
                                                                                  "fusion_match_head"}
    assert not any(k.startswith(("shape_head", "pixel_shape_head", "colour_head", "match_head", "pixel_match_head",
                                 "fusion_match_head",
                                 "linear", "convs")) for k in
                   torch.load(out / "model_fp16.pth", weights_only=True)["model"])
