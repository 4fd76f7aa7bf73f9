"""Throughput of the selective-scan backends on ReMamber's stage-0 scan shapes (a benchmark, not a test).

Stage 0 is the heaviest scan call: base preset, K = 4 directions x d_inner = 2 * 128 channels,
sequence L = (S/4)^2, i.e. (1, 1024, 14400) at 480 and (1, 1024, 65536) at 1024 (REMAMBER_SPEC 5.2).
For each shape it prints the median time over the repeats, scan elements per second and the bytes
the op contract moves (u, delta, B, C read at their dtype; A, D, delta_bias fp32; y written fp32)
per second.

    remamber-deploy scan-bench                       # reference backend on this machine's CPU
    remamber-deploy scan-bench --backend cuda --device cuda --dtype float16
    remamber-deploy scan-bench --cpu --resolutions 480   # CPU kernels old vs new + ORT graphs before/after
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from tabulate import tabulate
from tqdm import tqdm

STAGE0_CHANNELS = 4 * 2 * 128  # K directions x d_inner of the base preset's first stage
STATE_SIZE = 1  # ReMamber's d_state
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def stage0_shape(resolution: int) -> tuple[int, int, int]:
    side = resolution // 4
    return (1, STAGE0_CHANNELS, side * side)


def contract_bytes(batch: int, channels: int, length: int, groups: int, nstate: int, itemsize: int) -> int:
    """Bytes a scan must move by the op contract: each input read once, the fp32 output written once."""
    activations = 2 * batch * channels * length * itemsize  # u, delta
    bc = 2 * batch * groups * nstate * length * itemsize  # B, C
    params = (channels * nstate + 2 * channels) * 4  # A, D, delta_bias
    output = batch * channels * length * 4
    return activations + bc + params + output


def _inputs(shape, groups, dtype, device, generator):
    batch, channels, length = shape
    u = torch.randn(batch, channels, length, generator=generator).to(device=device, dtype=dtype)
    delta = (torch.rand(batch, channels, length, generator=generator) * 4 - 4).to(device=device, dtype=dtype)
    A = -torch.rand(channels, STATE_SIZE, generator=generator).add(0.5).to(device)
    B = torch.randn(batch, groups, STATE_SIZE, length, generator=generator).to(device=device, dtype=dtype)
    C = torch.randn(batch, groups, STATE_SIZE, length, generator=generator).to(device=device, dtype=dtype)
    D = torch.ones(channels, device=device)
    bias = torch.rand(channels, generator=generator).to(device)
    return u, delta, A, B, C, D, bias


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_benchmark(resolutions, backend: str, device: str, dtype_name: str, repeats: int, warmup: int) -> list[dict]:
    from remamber.ops import selective_scan, use_backend

    dtype = DTYPES[dtype_name]
    generator = torch.Generator().manual_seed(0)
    rows = []
    steps = tqdm(resolutions, desc="scan-bench", unit="shape", file=sys.stderr)
    for resolution in steps:
        shape = stage0_shape(resolution)
        args = _inputs(shape, 4, dtype, device, generator)
        times = []
        with use_backend(backend):
            for i in range(warmup + repeats):
                _sync(device)
                start = time.perf_counter()
                selective_scan(*args)
                _sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
        median = statistics.median(times)
        elements = shape[0] * shape[1] * shape[2]
        moved = contract_bytes(*shape, 4, STATE_SIZE, torch.empty((), dtype=dtype).element_size())
        rows.append({
            "resolution": resolution, "shape": shape, "backend": backend, "device": device, "dtype": dtype_name,
            "median_ms": median * 1e3, "min_ms": min(times) * 1e3, "repeats": repeats,
            "melem_per_s": elements / median / 1e6, "gb_per_s": moved / median / 1e9, "contract_mb": moved / 1e6,
        })
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from remamber.validate.numbers import device_type, int_type, size_type

    parser.add_argument("--resolutions", type=size_type("--resolutions"), nargs="+", default=[480, 1024],
                        help="input sizes (default 480 1024)")
    parser.add_argument("--backend", default="reference", help="scan backend name (default reference)")
    parser.add_argument("--device", type=device_type("--device"), default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of u, delta, B, C")
    parser.add_argument("--repeats", type=int_type("--repeats", minimum=1), default=3,
                        help="timed repeats per shape (median reported)")
    parser.add_argument("--warmup", type=int_type("--warmup", minimum=0), default=1, help="untimed warm-up calls per shape")
    cpu = parser.add_argument_group("CPU mode (--cpu): old vs new CPU scan kernels and the fused graph, one run "
                                    "(bench/cpu_scan_bench.py)")
    cpu.add_argument("--cpu", action="store_true",
                     help="time the ONNX Runtime CPU kernels (scalar vs SIMD paths) on the base shapes at the first "
                          "--resolutions value, then ORT base conv fused vs unfused graph")
    cpu.add_argument("--skip-model", action="store_true", help="with --cpu: only the kernel table")
    cpu.add_argument("--onnx-fused", type=Path, default=None,
                     help="with --cpu: base conv graph with SS2DScan nodes (default: exported into a temp folder)")
    cpu.add_argument("--onnx-fused-direct", type=Path, default=None,
                     help="with --cpu: the fused graph exported with --upsample-conv direct (default: exported)")
    cpu.add_argument("--onnx-unfused", type=Path, default=None,
                     help="with --cpu: base conv graph exported with --scan-op selective --upsample-conv direct "
                          "(default: exported)")
    cpu.add_argument("--model-repeats", type=int_type("--model-repeats", minimum=1), default=3,
                     help="with --cpu: timed forwards per graph and kernel (default 3)")
    cpu.add_argument("--threads", type=int_type("--threads", minimum=1), default=None,
                     help="with --cpu: ORT intra-op threads for the model table (default: ORT's, all cores)")


def run(args: argparse.Namespace) -> int:
    from remamber.errors import InputError

    for resolution in args.resolutions:
        if resolution <= 0 or resolution % 32:
            raise InputError(f"resolution {resolution} is not a positive multiple of 32 (ReMamber needs S % 32 == 0)")
    if args.cpu:
        from .cpu_scan_bench import run_cpu

        for name in ("onnx_fused", "onnx_fused_direct", "onnx_unfused"):
            path = getattr(args, name)
            if path is not None and not path.is_file():
                raise InputError(f"--{name.replace('_', '-')} {path} does not exist; export it with "
                                 f"`remamber-deploy export --preset base --resolution {args.resolutions[0]}`")
        return run_cpu(args)
    from remamber.ops.backends import get_backend

    backend = get_backend(args.backend)  # unknown or unavailable: an error naming the registered ones
    if args.device.split(":")[0] not in backend.devices:
        raise InputError(f"scan backend {args.backend!r} runs on {sorted(backend.devices)}, not on --device "
                         f"{args.device}; pick a matching --device or --backend")
    rows = run_benchmark(args.resolutions, args.backend, args.device, args.dtype, args.repeats, args.warmup)
    threads = torch.get_num_threads()
    print(f"selective scan, backend={args.backend}, device={args.device}, dtype={args.dtype}, torch threads={threads}")
    print(tabulate(
        [[r["resolution"], "x".join(map(str, r["shape"])), f"{r['median_ms']:.1f}", f"{r['min_ms']:.1f}",
          f"{r['melem_per_s']:.1f}", f"{r['contract_mb']:.1f}", f"{r['gb_per_s']:.2f}"] for r in rows],
        headers=["S", "shape (B,K*D,L)", "median ms", "min ms", "Melem/s", "contract MB", "GB/s"],
    ))
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
