"""``remamber-deploy build-engine``: ONNX -> TensorRT / TensorRT-RTX engine with the SelectiveScan plugin.

Examples:
  remamber-deploy build-engine remamber_conv_base_480_fp16.onnx            # strongly typed fp16 graph
  remamber-deploy build-engine model.onnx --precision fp16 --batch 1,4,8   # TensorRT 10 weak fp16 of an fp32 graph
"""

from __future__ import annotations

import argparse
from pathlib import Path

from remamber.validate.numbers import int_type

from . import engine_builder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=Path, help="ONNX file from `remamber-deploy export`")
    parser.add_argument("-o", "--output", type=Path, default=None, help="engine file (default: <onnx>.engine)")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default=None,
                        help="default: the graph's precision; fp16 on an fp32 graph = BuilderFlag.FP16 (TensorRT <= 10)")
    parser.add_argument("--batch", type=engine_builder.BatchRange.arg_type(), default=engine_builder.BatchRange(),
                        help="optimization profile batch: N or MIN,OPT,MAX (default 1)")
    parser.add_argument("--workspace", type=int_type("--workspace", minimum=1, maximum=1 << 24), default=None,
                        metavar="MIB", help="workspace memory pool limit in MiB")
    parser.add_argument("--timing-cache", type=Path, default=None,
                        help="timing cache file (read if present, then updated; never replaced when unreadable)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite an existing -o / sidecar / --timing-cache file that holds something else")
    parser.add_argument("--allow-no-scan", action="store_true",
                        help="build a graph that has no remamber scan node (it will not use the plugin)")
    parser.add_argument("--flavour", choices=engine_builder.FLAVOURS, default=None,
                        help="tensorrt or tensorrt_rtx (default: tensorrt when importable, else tensorrt_rtx)")
    parser.add_argument("--verbose", action="store_true", help="print TensorRT's warnings and info messages")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    result = engine_builder.build_engine(
        args.onnx, args.output,
        precision=args.precision,
        batch=args.batch,
        workspace_mib=args.workspace,
        timing_cache=args.timing_cache,
        flavour=args.flavour,
        progress=not args.quiet,
        verbose=args.verbose,
        force=args.force,
        allow_no_scan=args.allow_no_scan,
    )
    s = result.sidecar
    print(f"built {result.engine_path} ({s['engine_bytes'] / 2**20:.1f} MiB) with {s['tensorrt_flavour']} "
          f"{s['tensorrt_version']} in {result.seconds:.1f} s: precision {s['precision']}"
          f"{' (strongly typed)' if s['strongly_typed'] else ''}, resolution {s['resolution']}, "
          f"batch {s['batch']['min']}/{s['batch']['opt']}/{s['batch']['max']}, "
          + (f"plugin {s['plugin']['name']} v{s['plugin']['version']}" if s["plugin"] else "no scan node: plugin unused"))
    print(f"sidecar: {result.sidecar_path}")
    print(f"equivalent trtexec command:\n  {result.trtexec}")
    return 0
