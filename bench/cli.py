"""``remamber-deploy bench``: parity and latency of PyTorch, ONNX Runtime and TensorRT at 480/1024.

For every requested resolution: preprocess the inputs, compute the PyTorch fp32 reference
logits, then for every runtime prepare it (export / session / engine build), compare its logits
with the reference, and time it. Writes ``report.json`` (schema: report_schema.json),
``report.md`` and plots into ``--out``; optionally saves a baseline or gates against one.

Weights (``export.model_source.choose_model``): ``--checkpoint FILE`` (preset and variant read
from the file), ``--random-weights`` (seeded, the report and the output say so), or by default the
demo checkpoint (``remamber.demo``: tiny preset trained on synthetic shapes, not a RefCOCO model).
Inputs default to the demo image and its sentence, whose ground-truth mask gives every row an IoU
against the truth next to the mask agreement with the reference.

Exit codes: 0 pass; 1 a runtime failed unexpectedly (row "failed", see errors.log); 2 bad input
(printed by the top-level CLI); 3 latency regression against ``--baseline``; 4 parity failure
(takes precedence over 3).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..validate.numbers import MAX_BATCH, MAX_COUNT, check_float, check_int, check_size
from ..export.model_source import PRESETS, VARIANTS
from . import baseline as gate
from .latency import CV_WARN_PERCENT, PERCENTILE_METHOD, measure, parse_warmup, summarize_measurement

RESOLUTIONS_DEFAULT = "480,1024"
# Duration-based by default: 3 s per row (trtexec's --duration default) but at least MIN_ITERATIONS,
# so a slow CPU row still gets a spread estimate, and at most MAX_ITERATIONS.
DURATION_DEFAULT_S = 3.0
MIN_ITERATIONS_DEFAULT = 3
MAX_ITERATIONS_DEFAULT = 1000
WARMUP_DEFAULT = "200ms"
EXIT_RUNTIME_FAILED = 1


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where the help does not already name the default and X is not None."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .runtimes import RUNTIMES

    parser.formatter_class = HelpFormatter
    model = parser.add_argument_group("model")
    model.add_argument("--variant", choices=VARIANTS,
                       help="conv = paper, mamba = released (default: the checkpoint's; conv with --random-weights)")
    model.add_argument("--preset", choices=PRESETS,
                       help="model size (default: the checkpoint's, read from the file; tiny with --random-weights)")
    weights = model.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help="ReMamber checkpoint (.pth); default: the demo checkpoint "
                         "(tiny preset trained on synthetic shapes; not a RefCOCO model)")
    weights.add_argument("--random-weights", action="store_true",
                         help="seeded random weights instead of the demo checkpoint (masks are then meaningless)")
    model.add_argument("--seed", type=int, default=0,
                       help="seed of the random weights (with --random-weights)")
    run = parser.add_argument_group("what to run")
    run.add_argument("--resolutions", default=RESOLUTIONS_DEFAULT, help="comma-separated input sizes (multiples of 32)")
    run.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"comma-separated subset of {', '.join(RUNTIMES)}")
    run.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    run.add_argument("--batch", type=int, default=1)
    run.add_argument("--threads", type=int,
                     help="CPU threads for PyTorch and ONNX Runtime (default: theirs)")
    inputs = parser.add_argument_group("inputs (default: the generated demo image, its sentence and its true mask)")
    inputs.add_argument("--image", action="append", help="image file (repeatable)")
    inputs.add_argument("--text", action="append", help="referring sentence (one for all images, or one per --image)")
    inputs.add_argument("--images-dir", help="folder of images with sentences.txt ('<file><TAB><sentence>') or <stem>.txt")
    timing = parser.add_argument_group("timing")
    timing.add_argument("--warmup", default=WARMUP_DEFAULT, help="warm-up: iterations (5) or time (200ms, 2s); at least one iteration")
    how_long = timing.add_mutually_exclusive_group()
    how_long.add_argument("--iterations", type=int, help="measure exactly N iterations")
    how_long.add_argument("--duration", type=float,
                          help=f"measure for S seconds (default {DURATION_DEFAULT_S:g})")
    timing.add_argument("--min-iterations", type=int, default=MIN_ITERATIONS_DEFAULT,
                        help="with a duration: at least N iterations")
    timing.add_argument("--max-iterations", type=int, default=MAX_ITERATIONS_DEFAULT,
                        help="with a duration: at most N iterations")
    out = parser.add_argument_group("output and gates")
    out.add_argument("--out", help="report folder (default ./reports/<UTC timestamp>)")
    out.add_argument("--keep-artifacts", action="store_true", help="keep the ONNX files and engines in <out>/artifacts")
    out.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    out.add_argument("--save-baseline", metavar="FILE", help="write this run's latencies as a baseline")
    out.add_argument("--baseline", metavar="FILE", help="compare latencies with a saved baseline (exit 3 on regression)")
    out.add_argument("--force", action="store_true",
                     help="overwrite an existing --save-baseline file that is not JSON")
    out.add_argument("--max-regression", type=float, default=10.0, metavar="PCT",
                     help="with --baseline: allowed median slowdown in percent (see bench/README.md for the noise rule)")
    out.add_argument("--max-parity-error", type=float, metavar="X",
                     help="max |runtime - reference| / logit scale (default per precision: "
                          + ", ".join(f"{k} {v:g}" for k, v in gate.PARITY_TOLERANCE.items()) + "; exit 4 above)")


# ------------------------------------------------------------------------------------ validation

def parse_runtimes(text: str) -> list[str]:
    from .runtimes import RUNTIMES

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise InputError(
            f"unknown runtime {', '.join(map(repr, unknown)) or '(none given)'} in --runtimes; valid names: {', '.join(RUNTIMES)}"
        )
    return list(dict.fromkeys(names))


def parse_resolutions(text: str) -> list[int]:
    values = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"--resolutions: {part!r} is not an integer; give sizes like 480,1024") from None
        if value < 32 or value % 32:
            raise InputError(f"--resolutions: {value} must be a positive multiple of 32 (e.g. 480 or 1024)")
        values.append(check_size(value, "--resolutions:"))  # also the upper bound
    if not values:
        raise InputError("--resolutions is empty; give sizes like 480,1024")
    return list(dict.fromkeys(values))


def _check_numbers(args) -> None:
    """Every numeric option, with the project's messages (NaN and infinity refused), before any work."""
    limits = {"batch": MAX_BATCH, "threads": 1024}
    for name in ("batch", "iterations", "threads", "min_iterations", "max_iterations"):
        value = getattr(args, name)
        if value is not None:
            check_int(value, f"--{name.replace('_', '-')}", minimum=1, maximum=limits.get(name, MAX_COUNT))
    check_int(args.seed, "--seed", minimum=0, maximum=2**63 - 1)
    if args.max_iterations < args.min_iterations:
        raise InputError(f"--max-iterations {args.max_iterations} is below --min-iterations {args.min_iterations}")
    if args.duration is not None:
        check_float(args.duration, "--duration", minimum=0, maximum=86400, strict_minimum=True)
    if args.max_parity_error is not None:
        check_float(args.max_parity_error, "--max-parity-error", minimum=0)
    check_float(args.max_regression, "--max-regression", minimum=0)


def _check_outputs(args, out_dir: Path) -> None:
    """Before the slow part: the report folder and the baseline file can be written and clobber nothing."""
    from ..validate.paths import check_output_dir, check_output_file

    inputs = [args.checkpoint, args.baseline, *(args.image or [])]
    check_output_dir(out_dir, "--out", inputs=inputs)
    for name, kind in (("report.json", "json"), ("report.md", "text"), ("errors.log", "text")):
        if (out_dir / name).exists():
            check_output_file(out_dir / name, kind, f"--out {out_dir}: {name}", inputs=inputs, force=args.force,
                              also_ok=("json",) if kind == "text" else ())
    if args.save_baseline:
        check_output_file(Path(args.save_baseline), "json", "--save-baseline", inputs=inputs, force=args.force)


def _report_truncation(pairs) -> None:
    """Say, once per distinct sentence, when ReMamber's 18 word pieces cut it."""
    from ..tokenizer import tokenize

    seen = set()
    for pair in pairs:
        if pair.text not in seen:
            seen.add(pair.text)
            tokenize(pair.text, on_truncate=lambda m, name=pair.name: print(f"bench: warning: {name}: {m}", file=sys.stderr))


def default_out_dir() -> Path:
    return Path("reports") / _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


# --------------------------------------------------------------------------------------- running

class Progress:
    """One tqdm bar over the (resolution, runtime) steps on stderr, plus stage messages."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="bench", unit="step", file=sys.stderr, dynamic_ncols=True)

    def stage(self, message: str) -> None:
        self.bar.write(f"bench: {message}", file=sys.stderr)

    def status(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=True)

    def advance(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def parity_row(reference: np.ndarray, output: np.ndarray, precision: str, override: float | None, batches: int) -> dict:
    from ..parity import compare_logits

    metrics = compare_logits(reference, output).as_dict()
    metrics["scaled_max_abs_error"] = gate.scaled_error(metrics)
    metrics["tolerance"] = gate.parity_threshold(precision, override)
    metrics["passed"] = not gate.parity_failed(metrics, metrics["tolerance"])
    metrics["batches"] = batches
    return metrics


def empty_row(runtime: str, resolution: int, args) -> dict:
    return {
        "runtime": runtime, "resolution": resolution, "precision": args.precision, "batch": args.batch,
        "status": "skipped", "reason": None, "device": None, "timing": None, "details": {},
        "parity": None, "latency": None, "plots": {},
    }


@dataclass
class Reference:
    """PyTorch fp32 reference logits for one resolution, per batch, and what computing them took."""

    per_batch: list[np.ndarray]
    ms: float

    @property
    def logits(self) -> np.ndarray:
        return np.concatenate(self.per_batch)


def compute_reference(model, batches) -> Reference:
    from .runtimes import reference_logits

    t0 = time.perf_counter_ns()
    per_batch = [reference_logits(model, b.feeds) for b in batches]
    return Reference(per_batch, (time.perf_counter_ns() - t0) / 1e6)


def bench_runtime(name, resolution, ctx, batches, reference: Reference, args, warmup, progress) -> tuple[dict, np.ndarray | None]:
    """One report row. Returns (row, logits of the first batch or None)."""
    from .runtimes import RUNTIMES, Skip

    row = empty_row(name, resolution, args)
    try:
        runtime = RUNTIMES[name](ctx, resolution)
    except Skip as skip:
        row.update(reason=skip.reason, details=skip.details)
        progress.stage(f"{name} @{resolution} skipped: {skip.reason}")
        return row, None
    try:
        row.update(device=runtime.device, timing=runtime.timing, details=runtime.details)
        progress.status(f"{name}@{resolution} parity")
        if runtime.is_reference:
            # CPU, fp32, reference scan backend: this runtime *is* the reference computation, which
            # just ran on these inputs in this process; running it again would only cost time.
            outputs, parity_ms = reference.per_batch, reference.ms
            row["details"]["parity_note"] = ("this row is the reference computation itself (CPU, fp32, reference "
                                             "scan backend): parity zero by construction; latency measured as usual")
        else:
            # The parity inferences are also the first (cold) warm-up iterations.
            t0 = time.perf_counter_ns()
            outputs = [runtime.infer(b.feeds) for b in batches]
            parity_ms = (time.perf_counter_ns() - t0) / 1e6
        row["parity"] = parity_row(reference.logits, np.concatenate(outputs), args.precision, args.max_parity_error,
                                   len(batches))
        step = runtime.step(batches[0].feeds)
        from . import jetson

        # On a Jetson, tegrastats samples VDD_IN while the loop runs (warm-up included: short next to it).
        with jetson.PowerSampler() as power:
            measurement = measure(
                step,
                warmup=warmup,
                iterations=args.iterations,
                duration_s=None if args.iterations else (args.duration or DURATION_DEFAULT_S),
                min_iterations=args.min_iterations,
                max_iterations=args.max_iterations,
                on_iteration=lambda i: progress.status(f"{name}@{resolution} iteration {i}"),
                prior_warm=(len(batches), parity_ms),
            )
        row["latency"] = summarize_measurement(measurement, args.batch).as_dict()
        if power.on_jetson:
            row["power"] = power.summary(row["latency"]["wall_s"], row["latency"]["iterations"] * args.batch)
        row["status"] = "measured"
        return row, outputs[0]
    finally:
        runtime.close()


def write_plots(report, out_dir: Path, logits: dict, references: dict, first_pairs: dict, random: bool = False) -> None:
    from .. import imageio
    from . import plots

    rows = [r for r in report["rows"] if r["status"] == "measured"]
    if not rows:
        return
    series = {f"{r['runtime']} @{r['resolution']}": r["latency"]["samples_ms"] for r in rows}
    report["plots"]["latency"] = plots.latency_boxplot(
        series, out_dir / "latency.png", f"latency per iteration, batch {report['config']['batch']}").name
    errors = {f"{r['runtime']} @{r['resolution']}": (logits[(r['runtime'], r['resolution'])] - references[r["resolution"]][: r["batch"]]).ravel()
              for r in rows}
    report["plots"]["error_histogram"] = plots.error_histogram(errors, out_dir / "error_histogram.png").name
    for r in rows:
        res, pair = r["resolution"], first_pairs[r["resolution"]]
        ref, out = references[res][:1], logits[(r["runtime"], res)][:1]
        if not (np.isfinite(out).all() and np.isfinite(ref).all()):
            continue  # NaN logits have no mask; the parity table reports them
        size = pair.image.size
        title = f"{r['runtime']} @{res}: \"{pair.text}\" ({pair.name})"
        if random:
            title = "RANDOM WEIGHTS, masks meaningless - " + title
        elif r.get("mask") and r["mask"]["truth_iou"] is not None:
            title += f" - IoU vs ground truth {r['mask']['truth_iou']:.3f}"
        truth = getattr(pair, "truth", None)
        path = plots.mask_overlay(
            pair.image, imageio.postprocess(ref, size), imageio.postprocess(out, size),
            out_dir / f"masks_{r['runtime']}_{res}.png", r["runtime"], title,
            truth_mask=None if truth is None else np.asarray(truth, dtype=bool),
        )
        r["plots"]["masks"] = path.name


def decide(report: dict, base: dict | None, baseline_name: str | None, max_regression: float,
           max_parity_error: float | None, runtime_failed: bool = False) -> tuple[int, str, str]:
    """Apply the parity and latency gates to a finished report; records ``report["gate"]``.

    Returns (exit code, Markdown of all verdicts, a table of the offending rows only).
    Codes: see the module docstring.
    """
    from tabulate import tabulate

    from . import report as report_mod

    parity_verdicts = gate.check_parity(report, max_parity_error)
    latency_verdicts, unmatched = gate.compare_latency(report, base, max_regression) if base else (None, [])
    exit_code = EXIT_RUNTIME_FAILED if runtime_failed else gate.EXIT_OK
    if latency_verdicts and any(v.regression for v in latency_verdicts):
        exit_code = gate.EXIT_LATENCY_REGRESSION
    if any(v.failed for v in parity_verdicts):
        exit_code = gate.EXIT_PARITY_FAILURE
    report["gate"] = {
        "exit_code": exit_code,
        "parity": {"failed": [gate.key_label(v.key) for v in parity_verdicts if v.failed]},
        "latency": None if base is None else {
            "baseline": str(baseline_name), "max_regression_percent": max_regression,
            "regressions": [gate.key_label(v.key) for v in latency_verdicts if v.regression],
            "unmatched": unmatched,
        },
    }
    offenders = []
    failed_parity = [v.table_row() for v in parity_verdicts if v.failed]
    if failed_parity:
        offenders += ["parity failures:", tabulate(failed_parity, gate.PARITY_HEADERS, tablefmt="github")]
    regressions = [v.table_row() for v in latency_verdicts or [] if v.regression]
    if regressions:
        offenders += ["latency regressions:", tabulate(regressions, gate.LATENCY_HEADERS, tablefmt="github")]
    gate_text = report_mod.gate_markdown(latency_verdicts, unmatched, parity_verdicts, max_regression)
    return exit_code, gate_text, "\n".join(offenders)


def mask_summary(logits: np.ndarray, pair) -> dict | None:
    """The first input's mask at its image size: coverage, and IoU against its true mask when known."""
    from .. import imageio
    from ..demo import mask_iou

    first = logits[:1]
    if not np.isfinite(first).all():
        return None  # NaN logits have no mask; the parity table reports them
    mask = imageio.postprocess(first, pair.image.size)
    truth = getattr(pair, "truth", None)
    return {"input": pair.name, "foreground_fraction": float(mask.mean()),
            "truth_iou": None if truth is None else mask_iou(mask, truth),
            "truth_fraction": None if truth is None else float(truth.mean())}


def new_report(args, runtimes: list[int], resolutions: list[int], warmup, pairs, env: dict, choice) -> dict:
    """The report's header: what was asked and where it runs; rows are appended as they finish."""
    from .. import __version__
    from . import report as report_mod
    from .environment import utc_now

    return {
        "schema_version": report_mod.SCHEMA_VERSION,
        "tool": report_mod.TOOL,
        "tool_version": __version__,
        "created_utc": utc_now(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],  # the process's own command line
        "config": {
            "variant": choice.variant, "preset": choice.preset,
            "checkpoint": str(choice.checkpoint) if choice.checkpoint is not None else None,
            "weights": choice.as_config(), "precision": args.precision,
            "batch": args.batch, "resolutions": resolutions, "runtimes": runtimes, "warmup": warmup.describe(),
            "iterations": args.iterations,
            "duration_s": None if args.iterations else (args.duration or DURATION_DEFAULT_S),
            "min_iterations": args.min_iterations, "max_iterations": args.max_iterations, "threads": args.threads,
            "seed": args.seed, "percentile_method": PERCENTILE_METHOD, "cv_warn_percent": CV_WARN_PERCENT,
            "inputs": [{"name": p.name, "text": p.text} for p in pairs],
            "reference": "PyTorch float32 on CPU, reference selective-scan backend",
        },
        "environment": env,
        "parity_rule": {
            "metric": "max_abs_error / logit_scale",
            "tolerance": gate.parity_threshold(args.precision, args.max_parity_error),
            "precision_tolerances": dict(gate.PARITY_TOLERANCE),
        },
        "rows": [],
        "plots": {},
    }


def run(args) -> int:
    from ..export.model_source import RANDOM_WARNING, choose_model, model_metadata
    from . import environment, report as report_mod
    from .inputs import collect_pairs, make_batches
    from ..tokenizer import TruncationWarning
    from ..validate.text import check_texts
    from ..validate.tokens import check_feeds
    from .runtimes import BenchContext

    # Everything a user can get wrong is checked before the slow part starts.
    runtimes = parse_runtimes(args.runtimes)
    resolutions = parse_resolutions(args.resolutions)
    _check_numbers(args)
    warmup = parse_warmup(args.warmup)
    base = gate.load_baseline(Path(args.baseline)) if args.baseline else None
    pairs = collect_pairs(args.image, args.text, args.images_dir)
    check_texts([p.text for p in pairs], [p.name for p in pairs])  # empty sentences, before the model
    _report_truncation(pairs)
    out_dir = Path(args.out) if args.out else default_out_dir()
    _check_outputs(args, out_dir)
    choice = choose_model(args.checkpoint, args.random_weights, args.variant, args.preset, args.seed)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if choice.random:
        print("bench: warning: " + RANDOM_WARNING.format(seed=args.seed), file=sys.stderr)
    artifacts = out_dir / "artifacts" if args.keep_artifacts else Path(tempfile.mkdtemp(prefix="remamber-bench-"))
    logits, references, first_pairs, failures = {}, {}, {}, []
    progress = Progress(len(resolutions) * len(runtimes))
    try:
        progress.stage(f"building the model: {choice.description}"
                       + (f" ({choice.checkpoint})" if choice.checkpoint is not None else ""))
        model, _ = choice.load()
        artifacts.mkdir(parents=True, exist_ok=True)
        ctx = BenchContext(model=model, precision=args.precision, threads=args.threads, batch=args.batch,
                           workdir=artifacts, stage=progress.stage,
                           metadata=model_metadata(choice.variant, choice.preset, args.seed, choice.checkpoint,
                                                   choice.description))
        report = new_report(args, runtimes, resolutions, warmup, pairs, environment.collect(args.threads, args.precision),
                            choice)
        for resolution in resolutions:
            progress.stage(f"resolution {resolution}: preprocessing {len(pairs)} input(s), PyTorch fp32 reference")
            progress.status(f"reference @{resolution}")
            with warnings.catch_warnings():  # truncation was reported once, up front
                warnings.simplefilter("ignore", TruncationWarning)
                batches = make_batches(pairs, args.batch, resolution)
            for b in batches:  # value checks once, before any runtime sees the feeds
                check_feeds(b.feeds, source=", ".join(p.name for p in b.pairs))
            reference = compute_reference(model, batches)
            references[resolution] = reference.logits
            first_pairs[resolution] = batches[0].pairs[0]
            for name in runtimes:
                try:
                    row, out = bench_runtime(name, resolution, ctx, batches, reference, args, warmup, progress)
                except Exception as exc:  # a runtime that breaks must not hide the other rows
                    row, out = empty_row(name, resolution, args), None
                    row.update(status="failed", reason=f"{type(exc).__name__}: {exc}".strip())
                    failures.append(f"{name} @{resolution}\n{traceback.format_exc()}")
                    progress.stage(f"{name} @{resolution} FAILED: {row['reason']}")
                if out is not None:
                    logits[(name, resolution)] = out
                    row["mask"] = mask_summary(out, first_pairs[resolution])
                report["rows"].append(row)
                progress.advance()
    finally:
        progress.close()
        if not args.keep_artifacts:
            shutil.rmtree(artifacts, ignore_errors=True)

    if not args.no_plots:
        write_plots(report, out_dir, logits, references, first_pairs, random=choice.random)
    exit_code, gate_text, offenders = decide(report, base, args.baseline, args.max_regression, args.max_parity_error,
                                             runtime_failed=bool(failures))
    json_path = report_mod.write_json(report, out_dir / "report.json")
    md_path = report_mod.write_markdown(report, out_dir / "report.md", gate_text)
    if failures:
        from ..atomic import write_text_atomic

        write_text_atomic(out_dir / "errors.log", "\n\n".join(failures))
    if args.save_baseline:
        gate.save_baseline(report, Path(args.save_baseline))
        print(f"baseline written to {args.save_baseline}")
    print(report_mod.summary_text(report))
    print(gate_text)
    if choice.random:
        print("WEIGHTS ARE RANDOM: masks are meaningless; parity and latency only "
              "(leave out --random-weights for the demo checkpoint)")
    print(f"report: {md_path}\njson:   {json_path}")
    warning = report_mod.unstable_warning(report["rows"])
    if warning:
        print(f"bench: warning: {warning}", file=sys.stderr)
    if exit_code == gate.EXIT_PARITY_FAILURE:
        print(f"bench: PARITY FAILURE (exit 4)\n{offenders}", file=sys.stderr)
    elif exit_code == gate.EXIT_LATENCY_REGRESSION:
        print(f"bench: LATENCY REGRESSION (exit 3)\n{offenders}", file=sys.stderr)
    elif exit_code == EXIT_RUNTIME_FAILED:
        print(f"bench: a runtime failed (exit 1): see {out_dir / 'errors.log'}", file=sys.stderr)
    return exit_code
