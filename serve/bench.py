"""``remamber-deploy serve-bench``: load test of a Triton server running ReMamber, over loopback.

For each concurrency level (default 1, 2, 4, 8) that many client threads (one tritonclient gRPC client
each) send requests back to back until the level's request count is reached. Per level it reports the
throughput (completed requests / wall time), the latency distribution of single requests (p50, p90,
p99, as ``bench``), errors, and the batching Triton achieved: the delta of the model's statistics
(executions per batch size) over the level, hence the mean batch size. Writes ``serve_bench.json`` and
``serve_bench.png`` (throughput and latency percentiles against concurrency) into ``--out``.

By default it starts ``remamber-deploy serve`` itself (the model options below pass through) and
stops it at the end; ``--url`` measures a server that is already running (``serve`` or a Triton fleet
serving the ``triton-repo`` ensemble). The load generator runs on the same machine as the server, so on
a small CPU host they compete for cores: say so when quoting the numbers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

from remamber.errors import InputError

from . import client as serve_client

LEVELS_DEFAULT = "1,2,4,8"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--out", type=Path, default=None, help="report folder (default ./reports/serve-bench-<UTC time>)")
    parser.add_argument("--concurrency", default=LEVELS_DEFAULT, help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=4, help="requests before the first level (not measured)")
    parser.add_argument("--image", type=Path, help="image file to send (default: the packaged sample)")
    parser.add_argument("--text", help="sentence to send (default: the sample's)")
    parser.add_argument("--url", help="gRPC host:port of a running server (default: start `serve` here)")
    parser.add_argument("--model-name", default="remamber")
    parser.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, seconds")
    serve = parser.add_argument_group("the server started here (ignored with --url)")
    serve.add_argument("--runtime", default="ort", choices=["torch", "ort", "trt"])
    serve.add_argument("--preset", default="tiny", choices=["base", "tiny"])
    serve.add_argument("--checkpoint", type=Path)
    serve.add_argument("--resolution", type=int, default=None, help="default: serve's (480, or the --onnx file's)")
    serve.add_argument("--onnx", type=Path, help="serve this exported file (skips the export)")
    serve.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    serve.add_argument("--threads", type=int, help="ONNX Runtime / PyTorch threads in the server")
    serve.add_argument("--max-batch-size", type=int, default=8)
    serve.add_argument("--max-queue-delay-us", type=int, default=5000)


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise InputError(f"--concurrency {text!r}: give comma-separated client counts such as 1,2,4,8") from None
    if not levels or any(n < 1 or n > 256 for n in levels):
        raise InputError(f"--concurrency {text!r}: every level must be between 1 and 256")
    return levels


def percentiles(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"count": 0}
    return {"count": int(a.size), "min": float(a.min()), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def run_level(url: str, model: str, concurrency: int, total: int, image_bytes: bytes, text: str, timeout_s: float) -> dict:
    """``total`` requests from ``concurrency`` threads; latencies, errors, throughput, batching achieved."""
    stats_client = serve_client.grpc_client(url)
    before = serve_client.batch_counts(stats_client, model)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = [0]

    def worker():
        c = serve_client.grpc_client(url)
        inputs = serve_client.request_inputs(image_bytes, text)
        while True:
            with lock:
                if issued[0] >= total:
                    return
                issued[0] += 1
            t0 = time.perf_counter()
            try:
                c.infer(model, inputs, client_timeout=timeout_s)
            except Exception as exc:  # tritonclient raises InferenceServerException; count, report, go on
                with lock:
                    errors.append(str(exc).splitlines()[0][:300])
                continue
            ms = (time.perf_counter() - t0) * 1e3
            with lock:
                latencies.append(ms)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall_s = time.perf_counter() - t0
    batches = serve_client.executions_since(stats_client, model, before, served_at_least=len(latencies))
    executions = sum(batches.values())
    served = sum(size * n for size, n in batches.items())
    return {
        "concurrency": concurrency, "requests": total, "completed": len(latencies), "errors": len(errors),
        "error_examples": errors[:3], "wall_s": wall_s,
        "throughput_rps": len(latencies) / wall_s if wall_s > 0 else 0.0,
        "latency_ms": percentiles(latencies),
        "batches": {str(k): v for k, v in batches.items()},
        "executions": executions, "mean_batch_size": served / executions if executions else None,
    }


def plot(report: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    from remamber.atomic import atomic_path

    levels = [r["concurrency"] for r in report["levels"]]
    fig = Figure(figsize=(10.0, 4.0))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"wspace": 0.3})
    ax1.plot(levels, [r["throughput_rps"] for r in report["levels"]], "o-")
    for r in report["levels"]:
        if r["mean_batch_size"]:
            ax1.annotate(f"batch {r['mean_batch_size']:.1f}", (r["concurrency"], r["throughput_rps"]),
                         textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax1.set_xlabel("concurrent clients")
    ax1.set_ylabel("throughput (requests/s)")
    ax1.set_xscale("log", base=2)
    ax1.set_title("throughput (label: mean batch Triton formed)", fontsize=9)
    for key in ("p50", "p90", "p99"):
        ax2.plot(levels, [r["latency_ms"].get(key, float("nan")) for r in report["levels"]], "o-", label=key)
    ax2.set_xlabel("concurrent clients")
    ax2.set_ylabel("request latency (ms)")
    ax2.set_xscale("log", base=2)
    ax2.legend()
    ax2.set_title("latency percentiles", fontsize=9)
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.set_xticks(levels, [str(n) for n in levels])
        ax.grid(alpha=0.3)
    fig.suptitle(report["title"], fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _inputs(args) -> tuple[bytes, str, str]:
    if args.image is not None:
        if not args.text:
            raise InputError("--image needs --text: the sentence to send with it")
        if not args.image.is_file():
            raise InputError(f"--image {args.image} does not exist")
        return args.image.read_bytes(), args.text, str(args.image)
    from remamber import samples

    image, sentence = samples.sample_image()
    return serve_client.encode_png(image), args.text or sentence, f"sample:{samples.DEFAULT_SAMPLE}"


def _serve_args(args) -> list[str]:
    out = ["--runtime", args.runtime, "--preset", args.preset, "--precision", args.precision,
           "--max-batch-size", str(args.max_batch_size), "--max-queue-delay-us", str(args.max_queue_delay_us)]
    for option in ("checkpoint", "resolution", "onnx", "threads"):
        value = getattr(args, option)
        if value is not None:
            out += [f"--{option}", str(value)]
    return out


def run(args) -> int:
    levels = parse_levels(args.concurrency)
    if args.requests < 1 or args.warmup < 0:
        raise InputError("--requests must be >= 1 and --warmup >= 0")
    image_bytes, text, source = _inputs(args)
    out = args.out or Path("reports") / ("serve-bench-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S"))
    say = lambda message: print(f"serve-bench: {message}", file=sys.stderr, flush=True)  # noqa: E731
    server = None
    try:
        if args.url:
            url, server_info = args.url, {"url": args.url}
        else:
            say("starting remamber-deploy serve " + " ".join(_serve_args(args)))
            server = serve_client.ServeProcess(_serve_args(args))
            server_info = server.start()
            url = server_info["grpc"]
        c = serve_client.grpc_client(url)
        for _ in range(args.warmup):
            c.infer(args.model_name, serve_client.request_inputs(image_bytes, text), client_timeout=args.timeout)
        results = []
        for n in levels:
            say(f"concurrency {n}: {args.requests} requests")
            row = run_level(url, args.model_name, n, args.requests, image_bytes, text, args.timeout)
            say(f"  {row['throughput_rps']:.2f} req/s, p50 {row['latency_ms'].get('p50', float('nan')):.0f} ms, "
                f"p99 {row['latency_ms'].get('p99', float('nan')):.0f} ms, mean batch {row['mean_batch_size']}, "
                f"errors {row['errors']}")
            results.append(row)
    finally:
        if server is not None:
            server.stop()
    report = {
        "kind": "remamber-serve-bench", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "title": f"{server_info.get('runtime', 'server')} @ {server_info.get('resolution', '?')} "
                 f"on {platform.node() or 'this host'} ({os.cpu_count()} CPUs), loopback gRPC",
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "server": server_info, "input": {"image": source, "text": text, "bytes": len(image_bytes)},
        "requests_per_level": args.requests, "warmup": args.warmup, "levels": results,
        "note": "client threads and server share this machine's CPUs",
    }
    from remamber.atomic import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "serve_bench.json", json.dumps(report, indent=2) + "\n")
    plot(report, out / "serve_bench.png")
    print(f"wrote {out / 'serve_bench.json'} and {out / 'serve_bench.png'}")
    print(markdown_table(report))
    failed = sum(r["errors"] for r in results)
    return 1 if failed else 0


def markdown_table(report: dict) -> str:
    lines = ["| clients | req/s | p50 ms | p90 ms | p99 ms | mean batch | batches (size: count) | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["levels"]:
        lat = r["latency_ms"]
        batches = ", ".join(f"{k}: {v}" for k, v in r["batches"].items())
        mean = f"{r['mean_batch_size']:.2f}" if r["mean_batch_size"] else "-"
        lines.append(f"| {r['concurrency']} | {r['throughput_rps']:.2f} | {lat.get('p50', 0):.0f} | {lat.get('p90', 0):.0f} "
                     f"| {lat.get('p99', 0):.0f} | {mean} | {batches} | {r['errors']} |")
    return "\n".join(lines)
