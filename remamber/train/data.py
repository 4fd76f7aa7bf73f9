"""A RefCOCO-layout split preloaded into memory at the training resolution.

Training on 2 CPU cores must be compute-bound, so every image is decoded, resized and normalised
once (remamber.imageio.preprocess: the same preprocessing as predict and eval), every mask is
resized to S x S with nearest interpolation (the official target transform), and every sentence is
tokenised once. Images are stored once per image (sentences index them); the original-size masks
are kept for evaluation, which scores at the ground-truth size as the official ``engine.evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError


@dataclass
class SplitTensors:
    """One split in memory. images (I, 3, S, S) float32; masks (I_ann, 1, S, S) uint8; per sentence:
    image_index, mask_index, input_ids (n, 20), attention_mask (n, 20); gt_masks: original-size bools."""

    name: str
    resolution: int
    images: torch.Tensor
    masks: torch.Tensor
    image_index: torch.Tensor
    mask_index: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    gt_masks: list[np.ndarray]
    sentences: list[str]
    image_ids: list[int] = field(default_factory=list)  # the dataset's image id of each row of images
    mask_resize: str = "nearest"  # how masks became S x S targets (resize_mask)

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    def batch(self, indices: torch.Tensor):
        """(images, input_ids, attention_mask, masks float) for the sentences ``indices``."""
        return (self.images[self.image_index[indices]], self.input_ids[indices], self.attention_mask[indices],
                self.masks[self.mask_index[indices]].float())


MASK_RESIZES = ("nearest", "area")


def resize_mask(mask: np.ndarray, resolution: int, mode: str = "nearest") -> torch.Tensor:
    """A boolean (H, W) mask as the (1, S, S) uint8 training target.

    "nearest" is the official target transform: each cell takes the pixel at its block's top-left
    corner. "area" takes the majority of the block (area average >= 0.5). Why offer it: predictions
    are scored after a nearest resize back to the ground-truth size, where each cell fills its block,
    so the majority is the better cell value; at 96 px from 240-320 px images the true masks score
    oIoU 0.850 after "nearest" and 0.924 after "area" (measure --ceiling, docs/TRAINING.md). At
    RefCOCO's 480 px the two hardly differ."""
    if mode not in MASK_RESIZES:
        raise InputError(f"unknown mask resize {mode!r}; use one of {', '.join(MASK_RESIZES)}")
    t = torch.from_numpy(mask.astype(np.uint8))[None, None].float()
    if mode == "nearest":
        small = F.interpolate(t, size=(resolution, resolution), mode="nearest")
    else:
        small = F.interpolate(t, size=(resolution, resolution), mode="area") >= 0.5
    return small[0].to(torch.uint8)


def load_split(dataset, split: str, resolution: int, limit: int | None = None, progress: bool = False,
               mask_resize: str = "nearest") -> SplitTensors:
    """Preload ``split`` of a ``remamber.data.refcoco.RefDataset`` at ``resolution``; masks become
    training targets with ``resize_mask(..., mask_resize)``."""
    from .. import imageio, tokenizer

    samples = dataset.samples(split, limit=limit)
    if not samples:
        raise InputError(f"split {split!r} of {dataset.root} has no sentences; generate more images (--images)")
    image_slot: dict[int, int] = {}
    mask_slot: dict[int, int] = {}
    images, masks, gt_masks = [], [], []
    iterator = samples
    if progress:
        from tqdm import tqdm
        iterator = tqdm(samples, desc=f"loading {split}", unit="sentence", leave=False)
    for s in iterator:
        if s.image_id not in image_slot:
            image_slot[s.image_id] = len(images)
            images.append(imageio.preprocess(dataset.image(s.image_id), resolution)[0])
        if s.ann_id not in mask_slot:
            mask_slot[s.ann_id] = len(masks)
            gt = dataset.mask(s.ann_id)
            gt_masks.append(gt)
            masks.append(resize_mask(gt, resolution, mask_resize))
    ids, attention = tokenizer.tokenize([s.sentence for s in samples])
    return SplitTensors(
        name=split, resolution=resolution, images=torch.stack(images), masks=torch.stack(masks),
        image_index=torch.tensor([image_slot[s.image_id] for s in samples], dtype=torch.long),
        mask_index=torch.tensor([mask_slot[s.ann_id] for s in samples], dtype=torch.long),
        input_ids=ids, attention_mask=attention, gt_masks=gt_masks, sentences=[s.sentence for s in samples],
        image_ids=list(image_slot), mask_resize=mask_resize,
    )
