"""Referring-segmentation metrics as ReMamber's official ``engine.evaluate`` computes them.

Per sentence: logits resized to the ground-truth size with nearest interpolation, ``sigmoid > 0.5``,
then ``I = |pred & gt|``, ``U = |pred | gt|`` and ``IoU = I / (U + 1e-6)`` (so an empty prediction
of an empty target scores 0, as in the official code). Over a set of sentences:
mIoU = mean IoU; oIoU = sum(I) / (sum(U) + 1e-6). ReMamber's code has no precision@t; it is taken
from LAVT's evaluation, which ReMamber's numbers are compared with: the fraction of sentences with
I / U >= t (exact ratio, 0 when U = 0), t in 0.5 .. 0.9. The exact ratio matters at the threshold:
with the 1e-6 guard an IoU of exactly 0.6 would count as below 0.6.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

EPS = 1e-6  # the official code's guard against an empty union
PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def predicted_mask(logits: np.ndarray, height: int, width: int) -> tuple[np.ndarray, bool]:
    """Boolean (H, W) mask from one sample's logits (1, 1, S, S) or (S, S), and whether they held NaN.

    NaN logits give ``sigmoid(NaN) > 0.5`` = False, i.e. background, exactly as the official code
    would score them; the caller records the NaN so the report can say so."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(logits, dtype=np.float32)).reshape(1, 1, *np.shape(logits)[-2:])
    has_nan = bool(torch.isnan(t).any())
    resized = F.interpolate(t, size=(int(height), int(width)))  # default mode: nearest, as official evaluate
    return (torch.sigmoid(resized) > 0.5)[0, 0].numpy(), has_nan


def intersection_union(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    return int(np.logical_and(pred, gt).sum()), int(np.logical_or(pred, gt).sum())


def iou(inter: int, union: int) -> float:
    return inter / (union + EPS)


def summarize(pairs: Iterable[tuple[int, int]]) -> dict | None:
    """oIoU, mIoU and precision@t over (intersection, union) pairs; None when there are none."""
    pairs = list(pairs)
    if not pairs:
        return None
    inter = np.array([p[0] for p in pairs], dtype=np.float64)
    union = np.array([p[1] for p in pairs], dtype=np.float64)
    ious = inter / (union + EPS)
    exact = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return {
        "sentences": len(pairs),
        "oiou": float(inter.sum() / (union.sum() + EPS)),
        "miou": float(ious.mean()),
        "precision": {f"{t:.1f}": float((exact >= t).mean()) for t in PRECISION_THRESHOLDS},
    }


def deltas(metrics: dict, reference: dict) -> dict:
    """Runtime minus reference, in percentage points, for oIoU, mIoU and each precision@t."""
    return {
        "oiou_points": 100.0 * (metrics["oiou"] - reference["oiou"]),
        "miou_points": 100.0 * (metrics["miou"] - reference["miou"]),
        "precision_points": {k: 100.0 * (v - reference["precision"][k]) for k, v in metrics["precision"].items()},
    }
