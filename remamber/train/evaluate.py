"""oIoU / mIoU of the model on a preloaded split, scored as ReMamber's official ``engine.evaluate``
(remamber.bench.eval_metrics: logits resized to the ground-truth size with nearest interpolation,
sigmoid > 0.5, I and U per sentence)."""

from __future__ import annotations

import functools
from typing import Callable

import torch


def predictions(model, split, n: int, batch_size: int):
    """(sentence index, predicted mask at the ground-truth size, ground truth) for the first ``n``
    sentences, with the official post-processing. The caller sets eval mode and no_grad."""
    from ..bench.eval_metrics import predicted_mask

    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        images, ids, attention, _ = split.batch(idx)
        logits = model(images, ids, attention).numpy()
        for j, i in enumerate(idx.tolist()):
            gt = split.gt_masks[int(split.mask_index[i])]
            yield i, predicted_mask(logits[j], *gt.shape)[0], gt


OUTCOMES = ("right object", "target, poor mask", "one wrong object", "several objects", "background", "empty")
# An object counts as marked when at least this share of the predicted pixels lies on it.
MARKED_SHARE = 0.15


def outcome(pred, target: int, objects: dict) -> str:
    """What a predicted mask picked, one of OUTCOMES. ``objects``: {object id: its mask}, the target
    included. IoU >= 0.5 with the target is "right object"; otherwise the objects holding at least
    MARKED_SHARE of the predicted pixels decide: only the target ("target, poor mask"), one other
    ("one wrong object"), several, or none ("background")."""
    area = int(pred.sum())
    if area == 0:
        return "empty"
    truth = objects[target]
    if (pred & truth).sum() / (pred | truth).sum() >= 0.5:
        return "right object"
    marked = [k for k, m in objects.items() if (pred & m).sum() >= MARKED_SHARE * area]
    if len(marked) > 1:
        return "several objects"
    if not marked:
        return "background"
    return "target, poor mask" if marked[0] == target else "one wrong object"


# For "several objects": do the wrongly marked objects fit the words that describe the target?
WORD_FITS = ("fit the colour and shape words", "contradict the shape word", "contradict the colour word",
             "contradict both words")


def word_fit(colour: str | None, shape: str | None, others: list[tuple[str, str]]) -> str:
    """One of WORD_FITS for the (colour, shape) of the wrongly marked objects, given the target's
    colour and shape words (None where the sentence names none, which nothing can contradict)."""
    bad_shape = shape is not None and any(s != shape for _, s in others)
    bad_colour = colour is not None and any(c != colour for c, _ in others)
    return WORD_FITS[int(bad_shape) + 2 * int(bad_colour)]


def outcome_labeller(samples, dataset, by_word: bool = False) -> Callable[[int, object], str]:
    """(sentence index, predicted mask) -> outcome, for ``evaluate(outcome_of=...)``: ``samples`` are
    the split's sentences in order, ``dataset``'s annotations give every object of each image. With
    ``by_word`` (synthetic data only), "several objects" becomes "several objects: <one of WORD_FITS>":
    whether the other objects it marked have the colour and shape the sentence gives the target."""
    from ..data.synthetic import object_colour, object_shape, target_words

    mask = functools.lru_cache(maxsize=None)(dataset.mask)  # each object is compared for every sentence of its image

    @functools.lru_cache(maxsize=None)
    def attributes(ann_id: int) -> tuple[str, str]:
        ann = dataset.annotations[ann_id]
        return object_colour(dataset.image(ann["image_id"]), mask(ann_id)), object_shape(ann)

    def label(i: int, pred) -> str:
        s = samples[i]
        objects = {a: mask(a) for a in dataset.image_annotations(s.image_id)}
        result = outcome(pred, s.ann_id, objects)
        if by_word and result == "several objects":
            area = int(pred.sum())
            others = [attributes(a) for a, m in objects.items()
                      if a != s.ann_id and (pred & m).sum() >= MARKED_SHARE * area]
            result += ": " + word_fit(*target_words(s.sentence), others)
        return result

    return label


@torch.no_grad()
def evaluate(model, split, batch_size: int = 16, limit: int | None = None,
             group_of: Callable[[str], str] | None = None,
             outcome_of: Callable[[int, object], str] | None = None) -> dict:
    """{"oIoU", "mIoU", "n"} over the first ``limit`` sentences of ``split`` (all when None); with
    ``group_of`` (sentence -> group name) also "groups": {name: {"oIoU", "mIoU", "n"}}; with
    ``outcome_of`` ((sentence index, predicted mask) -> one of OUTCOMES, or "<outcome>: <detail>",
    see outcome_labeller) also "outcomes": {outcome: share of the sentences}, and "outcome_details":
    {"<outcome>: <detail>": share} when details come. One pass of the model serves all three.

    The model is put in eval mode and restored to the mode it had."""
    from ..bench.eval_metrics import intersection_union, summarize

    was_training = model.training
    model.eval()
    n = len(split) if limit is None else min(limit, len(split))
    pairs, counts, details = [], dict.fromkeys(OUTCOMES, 0), {}
    try:
        for i, pred, gt in predictions(model, split, n, batch_size):
            pairs.append(intersection_union(pred, gt))
            if outcome_of is not None:
                label = outcome_of(i, pred)
                counts[label.split(": ")[0]] += 1
                if ": " in label:  # a refined outcome ("several objects: ..."), counted under its outcome too
                    details[label] = details.get(label, 0) + 1
    finally:
        model.train(was_training)
    result = _scores(summarize(pairs))
    if group_of is not None:
        by_group: dict[str, list] = {}
        for i, pair in enumerate(pairs):
            by_group.setdefault(group_of(split.sentences[i]), []).append(pair)
        result["groups"] = {name: _scores(summarize(by_group[name])) for name in sorted(by_group)}
    if outcome_of is not None:
        result["outcomes"] = {k: v / n for k, v in counts.items()}
        if details:
            result["outcome_details"] = {k: details[k] / n for k in sorted(details)}
    return result


def ceiling(split, limit: int | None = None) -> dict:
    """{"oIoU", "mIoU", "n"} of the training targets themselves: each sentence's mask at the split's
    resolution (resized as the split was loaded for training: SplitTensors.mask_resize) scored like a
    prediction. No mask at that resolution scores much above it, so it says what a target such as
    0.8 oIoU asks of the model."""
    from ..bench.eval_metrics import intersection_union, predicted_mask, summarize

    n = len(split) if limit is None else min(limit, len(split))
    pairs = []
    for i in range(n):
        target = split.masks[int(split.mask_index[i])][0].numpy().astype("float32")
        gt = split.gt_masks[int(split.mask_index[i])]
        pairs.append(intersection_union(predicted_mask(2.0 * target - 1.0, *gt.shape)[0], gt))
    return _scores(summarize(pairs))


def _scores(summary: dict) -> dict:
    return {"oIoU": summary["oiou"], "mIoU": summary["miou"], "n": summary["sentences"]}
