"""Score a trained checkpoint on a RefCOCO-layout split at any input resolution (e.g. the training
resolution, or 480 where predict and the main job run it):

    python -m remamber.train.measure --checkpoint model_fp16.pth --data DIR --split val --resolution 480 [--limit N] [--by-kind] [--by-outcome] [--by-word]
    python -m remamber.train.measure --ceiling --data DIR --split val --resolution 96

Prints {"oIoU", "mIoU", "n"} as JSON; --by-kind adds "groups": the same scores per kind of sentence
of the synthetic grammar (attribute, position, relation; remamber.data.synthetic.sentence_kind);
--by-outcome adds "outcomes": the share of sentences whose mask got the right object, the target
with a poor mask, one wrong object, several objects, background or nothing
(remamber.train.evaluate.outcome); --by-word also splits "several objects" by whether the other marked
objects have the colour and shape the sentence names for the target ("outcome_details"). The checkpoint is read by remamber.checkpoint (the path any user
of the file takes), so this also checks that the exported file loads.
--queries adds "queries": oIoU/mIoU on the attribute queries of the split's images (every circle,
every red object, every red circle; remamber.train.queries) per kind, which says whether the model
tells shapes apart at all. --ceiling scores the training targets themselves instead of a
checkpoint: the true masks resized to the resolution and back, which bounds what any model can
score there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def measure(checkpoint: Path, data: Path, split: str, resolution: int, limit: int | None = None,
            preset: str = "tiny", variant: str = "conv", dataset: str = "refcoco", batch_size: int = 8,
            by_kind: bool = False, by_outcome: bool = False, by_word: bool = False, queries: bool = False) -> dict:
    from ..checkpoint import load_checkpoint
    from ..data.refcoco import RefDataset
    from ..model import build_model
    from .data import load_split
    from ..data.synthetic import sentence_kind
    from .evaluate import evaluate, outcome_labeller

    model = build_model(variant, preset)
    load_checkpoint(model, checkpoint)
    refs = RefDataset(data, dataset)
    tensors = load_split(refs, split, resolution, limit=limit)
    labeller = outcome_labeller(refs.samples(split, limit=limit), refs, by_word) if by_outcome or by_word else None
    result = evaluate(model, tensors, batch_size=batch_size, group_of=sentence_kind if by_kind else None,
                      outcome_of=labeller)
    if queries:
        from .queries import build_queries, score_queries

        result["queries"] = score_queries(model, tensors, build_queries(refs, tensors), batch_size=batch_size)
    return result


def main(argv: list[str] | None = None) -> int:
    import torch

    from .data import MASK_RESIZES

    parser = argparse.ArgumentParser(prog="python -m remamber.train.measure", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--queries", action="store_true",
                        help="also score the attribute queries of the split's images (synthetic data: 'the circle', "
                             "'the red shape', 'the red circle'; every matching object) per kind, on the resolution's grid")
    parser.add_argument("--ceiling", action="store_true",
                        help="score the true masks at --resolution (resized there and back) instead of a checkpoint")
    parser.add_argument("--mask-resize", choices=MASK_RESIZES, default="nearest",
                        help="with --ceiling: how the masks are resized to --resolution (as train --mask-resize)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--resolution", type=int, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N sentences of the split")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--variant", default="conv")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--by-kind", action="store_true",
                        help="also score each kind of sentence of the synthetic grammar (attribute, position, relation)")
    parser.add_argument("--by-outcome", action="store_true",
                        help="also count what each mask picked: the right object, the target with a poor mask, "
                             "one wrong object, several objects, background, nothing")
    parser.add_argument("--by-word", action="store_true",
                        help="with the outcomes: when a mask marks several objects, whether the other objects have "
                             "the colour and shape that the sentence names for the target (synthetic data)")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (not args.ceiling):
        parser.error("pass --checkpoint FILE, or --ceiling to score the true masks at --resolution")
    torch.set_num_threads(args.threads)
    if args.ceiling:
        from ..data.refcoco import RefDataset
        from .data import load_split
        from .evaluate import ceiling

        split = load_split(RefDataset(args.data, "refcoco"), args.split, args.resolution, limit=args.limit,
                           mask_resize=args.mask_resize)
        json.dump(ceiling(split), sys.stdout)
        print()
        return 0
    result = measure(args.checkpoint, args.data, args.split, args.resolution, args.limit, args.preset, args.variant,
                     by_kind=args.by_kind, by_outcome=args.by_outcome, by_word=args.by_word, queries=args.queries)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
