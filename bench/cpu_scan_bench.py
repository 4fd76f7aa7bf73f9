"""CPU mode of ``remamber-deploy scan-bench`` (``--cpu``): old vs new CPU scan, side by side in one run.

Two tables, same machine, same process (a benchmark that prints numbers, not a test):

1. The ONNX Runtime CPU kernels of both scan ops on the base model's shapes at the chosen resolution,
   one ORT thread, on every CPU path this machine runs: ``scalar`` (the original kernel, "old") and the
   SIMD paths (``vec128``, ``avx2``, ``avx512``; "new" = the one chosen automatically). Each path is
   forced through REMAMBER_SCAN_CPU_PATH, which the kernels read at every call (plugins/common/scan_cpu.h),
   so one session times them all. Shapes: SelectiveScan on stage 0 (1, 4*256, (S/4)^2), SS2DScan cross on
   stage 0 (1, 256, S/4, S/4) and the Twister's channel scan (SS2DScan bidi, (1, 512, 1, 3*128)).
2. ONNX Runtime on the whole base conv model at S (default 480), seconds per forward on all cores, each
   graph with the scalar and the automatic kernel, timed in interleaved rounds (one forward of every
   row per round, so load changes hit all rows alike): the export default (one SS2DScan per SS2D and
   the neck's upsample-convs at low resolution, export/resize_conv.py), the same fused graph with
   ``--upsample-conv direct`` (the graph before that rewrite) and the unfused v1 graph (SelectiveScan +
   layout ops, direct upsample-convs: the graph issue #10 was filed against); plus each graph's logit
   difference from the first. The graphs are exported into a temporary folder unless --onnx-fused /
   --onnx-fused-direct / --onnx-unfused give them (export of the base model takes minutes on a small CPU).

The issue's targets (2-core machine): kernel >= 4x faster than scalar; base conv @480 <= 2.5 s/forward.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENV_VAR = "REMAMBER_SCAN_CPU_PATH"
BASE_STAGE0_DIM = 2 * 128       # d_inner of base stage 0
BASE_CHANNEL_SCAN_DIM = 2 * 256  # d_inner of the Twister's channel scan (16 x 16 grid, ssm_ratio 2)


def cpu_paths() -> list[str]:
    """The CPU paths this machine can run, in the kernels' names (scan_cpu.h)."""
    paths = ["scalar", "vec128"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags = set()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
        if {"avx2", "fma"} <= flags:
            paths.append("avx2")
        if "avx512f" in flags:
            paths.append("avx512")
    return paths


@contextlib.contextmanager
def forced_path(path: str | None):
    previous = os.environ.get(ENV_VAR)
    if path is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = path
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous


def _node_model(op: str, shapes: dict, layout: int | None):
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n])
              for n in ("u", "delta", "A", "B", "C", "D", "delta_bias")]
    attrs = {"delta_softplus": 1, "has_D": 1, "has_delta_bias": 1}
    if layout is not None:
        attrs["layout"] = layout
    node = helper.make_node(op, [i.name for i in inputs], ["y"], domain="remamber", name="scan", **attrs)
    graph = helper.make_graph([node], "bench", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, shapes["u"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("remamber", 1)])


def kernel_cases(resolution: int) -> list[tuple[str, str, dict, int | None]]:
    side = resolution // 4
    L = side * side
    d, dc, lc = BASE_STAGE0_DIM, BASE_CHANNEL_SCAN_DIM, 3 * 128
    return [
        ("SelectiveScan (v1) stage 0", "SelectiveScan",
         dict(u=[1, 4 * d, L], delta=[1, 4 * d, L], A=[4 * d, 1], B=[1, 4, 1, L], C=[1, 4, 1, L], D=[4 * d],
              delta_bias=[4 * d]), None),
        ("SS2DScan cross stage 0", "SS2DScan",
         dict(u=[1, d, side, side], delta=[1, 4 * d, side, side], A=[4 * d, 1], B=[1, 4, 1, side, side],
              C=[1, 4, 1, side, side], D=[4 * d], delta_bias=[4 * d]), 0),
        ("SS2DScan bidi channel scan", "SS2DScan",
         dict(u=[1, dc, 1, lc], delta=[1, 4 * dc, 1, lc], A=[4 * dc, 1], B=[1, 4, 1, 1, lc], C=[1, 4, 1, 1, lc],
              D=[4 * dc], delta_bias=[4 * dc]), 1),
    ]


def _feeds(shapes: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    out["delta"] = (rng.random(shapes["delta"]) * 4 - 4).astype(np.float32)
    out["A"] = -(rng.random(shapes["A"]) + 0.5).astype(np.float32)
    return out


def _time(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def kernel_table(resolution: int, repeats: int, warmup: int) -> list[dict]:
    import onnxruntime as ort

    from remamber import native

    rows = []
    paths = cpu_paths()
    for label, op, shapes, layout in kernel_cases(resolution):
        sess = ort.InferenceSession(_node_model(op, shapes, layout).SerializeToString(),
                                    native.ort_session_options(threads=1), providers=["CPUExecutionProvider"])
        feeds = _feeds(shapes)
        results = {}
        for path in paths:
            with forced_path(path):
                times = _time(lambda: sess.run(["y"], feeds), repeats, warmup)
                results[path] = (statistics.median(times), sess.run(["y"], feeds)[0])
        scalar_s, scalar_y = results["scalar"]
        for path in paths:
            median, y = results[path]
            rows.append({
                "case": label, "shape": "x".join(map(str, shapes["u"])), "path": path, "median_ms": median * 1e3,
                "speedup": scalar_s / median,
                "max_rel_diff_vs_scalar": float(np.abs(y - scalar_y).max() / max(np.abs(scalar_y).max(), 1e-30)),
            })
    return rows


def _export(scan_op: str, resolution: int, folder: Path, upsample_conv: str = "auto") -> Path:
    import remamber
    from remamber.export.onnx_export import export_onnx

    path = folder / f"base_conv_{resolution}_{scan_op}_{upsample_conv}.onnx"
    print(f"exporting base conv @{resolution} ({scan_op} scan op, {upsample_conv} upsample-conv) to {path} ...",
          file=sys.stderr)
    model = remamber.build_model("conv", "base", seed=0, scan_op=scan_op)
    export_onnx(model, path, resolution, "fp32", static_batch=1, progress=False, upsample_conv=upsample_conv)
    return path


GRAPHS = (  # label, scan op, upsample-conv (export/onnx_export.py)
    ("fused, lowres upsample-conv (default)", "fused", "auto"),
    ("fused, direct upsample-conv", "fused", "direct"),
    ("unfused (SelectiveScan), direct", "selective", "direct"),
)


def model_table(resolution: int, repeats: int, warmup: int, given: dict, threads: int | None,
                kernels=("scalar", None)) -> tuple[list[dict], dict]:
    """Rows of seconds per forward for GRAPHS x kernels, timed in interleaved rounds; and each graph's
    max |logit diff| / max |logit| against the first graph (automatic kernel).

    given: label -> ONNX path for graphs not to export (missing labels are exported to a temp folder).
    """
    from remamber.export.onnx_export import INPUT_NAMES, example_inputs
    from remamber.export.ort_session import make_session

    with tempfile.TemporaryDirectory(prefix="remamber-scan-bench-") as tmp:
        graphs = {label: given.get(label) or _export(op, resolution, Path(tmp), up) for label, op, up in GRAPHS}
        inputs = {n: t.numpy() for n, t in zip(INPUT_NAMES, example_inputs(1, resolution))}
        sessions = {label: make_session(path, threads=threads) for label, path in graphs.items()}
        cases = [(label, kernel) for label in sessions for kernel in kernels]
        times: dict = {case: [] for case in cases}
        logits = {}
        for label, kernel in cases:  # warm-up, and the logits of the automatic kernel
            with forced_path(kernel):
                for _ in range(max(warmup, 1)):
                    out = sessions[label].run(["logits"], inputs)[0]
            if kernel is None:
                logits[label] = out
        for _ in range(repeats):
            for label, kernel in cases:
                with forced_path(kernel):
                    start = time.perf_counter()
                    sessions[label].run(["logits"], inputs)
                    times[(label, kernel)].append(time.perf_counter() - start)
    rows = [{"graph": label, "kernel": kernel or f"auto ({cpu_paths()[-1]})",
             "median_s": statistics.median(times[(label, kernel)]), "min_s": min(times[(label, kernel)]),
             "n": repeats} for label, kernel in cases]
    first = next(iter(logits.values()))
    scale = max(float(np.abs(first).max()), 1e-30)
    diffs = {label: float(np.abs(y - first).max()) / scale for label, y in logits.items()}
    return rows, diffs


def run_cpu(args) -> int:
    from tabulate import tabulate

    resolution = args.resolutions[0]
    print(f"CPU scan benchmark on {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
          f"paths here: {', '.join(cpu_paths())}; resolution {resolution}", flush=True)
    rows = kernel_table(resolution, args.repeats, args.warmup)
    print("\n1. ONNX Runtime CPU scan kernels, 1 thread, base-model shapes (old = scalar):")
    print(tabulate([[r["case"], r["shape"], r["path"], f"{r['median_ms']:.1f}", f"{r['speedup']:.2f}x",
                     f"{r['max_rel_diff_vs_scalar']:.1e}"] for r in rows],
                   headers=["op / shape", "u", "path", "median ms", "vs scalar", "max |diff| / max |y|"]), flush=True)
    if args.skip_model:
        return 0
    given = {label: path for (label, _, _), path in
             zip(GRAPHS, (args.onnx_fused, getattr(args, "onnx_fused_direct", None), args.onnx_unfused)) if path}
    model_rows, diffs = model_table(resolution, args.model_repeats, 1, given, args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n2. ONNX Runtime, base conv @{resolution}, batch 1, "
          f"{'ORT default threads' if args.threads is None else f'{args.threads} threads'} (seconds per forward, "
          f"interleaved rounds; 1-min load average {load:.2f} at the end):")
    print(tabulate([[r["graph"], r["kernel"], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}", r["n"]] for r in model_rows],
                   headers=["graph", "scan kernel", "median s", "min s", "n"]))
    first = GRAPHS[0][0]
    for label, diff in diffs.items():
        if label != first:
            print(f"logits of '{label}' vs '{first}' (automatic kernel): max |diff| / max |logit| = {diff:.2e}")
    return 0
