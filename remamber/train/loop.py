"""The training loop: deterministic batches, AdamW + warm-up/cosine, periodic evaluation, metrics
logging (CSV and JSONL), resumable checkpoints.

Determinism: the batch of step s is a function of (seed, s) alone (one permutation per epoch drawn
from a generator seeded by seed and epoch), the model is built from the seed, nothing else draws
random numbers, and the thread count is fixed; so the same command gives the same losses, and a
resumed run takes exactly the steps the uninterrupted one would have.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_text_atomic
from .evaluate import evaluate
from .loss import segmentation_loss
from . import objects as object_terms
from .objects import named_words
from .schedule import build_scheduler
from .state import CHECKPOINT_NAME, load_training_state, save_training_state

# Parameter-name prefix of the text encoder (TrainConfig.text_encoder_lr_mult).
TEXT_ENCODER_PREFIX = "text_encoder."
# Seed offset between batch_indices streams. torch's CPU generator keeps only the low 32 bits of a
# seed (2**32 + s gives the same numbers as s), so the offset must change those bits.
STREAM_OFFSET = 0x9E3779B9
SHAPE_HEAD = "shape_head"
PIXEL_SHAPE_HEAD = "pixel_shape_head"
COLOUR_HEAD = "colour_head"
MATCH_HEAD = "match_head"
PIXEL_MATCH_HEAD = "pixel_match_head"
FUSION_MATCH_HEAD = "fusion_match_head"


@dataclass(frozen=True)
class AuxTerm:
    """One training-only auxiliary term of remamber/train/objects.py: its head's name (the key in the
    checkpoint's "heads" and the prefix of its logged columns), the TrainConfig field of its weight,
    the offset added to the seed that initialises its head, the head builder and the loss, whether the
    objects must carry colours, whether the loss also reads each sample's named words, which
    per-stage tensors its head reads (a name of remamber.model.segmenter.FEATURE_TAPS; None: the run's
    TrainConfig.object_loss_features), and the TrainConfig field of the first step the term counts at
    (None: from the start)."""

    head: str
    option: str
    seed_offset: int
    build_head: object
    loss: object
    needs_colours: bool = False
    reads_words: bool = False
    features: str | None = None
    start_option: str | None = None


# The auxiliary terms, in the order their heads are built, given optimizer groups and added to the loss.
AUX_TERMS = (
    AuxTerm(SHAPE_HEAD, "object_shape_loss", 0, object_terms.build_shape_head, object_terms.object_shape_loss,
            start_option="object_shape_loss_start"),
    AuxTerm(PIXEL_SHAPE_HEAD, "pixel_shape_loss", 0, object_terms.build_pixel_shape_head,
            object_terms.pixel_shape_loss),
    AuxTerm(COLOUR_HEAD, "object_colour_loss", 1, object_terms.build_colour_head, object_terms.object_colour_loss,
            needs_colours=True),
    AuxTerm(MATCH_HEAD, "object_match_loss", 2, object_terms.build_match_head, object_terms.object_match_loss,
            needs_colours=True, reads_words=True),
    AuxTerm(PIXEL_MATCH_HEAD, "pixel_match_loss", 3, object_terms.build_pixel_match_head,
            object_terms.pixel_match_loss, needs_colours=True, reads_words=True),
    AuxTerm(FUSION_MATCH_HEAD, "fusion_match_loss", 4, object_terms.build_match_head, object_terms.object_match_loss,
            needs_colours=True, reads_words=True, features="corr"),
)
CSV_FIELDS = ("step", "loss", "lr", "val_oIoU", "val_mIoU", "val_n", "elapsed_s")


@dataclass
class TrainConfig:
    preset: str = "tiny"
    variant: str = "conv"
    resolution: int = 128
    batch_size: int = 8
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 1e-4
    min_lr_ratio: float = 0.02
    # lr multiplier of the text encoder; 0 freezes it at its seeded random initialisation. Why: trained
    # from scratch with the rest, the text encoder collapses (every sentence gets nearly the same
    # features, cosine 0.99 after a few hundred steps) before the network has learned to use it, and
    # the model settles on a text-blind "every object" mask. A frozen random encoder keeps sentences
    # apart, so the fusion layers can learn to read them (docs/TRAINING.md).
    text_encoder_lr_mult: float = 1.0
    # Sentences per image in a batch, each about a different object of that image (1: every sentence
    # drawn independently). Why: with several refs to one image in a step, one gradient asks the same
    # pixels for different masks, and only the sentence tells those samples apart (an experiment for
    # the "several objects" failures; docs/TRAINING.md says what it changed).
    sentences_per_image: int = 1
    # Share of each batch taken from attribute queries ("the circle": every circle of the image;
    # remamber/train/queries.py) instead of the dataset's sentences; 0 uses sentences only. Why: they
    # set shape against the other objects in every image, which the unique referring sentences rarely do.
    attribute_queries: float = 0.0
    # How masks become S x S targets (remamber.train.data.resize_mask): "nearest" (official) or "area".
    # The loop does not resize; the split passed to train() must have been loaded this way (checked).
    mask_resize: str = "nearest"
    # Weight of the object-shape auxiliary loss (remamber/train/objects.py; 0: the official loss alone).
    # Why: the segmentation loss never teaches the randomly initialised backbone to tell shapes apart,
    # while a per-object shape target does so within a few hundred steps (docs/TRAINING.md).
    object_shape_loss: float = 0.0
    # The first step at which the object-shape loss counts (0: from the start). Why: the match loss alone
    # teaches the colour comparison and not the shape one, with the shape loss from the start the other
    # way round; a model that has learned the colour comparison kept it when the shape loss was added
    # afterwards (docs/TRAINING.md, run MO and the two-phase check).
    object_shape_loss_start: int = 0
    # Weight of the per-cell shape auxiliary loss (objects.pixel_shape_loss; 0: off). Also not official.
    pixel_shape_loss: float = 0.0
    # Weight of the object-colour auxiliary loss (objects.object_colour_loss; 0: off). Also not official.
    object_colour_loss: float = 0.0
    # Weight of the object-match auxiliary loss (objects.object_match_loss; 0: off). Also not official.
    # Why: the model follows one of the colour and shape words, never both; this asks the fused
    # features of every object whether it has the colour and the shape the sentence names.
    object_match_loss: float = 0.0
    # Weight of the per-cell match auxiliary loss (objects.pixel_match_loss; 0: off). Also not official.
    # Why: with the per-object match the mask still took in objects of another colour; a mask is decided
    # cell by cell, so this asks every stage-1/2 cell whether its object has the named colour and shape.
    pixel_match_loss: float = 0.0
    # Weight of the object-match loss asked of the local text fusion's output (ImageTextCorr of stages
    # 1-2, before the Twister; 0: off). Also not official. Why: with the match loss on the fused outputs
    # the local text fusion still did not compare an object's colour with the colour word (probe
    # --match-decodability); this asks the module built for that comparison directly (docs/TRAINING.md).
    fusion_match_loss: float = 0.0
    # Which stage features the object heads read (Segmenter.forward_and_features): "fused", each stage's
    # output after its Twister, or "backbone", its VSS-block output before the Twister. Why: with the
    # heads on the fused features the model learned shapes and lost the colour word (docs/TRAINING.md);
    # on the backbone features the shape target does not compete with the text fusion for channels.
    object_loss_features: str = "fused"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    eval_limit: int | None = 200
    checkpoint_every: int = 200
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("preset", "variant", "resolution", "batch_size", "steps", "lr", "warmup",
                                           "weight_decay", "min_lr_ratio", "seed")}
        if self.text_encoder_lr_mult != 1.0:  # only when used, so checkpoints of earlier runs still resume
            d["text_encoder_lr_mult"] = self.text_encoder_lr_mult
        if self.sentences_per_image != 1:
            d["sentences_per_image"] = self.sentences_per_image
        if self.attribute_queries:
            d["attribute_queries"] = self.attribute_queries
        if self.mask_resize != "nearest":
            d["mask_resize"] = self.mask_resize
        if self.object_shape_loss:
            d["object_shape_loss"] = self.object_shape_loss
        if self.object_shape_loss_start:
            d["object_shape_loss_start"] = self.object_shape_loss_start
        if self.pixel_shape_loss:
            d["pixel_shape_loss"] = self.pixel_shape_loss
        if self.object_colour_loss:
            d["object_colour_loss"] = self.object_colour_loss
        if self.object_match_loss:
            d["object_match_loss"] = self.object_match_loss
        if self.pixel_match_loss:
            d["pixel_match_loss"] = self.pixel_match_loss
        if self.fusion_match_loss:
            d["fusion_match_loss"] = self.fusion_match_loss
        if self.object_loss_features != "fused":
            d["object_loss_features"] = self.object_loss_features
        return d

    def query_slots(self) -> int:
        """How many samples of each batch are attribute queries (at least one when the option is on)."""
        if not self.attribute_queries:
            return 0
        return min(self.batch_size - 1, max(1, round(self.attribute_queries * self.batch_size)))


def batch_indices(n: int, batch_size: int, seed: int, step: int, stream: int = 0) -> torch.Tensor:
    """Indices (of ``n`` items: sentences, or images for GroupedBatches) of step ``step``: epochs of
    floor(n / batch) batches of a seeded permutation. ``stream`` > 0 gives an independent sequence
    (attribute queries)."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch + int(stream) * STREAM_OFFSET)
    perm = torch.randperm(n, generator=g)
    if n < batch_size:  # tiny datasets: repeat the permutation
        perm = perm.repeat(math.ceil(batch_size / n))
    return perm[k * batch_size:(k + 1) * batch_size]


class GroupedBatches:
    """Batches of ``batch_size // per_image`` images, each with ``per_image`` sentences about different
    objects of that image (TrainConfig.sentences_per_image). Deterministic in (seed, step): images
    follow one seeded permutation per epoch (batch_indices over the images); the objects and
    sentences of step s come from a generator seeded by (seed, s). An image with fewer referred objects than
    ``per_image`` repeats some of them (other sentences where it has them)."""

    def __init__(self, image_index: torch.Tensor, mask_index: torch.Tensor, batch_size: int, per_image: int):
        if per_image < 1 or batch_size % per_image:
            raise ValueError(f"batch size {batch_size} is not a multiple of {per_image} sentences per image")
        objects: dict[int, dict[int, list[int]]] = {}
        for sentence, (image, mask) in enumerate(zip(image_index.tolist(), mask_index.tolist())):
            objects.setdefault(image, {}).setdefault(mask, []).append(sentence)
        self.images = sorted(objects)
        # per image: one list of sentence indices per referred object, in mask order
        self.objects = [[objects[i][m] for m in sorted(objects[i])] for i in self.images]
        self.images_per_batch = batch_size // per_image
        self.per_image = per_image

    def __call__(self, seed: int, step: int) -> torch.Tensor:
        rng = np.random.default_rng([int(seed), int(step), 1])
        chosen = []
        for slot in batch_indices(len(self.images), self.images_per_batch, seed, step).tolist():
            refs = self.objects[slot]
            picks = list(rng.permutation(len(refs))[:self.per_image])
            while len(picks) < self.per_image:  # fewer referred objects than sentences wanted
                picks.append(int(rng.integers(len(refs))))
            chosen += [refs[o][int(rng.integers(len(refs[o])))] for o in picks]
        return torch.tensor(chosen, dtype=torch.long)


def build(config: TrainConfig):
    """(model, optimizer, scheduler, heads): heads holds the training-only modules by name (the shape
    heads of config.object_shape_loss and pixel_shape_loss, the colour head of object_colour_loss, the
    match heads of object_match_loss, pixel_match_loss and fusion_match_loss),
    trained by the same optimizer."""
    from ..model import build_model

    model = build_model(config.variant, config.preset, seed=config.seed).train()
    heads = {}
    for term in AUX_TERMS:
        if getattr(config, term.option):
            with torch.random.fork_rng():  # each head from its own seed, the model's RNG state untouched
                torch.manual_seed(config.seed + term.seed_offset)
                heads[term.head] = term.build_head(model).train()
    if config.text_encoder_lr_mult == 1.0 and not heads:  # one group, as runs before the options (resumable)
        groups = model.parameters()
    else:
        named = list(model.named_parameters())
        groups = [{"params": [p for n, p in named if not n.startswith(TEXT_ENCODER_PREFIX)], "lr": config.lr},
                  {"params": [p for n, p in named if n.startswith(TEXT_ENCODER_PREFIX)],
                   "lr": config.lr * config.text_encoder_lr_mult}]
        groups += [{"params": list(head.parameters()), "lr": config.lr} for head in heads.values()]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = build_scheduler(optimizer, config.steps, config.warmup, config.min_lr_ratio)
    return model, optimizer, scheduler, heads


class MetricsLog:
    """metrics.csv and metrics.jsonl in the output folder, one row per logged step. On resume, rows
    after the checkpoint's step are dropped (they will be logged again)."""

    def __init__(self, out: Path, resume_step: int | None):
        self.csv_path, self.jsonl_path = out / "metrics.csv", out / "metrics.jsonl"
        rows = []
        if resume_step is not None and self.jsonl_path.is_file():
            for line in self.jsonl_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row["step"] <= resume_step:
                        rows.append(row)
        self.rows = rows
        self._flush()

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self._flush()

    def _flush(self) -> None:
        write_text_atomic(self.jsonl_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows))
        import io
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: r.get(k, "") for k in CSV_FIELDS})
        write_text_atomic(self.csv_path, buf.getvalue())


def train(config: TrainConfig, train_split, val_split, out: Path, resume: Path | None = None,
          say=print, queries=None, objects=None) -> dict:
    """Run the steps; returns {"model", "losses", "step", "wall_s", "last_eval"} ("losses": the
    segmentation loss of each step). ``queries`` (remamber.train.queries.AttributeQueries of the train
    split) is needed when config.attribute_queries is set, ``objects``
    (remamber.train.objects.ObjectShapes of the train split) when any object loss is set (built with
    colours for the colour and match losses)."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, optimizer, scheduler, heads = build(config)
    if heads and (objects is None or not len(objects)):
        raise ValueError("an object loss (config.object_shape_loss, pixel_shape_loss, object_colour_loss, "
                         "object_match_loss, pixel_match_loss or fusion_match_loss) is set "
                         "but no objects were given")
    aux_terms = [term for term in AUX_TERMS if term.head in heads]
    for term in aux_terms:
        if term.needs_colours and objects.colour is None:
            raise ValueError(f"config.{term.option} is set but the objects were built without colours")
    start = 0
    if resume is not None:
        start = load_training_state(resume, model, optimizer, scheduler, config.as_dict(), heads)
        say(f"resumed from {resume} at step {start}")
    log = MetricsLog(out, start if resume is not None else None)
    losses: list[float] = []
    last_eval = None
    n = len(train_split)
    grouped = None
    if config.sentences_per_image != 1:
        grouped = GroupedBatches(train_split.image_index, train_split.mask_index, config.batch_size,
                                 config.sentences_per_image)
    if train_split.mask_resize != config.mask_resize:
        raise ValueError(f"the train split's targets were resized with {train_split.mask_resize!r}, "
                         f"the config says {config.mask_resize!r}")
    n_queries = config.query_slots()
    if n_queries and (queries is None or not len(queries)):
        raise ValueError("config.attribute_queries is set but no attribute queries were given")
    if n_queries and grouped is not None:
        raise ValueError("attribute queries and sentences_per_image > 1 do not combine")
    began = time.perf_counter()
    window: list[float] = []
    # per head: (cross-entropy, accuracy) of the steps since the last logged row
    aux_windows: dict[str, list[tuple[float, float]]] = {name: [] for name in heads}
    # the words each sentence (and query) names for its target, for the match losses
    reads_words = any(term.reads_words for term in aux_terms)
    words = named_words(train_split.sentences) if reads_words else None
    query_words = named_words(queries.sentences) if reads_words and n_queries else None
    bar = tqdm(total=config.steps, initial=start, desc="train", unit="step", disable=not config.progress,
               dynamic_ncols=True)
    try:
        for step in range(start, config.steps):
            if grouped is None:
                idx = batch_indices(n, config.batch_size - n_queries, config.seed, step)
            else:
                idx = grouped(config.seed, step)
            images, ids, attention, masks = train_split.batch(idx)
            sample_images = train_split.image_index[idx]
            sample_words = words[idx] if words is not None else None
            if n_queries:
                q = batch_indices(len(queries), n_queries, config.seed, step, stream=1)
                sample_images = torch.cat([sample_images, queries.image_index[q]])
                images = torch.cat([images, train_split.images[queries.image_index[q]]])
                ids = torch.cat([ids, queries.input_ids[q]])
                attention = torch.cat([attention, queries.attention_mask[q]])
                masks = torch.cat([masks, queries.masks[q].float()])
                if query_words is not None:
                    sample_words = torch.cat([sample_words, query_words[q]])
            if heads:
                logits, taps = model.forward_and_taps(images, ids, attention)
            else:
                logits = model(images, ids, attention)
            segmentation = segmentation_loss(logits, masks)
            loss = segmentation
            for term in aux_terms:
                if term.start_option and step < getattr(config, term.start_option):
                    continue  # not yet: its head gets no gradient, AdamW leaves it untouched
                extra = (sample_words,) if term.reads_words else ()
                feats = taps[term.features or config.object_loss_features]
                ce, accuracy = term.loss(heads[term.head], feats, sample_images, objects, *extra)
                loss = loss + getattr(config, term.option) * ce
                aux_windows[term.head].append((float(ce.item()), float(accuracy.item())))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            value = float(segmentation.item())
            losses.append(value)
            window.append(value)
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
            evaluated = val_split is not None and config.eval_every and (done % config.eval_every == 0 or done == config.steps)
            if evaluated:
                last_eval = evaluate(model, val_split, limit=config.eval_limit)
                bar.write(f"step {done}: val oIoU {last_eval['oIoU']:.4f} mIoU {last_eval['mIoU']:.4f} "
                          f"(n={last_eval['n']})")
            if done % config.log_every == 0 or evaluated or done == config.steps:
                row = {"step": done, "loss": sum(window) / len(window), "lr": lr,
                       "elapsed_s": round(time.perf_counter() - began, 2)}
                for name, values in aux_windows.items():
                    if values:
                        prefix = name.removesuffix("_head")  # shape_loss / shape_acc, pixel_shape_..., colour_...
                        row[f"{prefix}_loss"] = sum(c for c, _ in values) / len(values)
                        row[f"{prefix}_acc"] = sum(a for _, a in values) / len(values)
                        values.clear()
                if evaluated:
                    row.update(val_oIoU=last_eval["oIoU"], val_mIoU=last_eval["mIoU"], val_n=last_eval["n"])
                log.add(row)
                window = []
            if done % config.checkpoint_every == 0 or done == config.steps:
                save_training_state(out / CHECKPOINT_NAME, model, optimizer, scheduler, done, config.as_dict(), heads)
    finally:
        bar.close()
    model.eval()
    return {"model": model, "losses": losses, "step": config.steps, "wall_s": time.perf_counter() - began,
            "last_eval": last_eval}
