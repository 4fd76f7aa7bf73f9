"""The object-shape auxiliary target: every object of a training image, its mask and its shape, and
the loss that asks the early stage features to tell the shapes apart.

Why: trained from random weights with the segmentation loss alone, the network learns to pick objects
by colour (which its first features carry from the start) and never by shape, on the grammar's
sentences or on attribute queries alike (docs/TRAINING.md, "What holds the demo checkpoint back").
The same backbone learns shape within a few hundred steps when told directly which object is which
shape: its stage features averaged over each object's mask, a linear layer and cross-entropy. With
``train --object-shape-loss W`` that term is added, times W, to the segmentation loss of every step.
This is not part of the official loss; the head is a training-only module and never enters the
exported weights.

``train --object-colour-loss W`` adds the same kind of term for each object's colour (a second
linear head on the same pooled features). Why: with the shape term alone the model learned to read
the shape word and lost much of its grip on the colour word (docs/TRAINING.md), as if the shape
target had taken over the stage features that the colour was read from.

``train --object-match-loss W`` asks the same pooled features, per object, two questions about the
sample's sentence: has this object the colour the sentence names for its target, and the shape it
names (binary cross-entropy; a question the sentence does not raise is left out). Why: with the
shape term the model follows the shape word and drops the colour word, and without it the other way
round (docs/TRAINING.md); a per-object shape or colour target teaches the features to *see* both,
while this one asks the fused features to *compare* each object with both words of the sentence,
which is the routing the mask needs and one word alone does not give.

``train --fusion-match-loss W`` asks the object-match questions of the local text fusion's output
instead (ImageTextCorr, ``backbone.local_text_fusion[s]``: the per-pixel products of the image features
with every token's features, before the Twister mixes them in). Why: with the match loss on the stage
outputs, the model still did not compare an object's colour with the colour word (linear probes on the
packaged checkpoint's local text fusion outputs answer the colour question for 55 % / 73 % of the
objects at stages 1 / 2, where always "no" scores 52 %; ``python -m remamber.train.probe
--match-decodability``, docs/TRAINING.md); this module is the model's own place for that comparison,
and the head's gradient reaches it without passing through a Twister. (It did not help: run FM.)

``train --object-shape-loss-start STEP`` lets the shape term count from step STEP on. Why: the match
loss alone teaches the colour comparison and not the shape one, and with the shape term from the start
the model learns the shape comparison and never the colour one; added after the colour comparison is
learned, the shape term left it in place (docs/TRAINING.md, "Both comparisons, in two phases").

The heads read each stage's output after its Twister by default; ``train --object-loss-features
backbone`` points them at the stage's VSS-block output before the Twister instead, to test whether the
shape target then leaves the fused channels to the colour word (it did not: docs/TRAINING.md).

It needs the synthetic dataset's meaning of an annotation: its category is its shape
(remamber.data.synthetic.SHAPES), and its colour is the palette colour of its pixels
(remamber.data.synthetic.object_colour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError

# Stage outputs (after their Twisters) that the shape head reads: the two finest. At 96 px an object is
# 14-40 px across, so stage 3 (S/16) and 4 (S/32) hold it in one or two cells.
SHAPE_STAGES = (0, 1)


def require_shapes_dataset(dataset, option: str) -> dict:
    """The dataset's category names (id -> name); refuses a dataset whose categories are not the
    synthetic shapes, naming ``option`` as the thing to leave out."""
    from ..data.synthetic import SHAPES

    names = dataset.categories
    if sorted(map(str, names.values())) != sorted(SHAPES):
        raise InputError(f"{option} needs the synthetic shapes dataset (categories {', '.join(SHAPES)}); "
                         f"{dataset.root} has {', '.join(map(str, names.values())) or 'none'}. Leave the option out "
                         "for other datasets")
    return names


def image_objects(dataset, image_id: int, names: dict) -> tuple[list[np.ndarray], list[str]]:
    """(masks at the image's size, shape names) of every annotated object of an image."""
    masks, shapes = [], []
    for ann_id in dataset.image_annotations(image_id):
        masks.append(dataset.mask(ann_id))
        shapes.append(str(names[dataset.annotations[ann_id]["category_id"]]))
    return masks, shapes


def image_object_colours(dataset, image_id: int, masks: list[np.ndarray]) -> list[str]:
    """The palette colour of each object (``masks`` from image_objects); decodes the image."""
    from ..data.synthetic import object_colour

    pixels = np.asarray(dataset.image(image_id).convert("RGB"))
    return [object_colour(pixels, mask) for mask in masks]


@dataclass
class ObjectShapes:
    """Every object of one split's images. image_index (n,) into the split's images; weights (n, 1, S, S)
    float16: the share of each target cell the object covers (area resize of its full-size mask);
    label (n,): index in remamber.data.synthetic.SHAPES; by_image[i]: the objects of image i;
    cover (I, len(SHAPES), S, S) float16: per image, the share of each cell covered by objects of each shape;
    colour (n,): index in remamber.data.synthetic.COLOURS, or None when built without colours."""

    image_index: torch.Tensor
    weights: torch.Tensor
    label: torch.Tensor
    by_image: list[torch.Tensor]
    cover: torch.Tensor
    colour: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    def of_samples(self, sample_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For a batch whose sample b shows image sample_images[b]: (sample of each object, object index)."""
        parts = [self.by_image[int(r)] for r in sample_images.tolist()]
        sample = torch.cat([torch.full((len(p),), b, dtype=torch.long) for b, p in enumerate(parts)])
        return sample, torch.cat(parts)


def build_object_shapes(dataset, split_tensors, colours: bool = False) -> ObjectShapes:
    """The objects of every image of ``split_tensors`` (a SplitTensors of ``dataset``); with ``colours``
    also each object's palette colour (this decodes every image, so only when asked)."""
    from ..data.synthetic import COLOURS, SHAPES

    names = require_shapes_dataset(dataset, "--object-shape-loss / --pixel-shape-loss / --object-colour-loss")
    S = split_tensors.resolution
    palette = list(COLOURS)
    image_index, weights, label, by_image, cover, colour = [], [], [], [], [], []
    for slot, image_id in enumerate(split_tensors.image_ids):
        masks, shapes = image_objects(dataset, image_id, names)
        if colours:
            colour += [palette.index(name) for name in image_object_colours(dataset, image_id, masks)]
        first = len(label)
        image_cover = torch.zeros(len(SHAPES), S, S)
        for mask, shape in zip(masks, shapes):
            full = torch.from_numpy(mask.astype(np.float32))[None, None]
            share = F.interpolate(full, size=(S, S), mode="area")[0]
            weights.append(share.to(torch.float16))
            image_cover[SHAPES.index(shape)] += share[0]
            label.append(SHAPES.index(shape))
            image_index.append(slot)
        by_image.append(torch.arange(first, len(label)))
        cover.append(image_cover.clamp(max=1.0).to(torch.float16))  # overlapping objects: at most the whole cell
    return ObjectShapes(image_index=torch.tensor(image_index, dtype=torch.long), weights=torch.stack(weights),
                        label=torch.tensor(label, dtype=torch.long), by_image=by_image, cover=torch.stack(cover),
                        colour=torch.tensor(colour, dtype=torch.long) if colours else None)


class ShapeHead(nn.Module):
    """A linear layer from the mask-averaged features of SHAPE_STAGES to class logits: the object's
    shape (n_classes = len(SHAPES)) or, for the colour head, its colour (len(COLOURS))."""

    def __init__(self, dims: tuple[int, ...], n_classes: int):
        super().__init__()
        self.linear = nn.Linear(sum(dims[s] for s in SHAPE_STAGES), n_classes)

    def forward(self, feats: list[torch.Tensor], sample: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """feats: the stage outputs of a batch; object o lies in sample[o] with cell weights
        weights[o] (n, 1, S, S) -> shape logits (n, n_shapes)."""
        return self.linear(torch.cat([object_means(feats[s], sample, weights) for s in SHAPE_STAGES], 1))


def object_means(feature: torch.Tensor, sample: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(n, C) float32: each object's mean of one stage's ``feature`` (B, C, h, w) over its cells, object o
    lying in sample sample[o] with weights[o] (n, 1, S, S), the share of each S x S cell it covers
    (area-resized to the feature's grid)."""
    f = feature[sample].float()  # (n, C, h, w)
    w = F.interpolate(weights.float(), size=f.shape[-2:], mode="area")
    return (f * w).sum((2, 3)) / w.sum((2, 3)).clamp_min(1e-6)


def build_shape_head(model) -> ShapeHead:
    """A seeded head for ``model``'s stage widths (seeded by the caller's torch RNG state)."""
    from ..data.synthetic import SHAPES

    return ShapeHead(tuple(model.config.dims), len(SHAPES))


def build_colour_head(model) -> ShapeHead:
    """The colour head: the same form as the shape head, one logit per palette colour."""
    from ..data.synthetic import COLOURS

    return ShapeHead(tuple(model.config.dims), len(COLOURS))


def build_match_head(model) -> ShapeHead:
    """The match head: the same form, two logits (the object has the named colour / the named shape)."""
    return ShapeHead(tuple(model.config.dims), 2)


def named_words(sentences: list[str]) -> torch.Tensor:
    """(n, 2) long: per sentence, the index in COLOURS of the colour word and in SHAPES of the shape word
    that describe its target (remamber.data.synthetic.target_words), -1 where it names none."""
    from ..data.synthetic import COLOURS, SHAPES, target_words

    palette = list(COLOURS)
    rows = []
    for sentence in sentences:
        colour, shape = target_words(sentence)
        rows.append((palette.index(colour) if colour else -1, SHAPES.index(shape) if shape else -1))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 2)


def _object_class_loss(head: ShapeHead, feats: list[torch.Tensor], sample_images: torch.Tensor,
                       objects: ObjectShapes, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sample, obj = objects.of_samples(sample_images)
    logits = head(feats, sample, objects.weights[obj])
    target = labels[obj]
    return F.cross_entropy(logits, target), (logits.argmax(1) == target).float().mean()


def object_shape_loss(head: ShapeHead, feats: list[torch.Tensor], sample_images: torch.Tensor,
                      objects: ObjectShapes) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, accuracy) of the shape of every object in the batch's images; each sample
    is scored on its own features (they depend on its sentence through the Twisters)."""
    return _object_class_loss(head, feats, sample_images, objects, objects.label)


def object_colour_loss(head: ShapeHead, feats: list[torch.Tensor], sample_images: torch.Tensor,
                       objects: ObjectShapes) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, accuracy) of the colour of every object in the batch's images (objects
    built with colours=True)."""
    if objects.colour is None:
        raise ValueError("the object colour loss needs ObjectShapes built with colours=True")
    return _object_class_loss(head, feats, sample_images, objects, objects.colour)


class PixelShapeHead(nn.Module):
    """A 1x1 convolution per stage of SHAPE_STAGES: the shape of the object under each feature cell."""

    def __init__(self, dims: tuple[int, ...], n_shapes: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dims[s], n_shapes, 1) for s in SHAPE_STAGES)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(feats[s].float()) for conv, s in zip(self.convs, SHAPE_STAGES)]


def build_pixel_shape_head(model) -> PixelShapeHead:
    from ..data.synthetic import SHAPES

    return PixelShapeHead(tuple(model.config.dims), len(SHAPES))


def cell_labels(cover: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) shape index of the cells of that size that objects cover at least half of, -100
    (cross-entropy's ignore index) elsewhere; cover: (B, n_shapes, S, S) shares (ObjectShapes.cover)."""
    shares = F.interpolate(cover.float(), size=size, mode="area")
    label = shares.argmax(1)
    label[shares.sum(1) < 0.5] = -100
    return label


def pixel_shape_loss(head: PixelShapeHead, feats: list[torch.Tensor], sample_images: torch.Tensor,
                     objects: ObjectShapes) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, accuracy) of the shape named at every object cell, averaged over SHAPE_STAGES.
    Why per cell: a mask is a per-pixel answer, so every pixel of "the circle" has to know that it lies
    in a circle, which no local feature of a uniformly coloured interior can tell; the per-object target
    above only asks that the average over the object knows."""
    cover = objects.cover[sample_images]
    losses, correct, counted = [], 0.0, 0
    for logits in head(feats):
        label = cell_labels(cover, tuple(logits.shape[-2:]))
        valid = label >= 0
        if not bool(valid.any()):
            continue
        losses.append(F.cross_entropy(logits, label, ignore_index=-100))
        correct += float((logits.argmax(1)[valid] == label[valid]).sum())
        counted += int(valid.sum())
    if not losses:
        zero = sum(f.sum() for f in feats) * 0.0  # keeps the graph; no object cell in the batch
        return zero, torch.tensor(float("nan"))
    return torch.stack(losses).mean(), torch.tensor(correct / counted)


def named_answers(objects: ObjectShapes, obj: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """(n, 2) bool: whether object obj[i] has the colour (column 0) and the shape (column 1) named in
    words[i] (a row of named_words; -1, no word, never matches)."""
    return torch.stack([objects.colour[obj] == words[:, 0], objects.label[obj] == words[:, 1]], 1)


def object_match_loss(head: ShapeHead, feats: list[torch.Tensor], sample_images: torch.Tensor,
                      objects: ObjectShapes, sample_words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean binary cross-entropy, accuracy) of "this object has the colour / the shape that the
    sample's sentence names", for every object of the batch's images (objects built with colours=True;
    sample_words (B, 2): named_words of the batch's sentences). Answers the sentence does not ask
    (-1: no colour or no shape word for its target) are left out."""
    if objects.colour is None:
        raise ValueError("the object match loss needs ObjectShapes built with colours=True")
    sample, obj = objects.of_samples(sample_images)
    logits = head(feats, sample, objects.weights[obj])
    words = sample_words[sample]
    target = named_answers(objects, obj, words).float()
    asked = words >= 0
    if not bool(asked.any()):
        return logits.sum() * 0.0, torch.tensor(float("nan"))
    picked, wanted = logits[asked], target[asked]
    loss = F.binary_cross_entropy_with_logits(picked, wanted)
    return loss, ((picked > 0).float() == wanted).float().mean()


class PixelMatchHead(PixelShapeHead):
    """A 1x1 convolution per stage of SHAPE_STAGES, two logits per feature cell: the cell lies in an
    object of the colour / of the shape that the sentence names for its target."""


def build_pixel_match_head(model) -> PixelMatchHead:
    return PixelMatchHead(tuple(model.config.dims), 2)


def named_cover(objects: ObjectShapes, sample_images: torch.Tensor, sample_words: torch.Tensor) -> torch.Tensor:
    """(B, 2, S, S) float32: per sample, the share of each target cell covered by objects of its image that
    have the colour (channel 0) / the shape (channel 1) its sentence names (sample_words as named_words;
    a channel whose word is -1 stays zero). Overlapping objects count at most the whole cell."""
    if objects.colour is None:
        raise ValueError("the pixel match loss needs ObjectShapes built with colours=True")
    sample, obj = objects.of_samples(sample_images)
    words = sample_words[sample]
    has = named_answers(objects, obj, words).float()
    size = objects.weights.shape[-2:]
    cover = torch.zeros(len(sample_images), 2, *size)
    cover.index_add_(0, sample, objects.weights[obj].float() * has[:, :, None, None])
    return cover.clamp(max=1.0)


def pixel_match_loss(head: PixelMatchHead, feats: list[torch.Tensor], sample_images: torch.Tensor,
                     objects: ObjectShapes, sample_words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(binary cross-entropy, accuracy) of "this cell lies in an object of the named colour / shape", at
    every stage-1/2 feature cell of every sample (objects built with colours=True; sample_words (B, 2) as
    named_words). The target is the cell's covered share (named_cover, area-resized to the cell grid);
    a channel whose word the sentence does not name is left out; accuracy counts logit > 0 against
    share >= 0.5. Why per cell: object_match_loss asks the object's average, and the mask still took in
    objects of another colour in 12 % of val sentences; a mask is decided cell by cell, so every cell of
    an object should know whether that object has the colour the sentence asks for."""
    cover = named_cover(objects, sample_images, sample_words)
    asked = (sample_words >= 0).float()[:, :, None, None]  # (B, 2, 1, 1)
    if not bool(asked.any()):
        return sum(f.sum() for f in feats) * 0.0, torch.tensor(float("nan"))
    losses, correct, counted = [], 0.0, 0.0
    for logits in head(feats):
        target = F.interpolate(cover, size=tuple(logits.shape[-2:]), mode="area")
        weight = asked.expand_as(target)
        per_cell = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        losses.append((per_cell * weight).sum() / weight.sum())
        correct += float((((logits > 0) == (target >= 0.5)).float() * weight).sum())
        counted += float(weight.sum())
    return torch.stack(losses).mean(), torch.tensor(correct / counted)
