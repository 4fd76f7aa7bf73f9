"""The official ReMamber training loss (model/base_segmenter.py, model/utils.py; REMAMBER_SPEC 1.2):

    loss = dice_loss(pred, mask) + sigmoid_focal_loss(pred, mask, alpha=-1, gamma=0)

``pred`` are the logits after BaseSegmenter's resize to the input size, so logits and masks are
compared at the network input resolution S x S (the mask is resized to S x S by the data pipeline).
With alpha = -1 and gamma = 0 the focal loss is plain BCE-with-logits averaged over every pixel of
the batch. The dice term is per sample, ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` with
p = sigmoid(logits), averaged over the batch. The official epoch-dependent pixel masking is only
enabled when an epoch is passed; ReMamber's forward never passes one, so it is not reproduced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 - (2|p t| + 1) / (|p| + |t| + 1), p = sigmoid(logits)."""
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (probs * targets).sum(1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).mean()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sigmoid_focal_loss(alpha=-1, gamma=0): BCE-with-logits, mean over all pixels."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="mean")


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """dice + BCE on logits (B, 1, S, S) and masks of the same shape (0/1, any float or bool dtype)."""
    if logits.shape != masks.shape:
        raise InputError(
            f"loss: logits {tuple(logits.shape)} and masks {tuple(masks.shape)} differ in shape; resize the masks "
            "to the network input size S x S (the official loss compares them there)"
        )
    targets = masks.to(logits.dtype)
    return dice_loss(logits, targets) + bce_loss(logits, targets)
