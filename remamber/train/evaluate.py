"""oIoU / mIoU of the model on a preloaded split, scored as ReMamber's official ``engine.evaluate``
(remamber.bench.eval_metrics: logits resized to the ground-truth size with nearest interpolation,
sigmoid > 0.5, I and U per sentence)."""

from __future__ import annotations

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


@torch.no_grad()
def evaluate(model, split, batch_size: int = 16, limit: int | None = None,
             group_of: Callable[[str], str] | None = None) -> dict:
    """{"oIoU", "mIoU", "n"} over the first ``limit`` sentences of ``split`` (all when None); with
    ``group_of`` (sentence -> group name) also "groups": {name: {"oIoU", "mIoU", "n"}}.

    The model is put in eval mode and restored to the mode it had."""
    from ..bench.eval_metrics import intersection_union, summarize

    was_training = model.training
    model.eval()
    n = len(split) if limit is None else min(limit, len(split))
    try:
        pairs = [intersection_union(pred, gt) for _, pred, gt in predictions(model, split, n, batch_size)]
    finally:
        model.train(was_training)
    result = _scores(summarize(pairs))
    if group_of is not None:
        by_group: dict[str, list] = {}
        for i, pair in enumerate(pairs):
            by_group.setdefault(group_of(split.sentences[i]), []).append(pair)
        result["groups"] = {name: _scores(summarize(by_group[name])) for name in sorted(by_group)}
    return result


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


@torch.no_grad()
def outcomes(model, split, samples, dataset, batch_size: int = 16) -> dict:
    """{outcome: share of the sentences} over ``split`` (preloaded from ``samples`` of ``dataset``,
    whose annotations give every object of each image)."""
    objects_of: dict[int, list[int]] = {}
    for ann in dataset.annotations.values():
        objects_of.setdefault(ann["image_id"], []).append(ann["id"])
    masks: dict[int, object] = {}

    def mask(ann_id):
        if ann_id not in masks:
            masks[ann_id] = dataset.mask(ann_id)
        return masks[ann_id]

    was_training = model.training
    model.eval()
    counts = dict.fromkeys(OUTCOMES, 0)
    try:
        for i, pred, _ in predictions(model, split, len(split), batch_size):
            s = samples[i]
            counts[outcome(pred, s.ann_id, {a: mask(a) for a in objects_of[s.image_id]})] += 1
    finally:
        model.train(was_training)
    return {k: v / len(split) for k, v in counts.items()}


def _scores(summary: dict) -> dict:
    return {"oIoU": summary["oiou"], "mIoU": summary["miou"], "n": summary["sentences"]}
