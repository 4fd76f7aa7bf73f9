"""``remamber-deploy train``: train ReMamber (tiny preset by default) on a RefCOCO-layout folder, or on
the synthetic shapes dataset it generates itself (--images / --data-seed), with a resumable
checkpoint, logged metrics and an fp16 export that the checkpoint loader reads (docs/TRAINING.md)."""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

from ..errors import InputError

DATA_FOLDER = "data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..validate.numbers import float_type, int_type, size_type

    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder: checkpoint.pth (resumable), metrics.csv/.jsonl, curve.png, model_fp16.pth/.json")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="RefCOCO-layout folder (e.g. from make-dataset); default: generate the synthetic dataset "
                             "into OUT/data from --images and --data-seed")
    parser.add_argument("--dataset", default="refcoco", help="dataset folder name inside --data")
    parser.add_argument("--images", type=int_type("--images", minimum=3, maximum=1_000_000), default=1000,
                        help="images to generate when --data is not given")
    parser.add_argument("--data-seed", type=int_type("--data-seed", minimum=0, maximum=2**63 - 1), default=0,
                        help="generator seed when --data is not given")
    parser.add_argument("--preset", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--variant", choices=("conv", "mamba"), default="conv")
    parser.add_argument("--resolution", type=size_type("--resolution"), default=128,
                        help="training (and evaluation) input size S, a multiple of 32")
    parser.add_argument("--batch-size", type=int_type("--batch-size", minimum=1, maximum=4096), default=8)
    parser.add_argument("--steps", type=int_type("--steps", minimum=1), default=1000)
    parser.add_argument("--lr", type=float_type("--lr", minimum=0, strict_minimum=True, maximum=1.0), default=1e-3,
                        help="peak AdamW learning rate")
    parser.add_argument("--warmup", type=int_type("--warmup", minimum=0), default=100, help="linear warm-up steps")
    parser.add_argument("--text-encoder-lr-mult", type=float_type("--text-encoder-lr-mult", minimum=0, maximum=1000.0),
                        default=1.0, help="lr multiplier of the text encoder; 0 freezes it at its random initialisation "
                                          "(keeps sentences apart while the fusion learns to read them); default 1")
    parser.add_argument("--sentences-per-image", type=int_type("--sentences-per-image", minimum=1, maximum=64), default=1,
                        help="sentences per image in a batch, each about a different object of it (the batch size "
                             "must be a multiple); 1 draws every sentence independently")
    parser.add_argument("--attribute-queries", type=float_type("--attribute-queries", minimum=0, maximum=0.9), default=0.0,
                        metavar="FRACTION",
                        help="share of each batch drawn from attribute queries of the synthetic dataset ('the circle': "
                             "every circle of the image; docs/TRAINING.md); 0 (default) trains on the sentences only")
    parser.add_argument("--mask-resize", choices=("nearest", "area"), default="nearest",
                        help="how true masks become training targets at --resolution: nearest (the official "
                             "transform) or area (each cell takes the majority of the pixels it covers; scores higher "
                             "when the resolution is far below the images', docs/TRAINING.md)")
    parser.add_argument("--object-shape-loss", type=float_type("--object-shape-loss", minimum=0, maximum=100.0),
                        default=0.0, metavar="WEIGHT",
                        help="add WEIGHT x an auxiliary loss: a linear head names the shape of every object of the "
                             "synthetic dataset's images from the stage-1/2 features averaged over its mask "
                             "(not part of the official loss; the head is not exported; docs/TRAINING.md); "
                             "0 (default): the official loss alone")
    parser.add_argument("--object-shape-loss-start", type=int_type("--object-shape-loss-start", minimum=0), default=0,
                        metavar="STEP",
                        help="the first step at which --object-shape-loss counts (default 0: from the start); "
                             "before it the model learns from the other terms (docs/TRAINING.md, two phases)")
    parser.add_argument("--pixel-shape-loss", type=float_type("--pixel-shape-loss", minimum=0, maximum=100.0),
                        default=0.0, metavar="WEIGHT",
                        help="add WEIGHT x an auxiliary loss: a 1x1 convolution names, at every stage-1/2 feature cell "
                             "that an object of the synthetic dataset covers, that object's shape (not part of the "
                             "official loss; the head is not exported); 0 (default): off")
    parser.add_argument("--object-colour-loss", type=float_type("--object-colour-loss", minimum=0, maximum=100.0),
                        default=0.0, metavar="WEIGHT",
                        help="add WEIGHT x an auxiliary loss like --object-shape-loss that names each object's colour "
                             "(not part of the official loss; the head is not exported); 0 (default): off")
    parser.add_argument("--object-match-loss", type=float_type("--object-match-loss", minimum=0, maximum=100.0),
                        default=0.0, metavar="WEIGHT",
                        help="add WEIGHT x an auxiliary loss: from the same mask-averaged features, for every object, "
                             "whether it has the colour and the shape that the sentence names for its target (not "
                             "part of the official loss; the head is not exported); 0 (default): off")
    parser.add_argument("--pixel-match-loss", type=float_type("--pixel-match-loss", minimum=0, maximum=100.0),
                        default=0.0, metavar="WEIGHT",
                        help="add WEIGHT x an auxiliary loss: a 1x1 convolution tells, at every stage-1/2 feature "
                             "cell, whether the cell lies in an object of the colour and of the shape that the "
                             "sentence names for its target (not part of the official loss; the head is not "
                             "exported); 0 (default): off")
    parser.add_argument("--fusion-match-loss", type=float_type("--fusion-match-loss", minimum=0, maximum=100.0),
                        default=0.0, metavar="WEIGHT",
                        help="add WEIGHT x the --object-match-loss question asked of the local text fusion's "
                             "output (ImageTextCorr of stages 1-2, the per-pixel image-token products, before the "
                             "Twister) instead of the stage output (not part of the official loss; the head is not "
                             "exported); 0 (default): off")
    parser.add_argument("--object-loss-features", choices=("fused", "backbone"), default="fused",
                        help="which stage features the object losses read: fused (default; each stage's output "
                             "after its Twister) or backbone (the VSS-block output before the Twister, which "
                             "leaves the text fusion its channels; docs/TRAINING.md)")
    parser.add_argument("--weight-decay", type=float_type("--weight-decay", minimum=0), default=1e-4)
    parser.add_argument("--seed", type=int_type("--seed", minimum=0, maximum=2**31 - 1), default=0,
                        help="model initialisation and batch order")
    parser.add_argument("--resume", type=Path, metavar="CKPT", help="continue from a checkpoint.pth of the same options")
    parser.add_argument("--eval-every", type=int_type("--eval-every", minimum=0), default=200,
                        help="evaluate val oIoU/mIoU every N steps (0: only at the end)")
    parser.add_argument("--eval-limit", type=int_type("--eval-limit", minimum=1), default=200,
                        help="val sentences scored at the periodic evaluations (the final one scores all)")
    parser.add_argument("--log-every", type=int_type("--log-every", minimum=1), default=10, help="metrics row every N steps")
    parser.add_argument("--checkpoint-every", type=int_type("--checkpoint-every", minimum=1), default=200)
    parser.add_argument("--threads", type=int_type("--threads", minimum=1, maximum=1024), default=2,
                        help="torch intra-op threads (part of the determinism: keep it for a reproduction)")
    parser.add_argument("--scan-backend", choices=("auto", "cpu", "reference"), default="auto",
                        help="scan kernels for training: cpu = our native forward and backward (several times "
                             "faster; needs `bash scripts/build_native.sh`), reference = the PyTorch reference; "
                             "auto = cpu when its library is built (default: auto)")
    parser.add_argument("--final-splits", default="val,testA", help="splits scored in full at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _machine() -> str:
    import os

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def run(args) -> int:
    import torch

    previous_threads = torch.get_num_threads()
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous_threads)  # embedded use (tests): leave the process as it was


def scan_backend_for_training(choice: str) -> str:
    """The scan backend the run uses: "cpu" when asked or (auto) when its library loads, else "reference"."""
    from ..ops import cpu_backend

    if choice == "reference":
        return "reference"
    reason = cpu_backend.unavailable_reason()
    if reason is None:
        return "cpu"
    if choice == "cpu":
        raise InputError(f"--scan-backend cpu: {reason}")
    print(f"note: training with the slow PyTorch reference scan ({reason})")
    return "reference"


def ops_backend_name() -> str:
    from ..ops import resolve_backend

    return resolve_backend("cpu").name


def _run(args) -> int:
    from .. import ops

    with ops.use_backend(scan_backend_for_training(args.scan_backend)):
        return _run_with_backend(args)


def _run_with_backend(args) -> int:
    import torch

    from ..data.refcoco import RefDataset
    from ..validate.paths import check_output_dir
    from .curve import plot_curve
    from .data import load_split
    from .evaluate import evaluate
    from .loop import AUX_TERMS, TrainConfig, train
    from .state import EXPORT_NAME, export_fp16

    torch.set_num_threads(args.threads)
    out = check_output_dir(args.out, "--out")
    if args.data is not None and not Path(args.data).is_dir():
        raise InputError(f"--data {args.data} is not a folder; pass a RefCOCO-layout folder (remamber-deploy make-dataset "
                         "--out DIR writes one), or leave --data out to generate the synthetic dataset")
    if args.resume is not None and not Path(args.resume).is_file():
        raise InputError(f"--resume {args.resume}: no such file; pass the checkpoint.pth a previous run wrote in its --out")
    if args.batch_size % args.sentences_per_image:
        raise InputError(f"--batch-size {args.batch_size} is not a multiple of --sentences-per-image "
                         f"{args.sentences_per_image}; pick a batch size that is")
    if args.attribute_queries and args.sentences_per_image != 1:
        raise InputError("--attribute-queries and --sentences-per-image do not combine; use one of them")
    if args.object_shape_loss_start and not args.object_shape_loss:
        raise InputError("--object-shape-loss-start needs --object-shape-loss WEIGHT (the loss whose start it sets)")
    if args.object_shape_loss_start >= args.steps:
        raise InputError(f"--object-shape-loss-start {args.object_shape_loss_start} must be below --steps {args.steps}, "
                         "or the shape loss never counts")
    if args.warmup >= args.steps:
        raise InputError(f"--warmup {args.warmup} must be below --steps {args.steps}")
    began = time.perf_counter()
    data_info: dict = {}
    if args.data is None:
        from ..data.synthetic import GENERATOR_VERSION, generate

        root = out / DATA_FOLDER
        if not (root / args.dataset / "instances.json").is_file():
            print(f"generating {args.images} synthetic images (seed {args.data_seed}) into {root}")
            generate(root, images=args.images, seed=args.data_seed, dataset=args.dataset)
        data_info = {"images": args.images, "seed": args.data_seed, "generator_version": GENERATOR_VERSION}
    else:
        root = Path(args.data)
        data_info = {"path": str(root)}
    dataset = RefDataset(root, args.dataset)
    progress = not args.no_progress
    train_split = load_split(dataset, "train", args.resolution, progress=progress, mask_resize=args.mask_resize)
    val_split = load_split(dataset, "val", args.resolution, progress=progress, mask_resize=args.mask_resize)
    print(f"train: {len(train_split)} sentences, {train_split.images.shape[0]} images; "
          f"val: {len(val_split)} sentences; resolution {args.resolution}")
    queries = None
    if args.attribute_queries:
        from .queries import build_queries

        queries = build_queries(dataset, train_split)
        print(f"attribute queries: {len(queries)} on {train_split.images.shape[0]} images")
    objects = None
    if any(getattr(args, term.option) for term in AUX_TERMS):
        from .objects import build_object_shapes

        objects = build_object_shapes(dataset, train_split, colours=any(
            getattr(args, term.option) for term in AUX_TERMS if term.needs_colours))
        print(f"object losses (shape {args.object_shape_loss:g}, pixel shape {args.pixel_shape_loss:g}, "
              f"colour {args.object_colour_loss:g}, match {args.object_match_loss:g}, "
              f"pixel match {args.pixel_match_loss:g}, fusion match {args.fusion_match_loss:g}): {len(objects)} objects on "
              f"{train_split.images.shape[0]} images")
    config = TrainConfig(
        preset=args.preset, variant=args.variant, resolution=args.resolution, batch_size=args.batch_size,
        steps=args.steps, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay, seed=args.seed,
        text_encoder_lr_mult=args.text_encoder_lr_mult, sentences_per_image=args.sentences_per_image,
        attribute_queries=args.attribute_queries, mask_resize=args.mask_resize,
        object_shape_loss=args.object_shape_loss, object_shape_loss_start=args.object_shape_loss_start,
        pixel_shape_loss=args.pixel_shape_loss,
        object_colour_loss=args.object_colour_loss, object_match_loss=args.object_match_loss,
        pixel_match_loss=args.pixel_match_loss, fusion_match_loss=args.fusion_match_loss,
        object_loss_features=args.object_loss_features, log_every=args.log_every,
        eval_every=args.eval_every or args.steps, eval_limit=args.eval_limit,
        checkpoint_every=args.checkpoint_every, progress=progress,
    )
    result = train(config, train_split, val_split, out, resume=args.resume, queries=queries, objects=objects)
    model = result["model"]
    metrics = {}
    for split in [s.strip() for s in args.final_splits.split(",") if s.strip()]:
        tensors = val_split if split == "val" else load_split(dataset, split, args.resolution, progress=progress)
        metrics[split] = evaluate(model, tensors)
        print(f"final {split} @{args.resolution}: oIoU {metrics[split]['oIoU']:.4f} mIoU {metrics[split]['mIoU']:.4f} "
              f"(n={metrics[split]['n']})")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    plot_curve(rows, out / "curve.png", title=f"ReMamber {args.preset}/{args.variant} @{args.resolution}, "
                                              f"batch {args.batch_size}, lr {args.lr:g}")
    wall = time.perf_counter() - began
    command = "remamber-deploy train " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("train") + 1:]) \
        if "train" in sys.argv else " ".join(shlex.quote(a) for a in sys.argv)
    meta = {
        "preset": args.preset, "variant": args.variant, "resolution": args.resolution, "storage_dtype": "float16",
        "description": "demo: tiny preset trained on synthetic shapes; not a RefCOCO model",
        "training": {"command": command, "seed": args.seed, "data": data_info, "steps": args.steps,
                     "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup,
                     "text_encoder_lr_mult": args.text_encoder_lr_mult,
                     "sentences_per_image": args.sentences_per_image,
                     "attribute_queries": args.attribute_queries, "mask_resize": args.mask_resize,
                     "object_shape_loss": args.object_shape_loss,
                     "object_shape_loss_start": args.object_shape_loss_start,
                     "pixel_shape_loss": args.pixel_shape_loss,
                     "object_colour_loss": args.object_colour_loss,
                     "object_match_loss": args.object_match_loss,
                     "pixel_match_loss": args.pixel_match_loss,
                     "fusion_match_loss": args.fusion_match_loss,
                     "object_loss_features": args.object_loss_features,
                     "weight_decay": args.weight_decay, "threads": args.threads,
                     "scan_backend": ops_backend_name(),
                     "wall_s": round(wall, 1), "machine": _machine(), "torch": str(torch.__version__),
                     "resumed": args.resume is not None},
        "metrics": metrics,
        "final": False,
    }
    export_fp16(out / EXPORT_NAME, model, meta)
    from ..atomic import write_text_atomic

    write_text_atomic(out / "model_fp16.json", json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out / EXPORT_NAME} ({(out / EXPORT_NAME).stat().st_size / 1e6:.1f} MB) and model_fp16.json, "
          f"curve.png, metrics.csv in {out} ({wall:.0f} s)")
    return 0
