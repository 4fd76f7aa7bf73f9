"""``remamber-deploy make-dataset``: write the synthetic shapes dataset (``remamber.data.synthetic``)
in the RefCOCO layout, ready for ``remamber-deploy eval --data OUT``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..validate.numbers import int_type
    from .synthetic import GENERATOR_VERSION, SIZE_CLASSES_BY_VERSION
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write <dataset>/ and train2014/ into")
    parser.add_argument("--images", type=int_type("--images", minimum=3, maximum=10_000_000), default=200, help="number of images (10%% val, 10%% testA, the rest train)")
    parser.add_argument("--seed", type=int_type("--seed", minimum=0, maximum=2**63 - 1), default=0, help="the same seed and image count give byte-identical files")
    parser.add_argument("--dataset", default="refcoco", help="name of the dataset folder (refcoco, refcoco+, refcocog)")
    parser.add_argument("--generator-version", type=int, choices=tuple(SIZE_CLASSES_BY_VERSION), default=GENERATOR_VERSION,
                        help="object sizes: 2 (the demo checkpoint's data) or 1 (objects about 1/1.65 the size: "
                             "the default before 2026-12-05; docs/TRAINING.md)")


def run(args) -> int:
    from ..validate.paths import check_output_dir
    from .synthetic import generate

    check_output_dir(args.out, "--out")
    result = generate(args.out, images=args.images, seed=args.seed, dataset=args.dataset,
                      version=args.generator_version)
    splits = ", ".join(f"{name} {count}" for name, count in result.splits.items())
    print(f"wrote {result.images} images, {result.annotations} objects ({result.multi_part} in two parts), "
          f"{result.refs} refs ({splits}), {result.sentences} sentences to {result.root}")
    print(f"evaluate with: remamber-deploy eval --data {result.root} --dataset {args.dataset} --split val")
    return 0
