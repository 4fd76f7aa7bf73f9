"""``remamber-deploy predict``: segment the object a sentence refers to, with the PyTorch model.

Pipeline: image -> preprocess (S x S) ; sentence -> tokenize (20 slots) ; model -> logits (1,1,S,S)
-> nearest resize to the image size -> sigmoid > 0.5 -> mask.png (0/255) and overlay.png, both
written atomically.

Defaults (issue #16): without ``--checkpoint`` the demo checkpoint (``remamber.demo``: the tiny
preset trained on synthetic shapes, not a RefCOCO model) at its training resolution; without
``--image`` / ``--sample`` the demo image and its sentence, whose ground-truth mask gives an IoU.
``--random-weights`` runs seeded random weights instead, and says loudly that the mask means nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from .errors import InputError, RemamberError
from .imageio import check_size, load_image, mask_to_image, overlay, postprocess, preprocess, save_png_atomic
from .samples import list_samples, sample_image
from .tokenizer import tokenize
from .validate.numbers import int_type, size_type
from .validate.paths import check_output_dir, check_output_file
from .validate.text import check_text
from .validate.tokens import check_model_inputs

DEFAULT_SIZE = 480  # ReMamber's training and evaluation resolution (with --checkpoint / --random-weights)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    samples = list_samples()
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, metavar="PATH", help="image file to segment (PNG, JPEG, ...)")
    source.add_argument(
        "--sample",
        choices=list(samples),
        metavar="NAME",
        help="a photo bundled with scikit-image (default: the generated demo image of coloured shapes and its "
        "sentence): " + "; ".join(f"{name}: '{sentence}'" for name, sentence in samples.items()),
    )
    parser.add_argument(
        "--text", metavar="SENTENCE", help="referring expression (default: the demo's or the sample's sentence; "
        "needed with --image)"
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--checkpoint", type=Path, metavar="PATH",
        help="ReMamber checkpoint (.pth); default: the demo checkpoint (tiny preset trained on synthetic shapes, "
        "not a RefCOCO model)"
    )
    weights.add_argument("--random-weights", action="store_true",
                         help="seeded random weights instead of the demo checkpoint: the mask is meaningless")
    parser.add_argument("--variant", choices=["conv", "mamba"],
                        help="conv = paper, mamba = released (default: the checkpoint's; conv with --random-weights)")
    parser.add_argument(
        "--preset", choices=["base", "tiny"],
        help="model size (default: the checkpoint's, read from the file; tiny with --random-weights)"
    )
    parser.add_argument(
        "--size",
        type=size_type("--size"),
        default=None,
        metavar="S",
        help=f"network input side, a multiple of 32 (default: the demo checkpoint's training resolution, "
        f"else {DEFAULT_SIZE})",
    )
    parser.add_argument("--seed", type=int_type("--seed", minimum=0, maximum=2**63 - 1), default=0,
                        help="seed of the random initialisation (with --random-weights)")
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


def _input(args):
    """(image, sentence, source name, ground-truth mask or None)."""
    if args.image is not None:
        if args.text is None:
            raise InputError("--text is required with --image: give the referring expression, e.g. --text 'the cat'")
        return load_image(args.image), args.text, str(args.image), None
    if args.sample is not None:
        image, sentence = sample_image(args.sample)
        return image, args.text if args.text is not None else sentence, f"sample {args.sample}", None
    from .demo import demo_sample

    demo = demo_sample()
    if args.text is not None and args.text != demo.sentence:
        return demo.image, args.text, demo.name, None  # another sentence: the demo's truth does not apply
    return demo.image, demo.sentence, demo.name, demo.mask


def _build(choice):
    """The model the choice names, built and loaded with remamber.build_model / remamber.checkpoint."""
    import remamber  # looked up at run time: the model package is imported only when predicting

    contents = None
    if choice.checkpoint is not None and (choice.variant is None or choice.preset is None):
        from .checkpoint import inspect_checkpoint

        variant, preset, contents = inspect_checkpoint(choice.checkpoint)
        choice.variant, choice.preset = choice.variant or variant or "conv", choice.preset or preset or "base"
    print(f"building the {choice.variant}/{choice.preset} model ...", file=sys.stderr)
    model = remamber.build_model(variant=choice.variant, preset=choice.preset, seed=choice.seed)
    if choice.checkpoint is not None:
        from .checkpoint import load_checkpoint

        print(f"loading {choice.checkpoint} ...", file=sys.stderr)
        report = load_checkpoint(model, choice.checkpoint, **({"contents": contents} if contents is not None else {}))
        if report is not None and choice.kind != "demo":
            print(report, file=sys.stderr)
        if getattr(report, "missing", None):
            # e.g. a VMamba ImageNet file: only the backbone is trained, the rest keeps its random init.
            print(
                f"warning: {len(report.missing)} model tensors are not in the checkpoint and stay RANDOM, "
                "so the mask is not meaningful; pass a full ReMamber checkpoint for a real prediction.",
                file=sys.stderr,
            )
    return model.eval()


def run(args: argparse.Namespace) -> int:
    from .export.model_source import RANDOM_WARNING, choose_model

    start = time.perf_counter()
    # Every input and output is checked here, before the model is built (the slow part).
    if args.size is not None:
        check_size(args.size)
    inputs = [args.image, args.checkpoint]
    check_output_dir(args.out, "--out", inputs=inputs)
    for name in ("mask.png", "overlay.png"):
        check_output_file(args.out / name, "png", f"--out {args.out}: {name}", inputs=inputs, force=args.force)
    if args.text is not None:
        check_text(args.text, "--text")
    choice = choose_model(args.checkpoint, args.random_weights, args.variant, args.preset, args.seed)
    size = check_size(args.size if args.size is not None else (choice.demo.resolution if choice.demo else DEFAULT_SIZE))

    image, text, source, truth = _input(args)
    check_text(text, "--text")
    input_ids, attention_mask = tokenize([text], tokenizer_path=args.tokenizer,
                                         on_truncate=lambda m: print(f"warning: --text: {m}", file=sys.stderr))
    pixels = preprocess(image, size)
    check_model_inputs(pixels, input_ids, attention_mask, source=source)
    if choice.random:
        print("warning: " + RANDOM_WARNING.format(seed=choice.seed) + ".", file=sys.stderr)
    elif choice.kind == "demo" and (args.image is not None or args.sample is not None):
        print("note: the demo checkpoint has only seen synthetic coloured shapes (not a RefCOCO model), so on "
              "this image its mask means little; pass --checkpoint FILE for a real model.", file=sys.stderr)

    model = _build(choice)
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

    print(f"weights: {choice.description}" + (f" ({choice.checkpoint})" if choice.kind == "demo" else ""))
    print(f"image: {source}")
    print(f"text: {text!r}")
    print(f"model: {choice.variant}/{choice.preset}, input {size}x{size}, image {image.size[0]}x{image.size[1]}")
    print(f"mask: {mask_path}")
    print(f"overlay: {overlay_path}")
    print(f"foreground fraction: {float(mask.mean()):.4f}")
    if truth is not None:
        from .demo import mask_iou

        print(f"IoU vs ground truth: {mask_iou(mask, truth):.4f} (true mask covers {float(truth.mean()):.4f})")
    if choice.random:
        print("WEIGHTS ARE RANDOM: the mask above is meaningless (leave out --random-weights for the demo checkpoint)")
    print(f"time: forward {infer_seconds:.3f} s, total {total_seconds:.3f} s")
    return 0
