"""``remamber-deploy export``: ReMamber -> ONNX with one remamber scan node per SS2D call.

By default each SS2D becomes one ``remamber::SS2DScan`` node (the fused op, no layout ops around it);
``--scan-op selective`` writes the v1 graphs: ``remamber::SelectiveScan`` between the cross-scan and
merge layout ops (for runtimes or plugin builds that only have SelectiveScan).

Examples:
  remamber-deploy export --checkpoint ReMamber_Conv.pth --variant conv --resolution 480 -o remamber_conv_480.onnx
  remamber-deploy export --preset tiny --variant mamba --resolution 1024 --precision fp16 -o tiny_mamba_1024_fp16.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

from remamber.errors import InputError
from remamber.validate.numbers import MAX_BATCH, int_type, size_type
from remamber.validate.paths import check_output_file

from . import graph_checks, model_source, onnx_export


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model_source.add_model_arguments(parser)
    parser.add_argument("--resolution", type=size_type("--resolution"), default=480,
                        help="input size S (multiple of 32; default 480)")
    parser.add_argument("--precision", choices=onnx_export.PRECISIONS, default="fp32",
                        help="fp32, or fp16 = strongly typed half precision with fp32 islands (default fp32)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="ONNX file to write (default remamber_<variant>_<preset>_<S>_<precision>.onnx)")
    parser.add_argument("--static-batch", type=int_type("--static-batch", minimum=1, maximum=MAX_BATCH), default=None,
                        metavar="N",
                        help="fix the batch dimension to N (default: dynamic batch)")
    parser.add_argument("--scan-op", choices=("fused", "selective"), default="fused",
                        help="fused = one remamber::SS2DScan per SS2D (default); selective = remamber::SelectiveScan "
                             "plus cross-scan/merge layout ops (the v1 graphs)")
    parser.add_argument("--upsample-conv", choices=onnx_export.UPSAMPLE_CONV, default="auto",
                        help="lowres = compute each 3x3 conv of a bilinear upsample at the low resolution "
                             "(exact up to rounding, 2x fewer FLOPs in the ConvDecoder's neck); direct = keep "
                             "Resize + Conv; auto = lowres for fp32, direct for fp16 (default auto)")
    parser.add_argument("--mark-intermediates", action="store_true",
                        help="also output the 4 backbone stage features and the decoder feature (for compare)")
    parser.add_argument("--external-data", choices=("auto", "always"), default="auto",
                        help="weights in <output>.data: auto = only above 2 GiB (default), always")
    parser.add_argument("--opset", type=int_type("--opset", minimum=18, maximum=onnx.defs.onnx_opset_version()), default=None,
                        help="ONNX opset (default: the exporter's)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing -o file that is not an ONNX file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    # Validate everything cheap before the (slow) model build, so bad input fails fast and
    # leaves nothing behind.
    onnx_export.validate_resolution(args.resolution)
    model_source.check_checkpoint_path(args.checkpoint)
    output = args.output or Path(f"remamber_{args.variant}_{args.preset}_{args.resolution}_{args.precision}.onnx")
    if output.suffix != ".onnx":
        raise InputError(f"output {output} must end in .onnx")
    inputs = [args.checkpoint]
    check_output_file(output, "onnx", "output (-o)", inputs=inputs, force=args.force)
    check_output_file(Path(f"{output}.data"), "unknown", "external data file", inputs=inputs, force=True)

    model, description = model_source.load_model(args.variant, args.preset, args.seed, args.checkpoint)
    print(description, file=sys.stderr)
    intermediates = None
    if args.mark_intermediates:
        from .intermediates import default_intermediates

        intermediates = default_intermediates(model)
    result = onnx_export.export_onnx(
        model, output, args.resolution, args.precision,
        static_batch=args.static_batch,
        intermediates=intermediates,
        opset=args.opset,
        external_data=True if args.external_data == "always" else None,
        progress=not args.quiet,
        metadata=model_source.model_metadata(args.variant, args.preset, args.seed, args.checkpoint),
        scan_op=getattr(args, "scan_op", "fused"),
        upsample_conv=getattr(args, "upsample_conv", "auto"),
    )
    print(graph_checks.format_summary(result.summary))
    times = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    op_type = "SS2DScan" if getattr(args, "scan_op", "fused") == "fused" else "SelectiveScan"
    print(f"\n{result.scan_nodes} remamber::{op_type} nodes for {result.scan_calls_traced} scan calls in the "
          f"PyTorch model; checker (full), shape inference{' and fp16 typing' if args.precision == 'fp16' else ''} passed")
    print(f"wrote {result.path}" + (f" + {result.path}.data" if result.external_data else "") + f" ({times})")
    return 0
