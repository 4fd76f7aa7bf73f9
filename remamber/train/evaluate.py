"""oIoU / mIoU of the model on a preloaded split, scored as ReMamber's official ``engine.evaluate``
(remamber.bench.eval_metrics: logits resized to the ground-truth size with nearest interpolation,
sigmoid > 0.5, I and U per sentence)."""

from __future__ import annotations

from typing import Callable

import torch


@torch.no_grad()
def evaluate(model, split, batch_size: int = 16, limit: int | None = None,
             group_of: Callable[[str], str] | None = None) -> dict:
    """{"oIoU", "mIoU", "n"} over the first ``limit`` sentences of ``split`` (all when None); with
    ``group_of`` (sentence -> group name) also "groups": {name: {"oIoU", "mIoU", "n"}}.

    The model is put in eval mode and restored to the mode it had."""
    from ..bench.eval_metrics import intersection_union, predicted_mask, summarize

    was_training = model.training
    model.eval()
    n = len(split) if limit is None else min(limit, len(split))
    pairs = []
    try:
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            images, ids, attention, _ = split.batch(idx)
            logits = model(images, ids, attention).numpy()
            for j, i in enumerate(idx.tolist()):
                gt = split.gt_masks[int(split.mask_index[i])]
                pred, _ = predicted_mask(logits[j], *gt.shape)
                pairs.append(intersection_union(pred, gt))
    finally:
        model.train(was_training)
    result = _scores(summarize(pairs))
    if group_of is not None:
        by_group: dict[str, list] = {}
        for i, pair in enumerate(pairs):
            by_group.setdefault(group_of(split.sentences[i]), []).append(pair)
        result["groups"] = {name: _scores(summarize(by_group[name])) for name in sorted(by_group)}
    return result


def _scores(summary: dict) -> dict:
    return {"oIoU": summary["oiou"], "mIoU": summary["miou"], "n": summary["sentences"]}
