"""``remamber-deploy predict``: segment the object a sentence refers to, with the PyTorch model.

Pipeline: image -> preprocess (S x S) ; sentence -> tokenize (20 slots) ; model -> logits (1,1,S,S)
-> nearest resize to the image size -> sigmoid > 0.5 -> mask.png (0/255) and overlay.png, both
written atomically. Without ``--checkpoint`` the weights are random: the command then still runs the
whole pipeline, but the mask means nothing, and it says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from .errors import CheckpointError, InputError, RemamberError
from .imageio import check_size, load_image, mask_to_image, overlay, postprocess, preprocess, save_png_atomic
from .samples import DEFAULT_SAMPLE, list_samples, sample_image
from .tokenizer import tokenize
from .validate.checkpoints import check_checkpoint_file
from .validate.numbers import int_type, size_type
from .validate.paths import check_output_dir, check_output_file
from .validate.text import check_text
from .validate.tokens import check_model_inputs

DEFAULT_SIZE = 480  # ReMamber's training and evaluation resolution


def add_arguments(parser: argparse.ArgumentParser) -> None:
    samples = list_samples()
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, metavar="PATH", help="image file to segment (PNG, JPEG, ...)")
    source.add_argument(
        "--sample",
        choices=list(samples),
        metavar="NAME",
        help=f"a sample image bundled with scikit-image (default: {DEFAULT_SAMPLE}): "
        + "; ".join(f"{name}: '{sentence}'" for name, sentence in samples.items()),
    )
    parser.add_argument(
        "--text", metavar="SENTENCE", help="referring expression (default: the sample's sentence; needed with --image)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, metavar="PATH", help="ReMamber checkpoint (.pth); without it the weights are random"
    )
    parser.add_argument("--variant", choices=["conv", "mamba"], default="conv", help="conv = paper, mamba = released")
    parser.add_argument(
        "--preset", choices=["base", "tiny"], help="model size (default: base with --checkpoint, else tiny)"
    )
    parser.add_argument(
        "--size",
        type=size_type("--size"),
        default=DEFAULT_SIZE,
        metavar="S",
        help=f"network input side, a multiple of 32 (default {DEFAULT_SIZE})",
    )
    parser.add_argument("--seed", type=int_type("--seed", minimum=0, maximum=2**63 - 1), default=0,
                        help="seed of the random initialisation")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        metavar="DIR",
        help="local CLIP tokenizer folder (default: $REMAMBER_TOKENIZER_PATH, else the open_clip_torch vocabulary)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("predict_out"), metavar="DIR", help="output folder (default ./predict_out)"
    )
    parser.add_argument("--force", action="store_true",
                        help="overwrite mask.png / overlay.png in --out even when they are not PNG images")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    # Every input and output is checked here, before the model is built (the slow part).
    size = check_size(args.size)
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise CheckpointError(f"checkpoint {str(args.checkpoint)!r} does not exist or is not a file: check the path")
    if args.checkpoint is not None:
        check_checkpoint_file(args.checkpoint, "--checkpoint")
    inputs = [args.image, args.checkpoint]
    check_output_dir(args.out, "--out", inputs=inputs)
    for name in ("mask.png", "overlay.png"):
        check_output_file(args.out / name, "png", f"--out {args.out}: {name}", inputs=inputs, force=args.force)

    if args.image is not None:
        if args.text is None:
            raise InputError("--text is required with --image: give the referring expression, e.g. --text 'the cat'")
        image = load_image(args.image)
        text = args.text
    else:
        image, default_text = sample_image(args.sample)
        text = args.text if args.text is not None else default_text
    check_text(text, "--text")
    input_ids, attention_mask = tokenize([text], tokenizer_path=args.tokenizer,
                                         on_truncate=lambda m: print(f"warning: --text: {m}", file=sys.stderr))
    pixels = preprocess(image, size)
    check_model_inputs(pixels, input_ids, attention_mask, source=str(args.image or f"sample {args.sample}"))

    preset = args.preset or ("base" if args.checkpoint is not None else "tiny")
    import remamber  # looked up at run time: the model package is imported only when predicting

    print(f"building the {args.variant}/{preset} model ...", file=sys.stderr)
    model = remamber.build_model(variant=args.variant, preset=preset, seed=args.seed)
    if args.checkpoint is not None:
        from .checkpoint import load_checkpoint

        print(f"loading {args.checkpoint} ...", file=sys.stderr)
        report = load_checkpoint(model, args.checkpoint)
        if report is not None:
            print(report, file=sys.stderr)
        if getattr(report, "missing", None):
            # e.g. a VMamba ImageNet file: only the backbone is trained, the rest keeps its random init.
            print(
                f"warning: {len(report.missing)} model tensors are not in the checkpoint and stay RANDOM, "
                "so the mask is not meaningful; pass a full ReMamber checkpoint for a real prediction.",
                file=sys.stderr,
            )
    else:
        print(
            "warning: no --checkpoint given, so the weights are RANDOM and the mask is meaningless; "
            "this run only demonstrates the pipeline. Pass --checkpoint PATH for a real prediction.",
            file=sys.stderr,
        )
    model.eval()

    print(f"running the forward pass at {size}x{size} ...", file=sys.stderr)
    infer_start = time.perf_counter()
    with torch.inference_mode():
        logits = model(pixels, input_ids, attention_mask)
    infer_seconds = time.perf_counter() - infer_start
    if tuple(logits.shape) != (1, 1, size, size):
        raise RemamberError(f"the model returned logits of shape {tuple(logits.shape)}, expected (1, 1, {size}, {size})")

    mask = postprocess(logits, image.size)
    mask_path = save_png_atomic(mask_to_image(mask), args.out / "mask.png")
    overlay_path = save_png_atomic(overlay(image, mask), args.out / "overlay.png")
    total_seconds = time.perf_counter() - start

    print(f"text: {text!r}")
    print(f"model: {args.variant}/{preset}, input {size}x{size}, image {image.size[0]}x{image.size[1]}")
    print(f"mask: {mask_path}")
    print(f"overlay: {overlay_path}")
    print(f"foreground fraction: {float(mask.mean()):.4f}")
    print(f"time: forward {infer_seconds:.3f} s, total {total_seconds:.3f} s")
    return 0
