"""``remamber-deploy compare``: ONNX Runtime (with the custom-op library) against PyTorch.

Runs the ONNX graph and the PyTorch model on the same deterministic inputs and prints one row per
output (logits, and with --mark-intermediates the 4 backbone stages and the decoder feature).
Exit status 0 when the logits meet the tolerances of export/parity_check.py, 1 when they do not
(2 for bad input, as every command). The model defaults to what the ONNX metadata records
(variant, preset, seed or checkpoint path). With trained weights (a checkpoint, e.g. the demo's)
the inputs are the demo image and its sentence, so the mask IoU and pixel disagreement compare real
masks; with random weights they are seeded noise (``--input`` chooses).

Examples:
  remamber-deploy compare remamber_conv_base_480_fp32.onnx --checkpoint ReMamber_Conv.pth
  remamber-deploy compare tiny_mamba_480_fp16.onnx --mark-intermediates
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from remamber.errors import InputError
from remamber.validate.numbers import MAX_BATCH, int_type

from . import model_source, parity_check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=Path, help="ONNX file from `remamber-deploy export`")
    model_source.add_model_arguments(parser, defaults_from_graph=True)
    parser.add_argument("--batch", type=int_type("--batch", minimum=1, maximum=MAX_BATCH), default=1,
                        help="batch size of the test inputs (default 1)")
    parser.add_argument("--input-seed", type=int_type("--input-seed", minimum=0, maximum=2**63 - 1), default=0,
                        help="seed of the noise inputs (default 0)")
    parser.add_argument("--input", choices=("auto", "demo", "noise"), default="auto",
                        help="demo = the generated demo image and its sentence (real masks); noise = seeded random "
                             "tensors; auto (default): demo when the weights come from a checkpoint, else noise")
    parser.add_argument("--threads", type=int_type("--threads", minimum=1, maximum=1024), default=None,
                        help="ONNX Runtime intra-op threads")
    parser.add_argument("--allow-no-scan", action="store_true",
                        help="compare a graph that has no remamber scan node")
    parser.add_argument("--mark-intermediates", action="store_true",
                        help="also compare the backbone stage outputs and the decoder feature; a graph "
                             "exported without them is re-exported with them to a temporary folder")
    parser.add_argument("--runtime-logits", type=Path, metavar="FILE.npy", default=None,
                        help="instead of running ONNX Runtime, judge logits another runtime wrote (the C++ runner's "
                             "--output) against PyTorch on the --inputs folder it read")
    parser.add_argument("--inputs", type=Path, metavar="DIR", default=None,
                        help="with --runtime-logits: the `remamber-deploy prepare-inputs` folder")


def _from_graph(args, meta: dict) -> tuple[str, str, int, Path | None]:
    variant = args.variant or meta.get("remamber.variant") or None
    preset = args.preset or meta.get("remamber.preset") or None
    if not variant or not preset:
        raise InputError(f"{args.onnx} records no variant/preset; pass --variant and --preset (and --checkpoint)")
    checkpoint = args.checkpoint
    weights = meta.get("remamber.weights", "")
    if checkpoint is None and weights and not weights.startswith("random"):
        checkpoint = Path(weights)
    seed = args.seed if args.seed is not None else int(meta.get("remamber.seed", 0))
    return variant, preset, seed, checkpoint


def demo_inputs(batch: int, graph):
    """The demo image (preprocessed at the graph's resolution) and its sentence, repeated ``batch`` times."""
    from remamber import imageio, tokenizer
    from remamber.demo import demo_sample

    resolution = next(i for i in graph.graph.input if i.name == "image").type.tensor_type.shape.dim[2].dim_value
    sample = demo_sample()
    print(f"inputs: {sample.name}, \"{sample.sentence}\" (x{batch})", file=sys.stderr)
    image = imageio.preprocess(sample.image, resolution).repeat(batch, 1, 1, 1)
    ids, attention = tokenizer.tokenize([sample.sentence] * batch)  # int64 (B, 20)
    return image, ids, attention


def run(args) -> int:
    from remamber.validate.graphs import check_graph

    # The graph checks build-engine runs too (scan attributes, op versions, scan nodes present),
    # before the model is built; a missing, empty or corrupt file is an error, not a traceback.
    graph = check_graph(args.onnx, allow_no_scan=args.allow_no_scan)
    if not any(i.name == "image" for i in graph.graph.input):
        raise InputError(f"{args.onnx} has no input 'image': it was not written by `remamber-deploy export`")
    meta = {p.key: p.value for p in graph.metadata_props}
    variant, preset, seed, checkpoint = _from_graph(args, meta)
    model, description = model_source.load_model(variant, preset, seed, checkpoint)
    print(description, file=sys.stderr)
    if args.runtime_logits is not None:
        from .runtime_logits import compare_runtime_logits

        resolution = next(i for i in graph.graph.input if i.name == "image").type.tensor_type.shape.dim[2].dim_value
        text, passed = compare_runtime_logits(args.runtime_logits, args.inputs, model,
                                              meta.get("remamber.precision", "fp32"), resolution)
        print(text)
        return 0 if passed else 1

    onnx_path, intermediates, tmp = args.onnx, None, None
    if args.mark_intermediates:
        from .intermediates import default_intermediates
        from .onnx_export import export_onnx

        intermediates = default_intermediates(model)
        outputs = {o.name for o in graph.graph.output}
        if not set(intermediates) <= outputs:
            tmp = tempfile.TemporaryDirectory(prefix="remamber-compare-")
            onnx_path = Path(tmp.name) / "marked.onnx"
            precision = meta.get("remamber.precision", "fp32")
            resolution = graph.graph.input[0].type.tensor_type.shape.dim[2].dim_value
            print(f"{args.onnx} has no intermediate outputs: exporting a marked copy ({precision}, {resolution}) "
                  f"to {onnx_path}", file=sys.stderr)
            export_onnx(model, onnx_path, resolution, precision, intermediates=intermediates,
                        metadata=model_source.model_metadata(variant, preset, seed, checkpoint))
    inputs = None
    if args.input == "demo" or (args.input == "auto" and checkpoint is not None):
        inputs = demo_inputs(args.batch, graph)
    try:
        report = parity_check.run_compare(onnx_path, model, batch=args.batch, input_seed=args.input_seed,
                                          threads=args.threads, intermediates=intermediates, inputs=inputs)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(parity_check.format_report(report))
    return 0 if report.passed else 1
