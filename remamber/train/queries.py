"""Attribute queries: extra training samples whose target is every object that matches a phrase.

The generated sentences name a target uniquely, so a sentence whose shape word is the only thing
that tells two objects apart is rare, and the backbone, which starts from random weights, learns
to see colour (already in its first features) long before it learns to see shape (docs/TRAINING.md,
"What holds the demo checkpoint back"). An attribute query such as "the circle" asks for *every*
circle of the image; "the red shape" for every red object; "the red circle" for every red circle.
They use the grammar's own noun phrases and agree with it wherever the grammar uses them (there the
match is unique), and each one sets shape (or colour) against the other objects of the image. The
loss is unchanged; only the batch holds some of these samples (TrainConfig.attribute_queries).

They need the synthetic dataset's meaning of an annotation: its category is its shape
(remamber.data.synthetic.SHAPES) and its colour is the palette colour of its pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch



@dataclass
class AttributeQueries:
    """Queries of one split in memory: image_index into the split's images, masks (n, 1, S, S) uint8;
    every_object (I, 1, S, S) uint8: per image of the split, all its objects (the text-blind answer)."""

    image_index: torch.Tensor
    masks: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    sentences: list[str]
    every_object: torch.Tensor

    def __len__(self) -> int:
        return int(self.image_index.shape[0])


def image_queries(objects: list[tuple[str, str]]) -> dict[str, list[int]]:
    """Phrase -> indices of the objects it selects, for objects given as (shape, colour): every shape
    ("the circle"), colour ("the red shape") and colour + shape ("the red circle") present."""
    found: dict[str, list[int]] = {}
    for i, (shape, colour) in enumerate(objects):
        for phrase in (f"the {shape}", f"the {colour} shape", f"the {colour} {shape}"):
            found.setdefault(phrase, []).append(i)
    return found


def build_queries(dataset, split_tensors) -> AttributeQueries:
    """The attribute queries of every image of ``split_tensors`` (a SplitTensors of ``dataset``)."""
    from .. import tokenizer
    from .data import resize_mask
    from .objects import image_object_colours, image_objects, require_shapes_dataset

    names = require_shapes_dataset(dataset, "--attribute-queries")
    S = split_tensors.resolution
    image_index, masks, sentences, every_object = [], [], [], []
    for slot, image_id in enumerate(split_tensors.image_ids):
        ann_masks, shapes = image_objects(dataset, image_id, names)
        objects = list(zip(shapes, image_object_colours(dataset, image_id, ann_masks)))  # colours from the pixels
        every_object.append(resize_mask(np.logical_or.reduce(ann_masks), S, split_tensors.mask_resize))
        for phrase, members in image_queries(objects).items():
            union = np.logical_or.reduce([ann_masks[i] for i in members])
            masks.append(resize_mask(union, S, split_tensors.mask_resize))
            image_index.append(slot)
            sentences.append(phrase)
    ids, attention = tokenizer.tokenize(sentences)
    return AttributeQueries(image_index=torch.tensor(image_index, dtype=torch.long), masks=torch.stack(masks),
                            input_ids=ids, attention_mask=attention, sentences=sentences,
                            every_object=torch.stack(every_object))


QUERY_KINDS = ("shape", "colour", "colour and shape")


def query_kind(phrase: str) -> str:
    """"the circle" -> shape, "the red shape" -> colour, "the red circle" -> colour and shape."""
    words = phrase.split()[1:]
    if words[-1] == "shape":
        return "colour"
    return "colour and shape" if len(words) == 2 else "shape"


def score_queries(model, split_tensors, queries: AttributeQueries, batch_size: int = 16) -> dict:
    """{kind: {"oIoU", "mIoU", "n", "every_object_oIoU"}} of ``model`` on the queries, per QUERY_KINDS. every_object_oIoU is the score of marking every object of the image: a model that
    cannot tell the kind's words apart scores about that.

    Scored on the S x S grid against the resized targets (logits > 0), not at the ground-truth size:
    this asks whether the network tells shapes (or colours) apart, which the shape-only queries
    isolate: the grammar's sentences mix both."""
    from ..bench.eval_metrics import intersection_union, summarize

    n = len(queries)
    pairs: dict[str, list] = {k: [] for k in QUERY_KINDS}
    blind: dict[str, list] = {k: [] for k in QUERY_KINDS}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                idx = torch.arange(start, min(n, start + batch_size))
                logits = model(split_tensors.images[queries.image_index[idx]], queries.input_ids[idx],
                               queries.attention_mask[idx])
                for j, i in enumerate(idx.tolist()):
                    pred = (logits[j, 0] > 0).numpy()
                    target = queries.masks[i, 0].numpy().astype(bool)
                    kind = query_kind(queries.sentences[i])
                    pairs[kind].append(intersection_union(pred, target))
                    every = queries.every_object[int(queries.image_index[i]), 0].numpy().astype(bool)
                    blind[kind].append(intersection_union(every, target))
    finally:
        model.train(was_training)
    out = {}
    for kind, kind_pairs in pairs.items():
        if kind_pairs:
            summary = summarize(kind_pairs)
            out[kind] = {"oIoU": summary["oiou"], "mIoU": summary["miou"], "n": summary["sentences"],
                         "every_object_oIoU": summarize(blind[kind])["oiou"]}
    return out
