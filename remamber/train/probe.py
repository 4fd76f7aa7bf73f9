"""Does a checkpoint read the sentence? Two probes for a referring-segmentation model in training.

    python -m remamber.train.probe --checkpoint RUN/checkpoint.pth --data DATA [--split val] [--limit 32]
        [--decodability] [--object-decodability [--object-images 300]] [--random-weights]
        [--match-decodability [--match-sentences 600] [--match-fit-sentences 2000]]

- **sentence swap:** every image of the first ``--limit`` sentences is run with its own sentence and
  with the next sentence's (a rotation of the batch), and the fraction of mask pixels that change is
  printed beside the mask's coverage. A text-blind model changes nothing.
- **text feature spread:** the mean pairwise cosine similarity of the text encoder's pooled features
  over a few fixed sentences. Near 1 means the encoder gives every sentence the same features (the
  collapse docs/TRAINING.md describes); a random initialisation gives about 0.66 on the tiny preset.
- **what the text features carry** (``--decodability``): linear probes on the pooled text features,
  fitted on the train split's sentences and scored on the probed split's, predict the sentence's
  first colour word and first shape word; printed beside the majority-class rate. Near 100 % means
  the words reach the fusion layers intact, so a weak model is held back by the image side.
- **what the image features carry** (``--object-decodability``): the same probes on each backbone
  stage's features averaged over each object's mask predict the object's shape and colour. With
  ``--random-weights`` the seeded random initialisation is probed instead, as the baseline.
- **does the model compare an object with the sentence's words** (``--match-decodability``): for every
  object of the images of the first sentences, and each of three tensors of stages 1-2 (the VSS-block
  output before the text, the local text fusion's output, the stage output after the Twister; the
  taps of ``forward_and_taps``) averaged over the object, linear probes answer the questions of
  ``train --object-match-loss``: has this object the colour, the shape, that the sentence names for its
  target. Fitted on train sentences, scored on the probed split's, beside the rate of "no". A training
  ``checkpoint.pth`` that kept match heads also gets each head's accuracy per question on the probed
  split. Why: a model can see an object's colour and read the colour word and still never compare the
  two; the match heads' overall accuracy hid that (docs/TRAINING.md, "The colour comparison is missing").

Why it exists: oIoU alone cannot tell "has not learned yet" from "ignores the text", and the second
stalls training for good (issue 16, docs/TRAINING.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

PROBE_SENTENCES = ("the red circle", "the blue square", "the small green star",
                   "the triangle below the green star", "the star on the left", "the yellow circle")


def text_feature_cosine(model, sentences=PROBE_SENTENCES) -> float:
    """Mean off-diagonal cosine similarity of the pooled text features of ``sentences``."""
    from .. import tokenizer

    ids, attention = tokenizer.tokenize(list(sentences))
    with torch.no_grad():
        _, pooled = model.encode_text(ids, attention.long())
    x = torch.nn.functional.normalize(pooled.float(), dim=1)
    sim = x @ x.T
    n = sim.shape[0]
    return float((sim.sum() - sim.diagonal().sum()) / (n * n - n))


def _first_word(sentence: str, vocabulary) -> str:
    return next((w for w in sentence.split() if w in vocabulary), "none")


def _probe_accuracy(fit_x: torch.Tensor, fit_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                    classes: int) -> float:
    """Softmax regression (L-BFGS, zero start, so no RNG) on standardised features -> test accuracy."""
    mean, std = fit_x.mean(0), fit_x.std(0) + 1e-6
    fit_x, test_x = (fit_x - mean) / std, (test_x - mean) / std
    weight = torch.zeros(fit_x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(fit_x @ weight + bias, fit_y) + 1e-4 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return float(((test_x @ weight + bias).argmax(1) == test_y).double().mean())


def attribute_decodability(model, fit_sentences, test_sentences) -> dict:
    """How well the pooled text features predict each sentence's first colour and first shape word.

    -> {"colour": accuracy, "colour_majority": rate, "shape": ..., "shape_majority": ..., "n": test count}.
    The majority rate is that of the test sentences' most common word among the fit set's labels: what
    features that say nothing would score.
    """
    from .. import tokenizer
    from ..data.synthetic import COLOURS, SHAPES

    def pooled(sentences):
        ids, attention = tokenizer.tokenize(list(sentences))
        with torch.no_grad():
            return model.encode_text(ids, attention.long())[1].double()

    fit_x, test_x = pooled(fit_sentences), pooled(test_sentences)
    out = {"n": len(test_sentences)}
    for name, vocabulary in (("colour", tuple(COLOURS)), ("shape", SHAPES)):
        names = sorted({_first_word(s, vocabulary) for s in (*fit_sentences, *test_sentences)})
        fit_y = torch.tensor([names.index(_first_word(s, vocabulary)) for s in fit_sentences])
        test_y = torch.tensor([names.index(_first_word(s, vocabulary)) for s in test_sentences])
        out[name] = _probe_accuracy(fit_x, fit_y, test_x, test_y, len(names))
        out[f"{name}_majority"] = float((test_y == torch.bincount(fit_y).argmax()).double().mean())
    return out


def object_features(model, dataset, split: str, resolution: int, images: int | None = None):
    """Per object of the first ``images`` images of ``split``: its mean feature over its mask at every
    backbone stage, its shape and its colour. Each image runs once, with its first sentence (the
    stage features are text-conditioned; any sentence of the image will do for what they encode).

    -> (list of 4 tensors (objects, C_s) float64, shape names, colour names)."""
    import numpy as np
    import torch.nn.functional as F

    from .. import imageio, tokenizer
    from ..data.synthetic import object_colour, object_shape

    first: dict[int, str] = {}
    for sample in dataset.samples(split):
        first.setdefault(sample.image_id, sample.sentence)
    image_ids = sorted(first)[:images]
    pooled: list[list[torch.Tensor]] = [[], [], [], []]
    shapes, colours = [], []
    for start in range(0, len(image_ids), 16):
        batch = image_ids[start:start + 16]
        pictures = [dataset.image(i) for i in batch]
        x = torch.cat([imageio.preprocess(p, resolution) for p in pictures])
        ids, attention = tokenizer.tokenize([first[i] for i in batch])
        with torch.no_grad():
            feats = model.forward_features(x, ids, attention)
        for j, image_id in enumerate(batch):
            for ann_id in dataset.image_annotations(image_id):
                mask = dataset.mask(ann_id)
                full = torch.from_numpy(mask.astype(np.float32))[None, None]
                for s, f in enumerate(feats):
                    w = F.interpolate(full, size=f.shape[-2:], mode="area")[0, 0].double()  # share of each cell
                    pooled[s].append((f[j].double() * w).sum((1, 2)) / w.sum())
                shapes.append(object_shape(dataset.annotations[ann_id]))
                colours.append(object_colour(pictures[j], mask))
    return [torch.stack(p) for p in pooled], shapes, colours


def object_decodability(model, dataset, fit_split: str, test_split: str, resolution: int,
                        images: int | None = None) -> dict:
    """How well each backbone stage's features, averaged over an object, predict its shape and colour:
    linear probes fitted on ``fit_split``'s objects and scored on ``test_split``'s.

    -> {"stages": [{"shape": accuracy, "colour": accuracy} per stage], "shape_majority", "colour_majority",
    "n": test objects}. Why: the failures of the demo checkpoint take in objects of another shape
    (measure --by-word); this says whether the image features tell the shapes apart at all."""
    fit_x, fit_shapes, fit_colours = object_features(model, dataset, fit_split, resolution, images)
    test_x, test_shapes, test_colours = object_features(model, dataset, test_split, resolution, images)
    out = {"stages": [{} for _ in fit_x], "n": len(test_shapes)}
    for name, fit_labels, test_labels in (("shape", fit_shapes, test_shapes), ("colour", fit_colours, test_colours)):
        names = sorted(set(fit_labels) | set(test_labels))
        fit_y = torch.tensor([names.index(v) for v in fit_labels])
        test_y = torch.tensor([names.index(v) for v in test_labels])
        for s in range(len(fit_x)):
            out["stages"][s][name] = _probe_accuracy(fit_x[s], fit_y, test_x[s], test_y, len(names))
        out[f"{name}_majority"] = float((test_y == torch.bincount(fit_y).argmax()).double().mean())
    return out


# The per-stage tensors the match probes read, and the questions they ask (object_match_loss's order).
MATCH_TAPS = ("backbone", "corr", "fused")
MATCH_QUESTIONS = ("colour", "shape")


def match_features(model, dataset, split: str, resolution: int, limit: int | None = None) -> tuple[dict, torch.Tensor]:
    """Every object of the images of the first ``limit`` sentences of ``split``, once per sentence: its mean
    over its mask of each MATCH_TAPS tensor at each stage of objects.SHAPE_STAGES, computed with that
    sentence, and the answers to MATCH_QUESTIONS for that sentence.

    -> ({(tap, stage): (objects, C_stage) float64}, answers (objects, 2) long: 1 yes, 0 no, -1 where
    the sentence names no colour / no shape for its target)."""
    from .data import load_split
    from .objects import SHAPE_STAGES, build_object_shapes, named_answers, named_words, object_means

    tensors = load_split(dataset, split, resolution, limit=limit)
    objects = build_object_shapes(dataset, tensors, colours=True)
    words = named_words(tensors.sentences)
    pooled: dict[tuple[str, int], list[torch.Tensor]] = {(tap, s): [] for tap in MATCH_TAPS for s in SHAPE_STAGES}
    answers = []
    for start in range(0, len(tensors), 16):
        idx = torch.arange(start, min(start + 16, len(tensors)))
        images, ids, attention, _ = tensors.batch(idx)
        with torch.no_grad():
            _, taps = model.forward_and_taps(images, ids, attention)
        sample, obj = objects.of_samples(tensors.image_index[idx])
        named = words[idx][sample]
        has = named_answers(objects, obj, named).long()
        answers.append(torch.where(named >= 0, has, torch.full_like(has, -1)))
        for tap, s in pooled:
            with torch.no_grad():
                pooled[(tap, s)].append(object_means(taps[tap][s], sample, objects.weights[obj]).double())
    return {key: torch.cat(values) for key, values in pooled.items()}, torch.cat(answers)


def match_decodability(fit: tuple[dict, torch.Tensor], test: tuple[dict, torch.Tensor]) -> dict:
    """Linear probes on match_features: for each (tap, stage) and question, fitted on ``fit``'s objects
    that the question is asked of, scored on ``test``'s.

    -> {"probes": {(tap, stage): {question: accuracy}}, "<question>_no": share of "no" among the test
    answers (what a probe that learned nothing scores at best), "<question>_n": test answers}."""
    (fit_x, fit_y), (test_x, test_y) = fit, test
    out: dict = {"probes": {key: {} for key in fit_x}}
    for q, question in enumerate(MATCH_QUESTIONS):
        fit_rows, test_rows = fit_y[:, q] >= 0, test_y[:, q] >= 0
        for key in fit_x:
            out["probes"][key][question] = _probe_accuracy(fit_x[key][fit_rows], fit_y[fit_rows, q],
                                                           test_x[key][test_rows], test_y[test_rows, q], 2)
        out[f"{question}_no"] = float((test_y[test_rows, q] == 0).double().mean())
        out[f"{question}_n"] = int(test_rows.sum())
    return out


def match_head_accuracy(head, features: dict, answers: torch.Tensor, tap: str) -> dict:
    """Per question, the share of ``answers`` (match_features) that a trained match head (objects.ShapeHead
    with two logits) gets right from the ``tap`` features it was trained on -> {question: accuracy}."""
    from .objects import SHAPE_STAGES

    with torch.no_grad():
        pooled = torch.cat([features[(tap, s)] for s in SHAPE_STAGES], 1).to(head.linear.weight.dtype)
        said = head.linear(pooled) > 0
    out = {}
    for q, question in enumerate(MATCH_QUESTIONS):
        rows = answers[:, q] >= 0
        out[question] = float((said[rows, q].long() == answers[rows, q]).double().mean())
    return out


def trained_match_heads(model, state) -> dict:
    """The match heads a training checkpoint.pth kept (train --object-match-loss / --fusion-match-loss),
    loaded from its contents ``state`` -> {head name: (head, the tap it reads)}; empty for other files."""
    from .loop import AUX_TERMS
    from .objects import build_match_head

    if not isinstance(state, dict) or "heads" not in state:
        return {}
    found = {}
    for term in AUX_TERMS:
        if term.head in state["heads"] and term.build_head is build_match_head:
            head = build_match_head(model)
            head.load_state_dict(state["heads"][term.head])
            found[term.head] = (head.eval(), term.features or state["config"].get("object_loss_features", "fused"))
    return found


def sentence_swap(model, split, limit: int) -> dict:
    """Fraction of mask pixels that change when each image gets the next sentence instead of its own."""
    n = min(limit, len(split))
    if n < 2:
        raise ValueError("the sentence swap needs at least 2 sentences")
    images, ids, attention, _ = split.batch(torch.arange(n))
    rotate = torch.roll(torch.arange(n), 1)
    with torch.no_grad():
        own = model(images, ids, attention) > 0
        other = model(images, ids[rotate], attention[rotate]) > 0
    return {"n": n, "mask_fraction": float(own.float().mean()), "changed_fraction": float((own != other).float().mean())}


def main(argv=None) -> int:
    from .. import ops
    from ..checkpoint import load_checkpoint, read_checkpoint
    from ..data.refcoco import RefDataset
    from ..model import build_model
    from .cli import scan_backend_for_training
    from .data import load_split

    parser = argparse.ArgumentParser(prog="python -m remamber.train.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a training checkpoint.pth or model_fp16.pth")
    parser.add_argument("--data", type=Path, required=True, help="the RefCOCO-layout dataset folder")
    parser.add_argument("--dataset", default="refcoco")
    parser.add_argument("--split", default="val")
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--limit", type=int, default=32, help="sentences for the swap (default 32)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--variant", default="conv")
    parser.add_argument("--decodability", action="store_true",
                        help="also fit linear probes for the colour and shape words on the pooled text features "
                             "(train split sentences) and score them on --split's sentences")
    parser.add_argument("--object-decodability", action="store_true",
                        help="also fit linear probes for each object's shape and colour on the backbone's stage "
                             "features averaged over the object (train split images), scored on --split's objects")
    parser.add_argument("--object-images", type=int, default=300,
                        help="images per split for --object-decodability (default 300)")
    parser.add_argument("--match-decodability", action="store_true",
                        help="also fit linear probes for 'has this object the colour / the shape the sentence "
                             "names' on three stage-1/2 tensors averaged over each object (train sentences), "
                             "scored on --split's; with a training checkpoint.pth, also its match heads")
    parser.add_argument("--match-sentences", type=int, default=600,
                        help="--split sentences for --match-decodability (default 600)")
    parser.add_argument("--match-fit-sentences", type=int, default=2000,
                        help="train sentences the match probes are fitted on (default 2000)")
    parser.add_argument("--random-weights", action="store_true",
                        help="probe the seeded random initialisation instead of --checkpoint (a baseline)")
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.random_weights:
        parser.error("--checkpoint FILE is required (or --random-weights for the random-initialisation baseline)")
    model = build_model(args.variant, args.preset, seed=0)
    what = "random initialisation (seed 0)"
    if not args.random_weights:
        contents = read_checkpoint(args.checkpoint)
        load_checkpoint(model, args.checkpoint, contents=contents)  # casts the fp16 export's tensors
        step = contents[0].get("step", "?") if isinstance(contents[0], dict) else "?"
        what = f"{args.checkpoint} (step {step})"
    model.eval()
    dataset = RefDataset(args.data, args.dataset)
    split = load_split(dataset, args.split, args.resolution, limit=args.limit)
    with ops.use_backend(scan_backend_for_training("auto")):
        swap = sentence_swap(model, split, args.limit)
    print(f"{what}: sentence swap changes "
          f"{100 * swap['changed_fraction']:.2f}% of the pixels (mask covers {100 * swap['mask_fraction']:.2f}%, "
          f"{swap['n']} {args.split} sentences); text feature cosine {text_feature_cosine(model):.3f}")
    if args.decodability:
        found = attribute_decodability(model, [s.sentence for s in dataset.samples("train")],
                                       [s.sentence for s in dataset.samples(args.split)])
        print(f"pooled text features -> first colour word {100 * found['colour']:.1f}% "
              f"(majority {100 * found['colour_majority']:.1f}%), first shape word {100 * found['shape']:.1f}% "
              f"(majority {100 * found['shape_majority']:.1f}%), on {found['n']} {args.split} sentences")
    if args.object_decodability:
        with ops.use_backend(scan_backend_for_training("auto")):
            found = object_decodability(model, dataset, "train", args.split, args.resolution, args.object_images)
        for s, stage in enumerate(found["stages"]):
            print(f"stage {s + 1} features over each object -> shape {100 * stage['shape']:.1f}%, "
                  f"colour {100 * stage['colour']:.1f}%")
        print(f"(majority shape {100 * found['shape_majority']:.1f}%, colour {100 * found['colour_majority']:.1f}%; "
              f"{found['n']} {args.split} objects, probes fitted on train objects)")
    if args.match_decodability:
        _print_match_probes(model, dataset, args, None if args.random_weights else contents[0])
    return 0


def _print_match_probes(model, dataset, args, state) -> None:
    """state: the checkpoint's contents (read once by main), None for --random-weights."""
    from .. import ops
    from .cli import scan_backend_for_training

    with ops.use_backend(scan_backend_for_training("auto")):
        fit = match_features(model, dataset, "train", args.resolution, args.match_fit_sentences)
        test = match_features(model, dataset, args.split, args.resolution, args.match_sentences)
    found = match_decodability(fit, test)
    names = {"backbone": "VSS-block output (before the text)", "corr": "local text fusion output",
             "fused": "stage output (after the Twister)"}
    for (tap, stage), scores in found["probes"].items():
        print(f"stage {stage + 1} {names[tap]:36s} -> named colour {100 * scores['colour']:.1f}%, "
              f"named shape {100 * scores['shape']:.1f}%")
    print(f"(answer 'no': colour {100 * found['colour_no']:.1f}% of {found['colour_n']}, shape "
          f"{100 * found['shape_no']:.1f}% of {found['shape_n']} questions on the objects of the first "
          f"{args.match_sentences} {args.split} sentences; probes fitted on the first {args.match_fit_sentences} train "
          "sentences' objects)")
    if state is not None:
        for name, (head, tap) in trained_match_heads(model, state).items():
            scores = match_head_accuracy(head, *test, tap)
            print(f"trained {name} (reads {tap}) -> named colour {100 * scores['colour']:.1f}%, "
                  f"named shape {100 * scores['shape']:.1f}%")


if __name__ == "__main__":
    raise SystemExit(main())
