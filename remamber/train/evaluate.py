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


def outcome_labeller(samples, dataset) -> Callable[[int, object], str]:
    """(sentence index, predicted mask) -> outcome, for ``evaluate(outcome_of=...)``: ``samples`` are
    the split's sentences in order, ``dataset``'s annotations give every object of each image."""
    objects_of: dict[int, list[int]] = {}
    for ann in dataset.annotations.values():
        objects_of.setdefault(ann["image_id"], []).append(ann["id"])
    mask = functools.lru_cache(maxsize=None)(dataset.mask)  # each object is compared for every sentence of its image

    def label(i: int, pred) -> str:
        s = samples[i]
        return outcome(pred, s.ann_id, {a: mask(a) for a in objects_of[s.image_id]})

    return label


@torch.no_grad()
def evaluate(model, split, batch_size: int = 16, limit: int | None = None,
             group_of: Callable[[str], str] | None = None,
             outcome_of: Callable[[int, object], str] | None = None) -> dict:
    """{"oIoU", "mIoU", "n"} over the first ``limit`` sentences of ``split`` (all when None); with
    ``group_of`` (sentence -> group name) also "groups": {name: {"oIoU", "mIoU", "n"}}; with
    ``outcome_of`` ((sentence index, predicted mask) -> one of OUTCOMES, see outcome_labeller) also
    "outcomes": {outcome: share of the sentences}. One pass of the model serves all three.

    The model is put in eval mode and restored to the mode it had."""
    from ..bench.eval_metrics import intersection_union, summarize

    was_training = model.training
    model.eval()
    n = len(split) if limit is None else min(limit, len(split))
    pairs, counts = [], dict.fromkeys(OUTCOMES, 0)
    try:
        for i, pred, gt in predictions(model, split, n, batch_size):
            pairs.append(intersection_union(pred, gt))
            if outcome_of is not None:
                counts[outcome_of(i, pred)] += 1
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
    return result


def _scores(summary: dict) -> dict:
    return {"oIoU": summary["oiou"], "mIoU": summary["miou"], "n": summary["sentences"]}
