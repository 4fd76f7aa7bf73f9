"""Parity metrics between a runtime's logits and the PyTorch float32 reference.

One place for the numbers every report uses (DESIGN.md, "Parity and latency"), named as
Polygraphy names them where it has a name: max/mean absolute error, max/mean relative error,
plus cosine similarity of the logits and agreement of the final masks (sigmoid > 0.5, i.e.
logit > 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MASK_LOGIT_THRESHOLD = 0.0  # sigmoid(x) > 0.5  <=>  x > 0


@dataclass
class ParityMetrics:
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float      # max |out - ref| / max(|ref|, eps); eps keeps zeros from dominating
    mean_rel_error: float
    rel_l2_error: float       # ||out - ref|| / ||ref||
    logit_scale: float        # max |ref|, the scale tolerances are stated against
    cosine_similarity: float
    mask_iou: float           # IoU of the runtime mask with the reference mask (1.0 when both empty)
    mask_pixel_mismatch: float  # fraction of pixels whose mask value differs
    mismatch_outside_margin: int  # differing pixels whose reference logit is farther than `margin` from the threshold
    nan_count: int

    def as_dict(self) -> dict:
        return asdict(self)


def compare_logits(reference, output, margin: float = 1e-3, eps: float = 1e-6) -> ParityMetrics:
    """Compare ``output`` with ``reference`` (same shape, any float dtype); margin for mask flips."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"parity: shapes differ: reference {ref.shape}, output {out.shape}")
    nan_count = int(np.count_nonzero(~np.isfinite(out)))
    diff = np.abs(out - ref)
    rel = diff / np.maximum(np.abs(ref), eps)
    ref_norm = float(np.linalg.norm(ref))
    out_norm = float(np.linalg.norm(out))
    cosine = float(np.dot(ref.ravel(), out.ravel()) / (ref_norm * out_norm)) if ref_norm and out_norm else float(ref_norm == out_norm)
    ref_mask = ref > MASK_LOGIT_THRESHOLD
    out_mask = out > MASK_LOGIT_THRESHOLD
    union = np.count_nonzero(ref_mask | out_mask)
    inter = np.count_nonzero(ref_mask & out_mask)
    flipped = ref_mask != out_mask
    outside = flipped & (np.abs(ref - MASK_LOGIT_THRESHOLD) > margin)
    return ParityMetrics(
        max_abs_error=float(diff.max(initial=0.0)),
        mean_abs_error=float(diff.mean()) if diff.size else 0.0,
        max_rel_error=float(rel.max(initial=0.0)),
        mean_rel_error=float(rel.mean()) if rel.size else 0.0,
        rel_l2_error=float(np.linalg.norm(out - ref) / ref_norm) if ref_norm else float(out_norm),
        logit_scale=float(np.abs(ref).max(initial=0.0)),
        cosine_similarity=cosine,
        mask_iou=float(inter / union) if union else 1.0,
        mask_pixel_mismatch=float(np.count_nonzero(flipped) / flipped.size) if flipped.size else 0.0,
        mismatch_outside_margin=int(np.count_nonzero(outside)),
        nan_count=nan_count,
    )
