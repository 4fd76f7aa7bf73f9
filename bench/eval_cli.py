"""``remamber-deploy eval``: oIoU / mIoU per runtime and precision on a RefCOCO-format dataset.

Reads the LAVT/ReMamber layout (``remamber.data.refcoco``), runs every sentence of every ref of the
split through the PyTorch fp32 reference and each requested runtime and precision (the bench's
runtimes: ``bench/runtimes.py``), scores each prediction with the official protocol
(``eval_metrics``) and writes, into ``--out``:

* ``samples.jsonl``: per-sentence results, appended as they finish; ``--resume`` continues from it;
* ``report.json`` and ``report.md``: oIoU, mIoU, precision@0.5..0.9 per runtime and precision, their
  deltas against the reference on the same sentences, and the sentences where the runtimes disagree
  most, with overlay PNGs (reference mask | runtime mask | ground truth).

The work runs sentence by sentence (each image and sentence preprocessed once for all runtimes),
so an interrupted run has every runtime's results on the same sentences. The ONNX files and
engines stay in ``<out>/artifacts`` until the run completes, so a resume does not export again.

Weights as in ``bench``: ``--checkpoint FILE``, ``--random-weights``, or by default the demo
checkpoint (tiny preset trained on synthetic shapes, ``remamber.demo``), evaluated by default at its
training resolution; the synthetic val split (``remamber-deploy make-dataset``) is its held-out data.

Exit codes: 0 done; 1 a runtime failed (see errors.log); 2 bad input (printed by the top-level CLI);
4 a runtime's oIoU fell more than ``--max-oiou-drop`` points below the reference (takes precedence).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..export.model_source import PRESETS, VARIANTS
from . import eval_report
from .eval_report import REFERENCE_ROW

EXIT_RUNTIME_FAILED = 1
PRECISIONS = ("fp32", "fp16")
PROTOCOL = (
    "official ReMamber engine.evaluate: logits resized to the ground-truth size with nearest interpolation, "
    "sigmoid > 0.5, IoU = I / (U + 1e-6); mIoU = mean IoU over sentences; oIoU = sum I / (sum U + 1e-6); "
    "P@t = share of sentences with IoU >= t. Ground truth decoded with pycocotools, foreground where exactly one "
    "polygon/RLE part covers the pixel (official loader). Input: resize to SxS (bilinear), ImageNet normalisation; "
    "sentence: CLIP tokens, 20 slots."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..validate.numbers import MAX_COUNT, float_type, int_type, size_type
    from .runtimes import RUNTIMES

    from .cli import HelpFormatter

    parser.formatter_class = HelpFormatter
    data = parser.add_argument_group("data (LAVT/ReMamber layout: <data>/<dataset>/instances.json, refs(<split-by>).p, <data>/train2014/)")
    data.add_argument("--data", required=True, metavar="DIR", help="folder holding <dataset>/ and train2014/")
    data.add_argument("--dataset", default="refcoco", help="refcoco, refcoco+ or refcocog")
    data.add_argument("--split-by", default="unc", help="unc (refcoco, refcoco+), umd or google (refcocog)")
    data.add_argument("--split", default="val", help="val, test, testA, testB, train, ...")
    data.add_argument("--limit", type=int_type("--limit"), metavar="N", help="only the first N sentences of the split")
    model = parser.add_argument_group("model")
    weights = model.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, help="ReMamber checkpoint (.pth); default: the demo checkpoint "
                         "(tiny preset trained on synthetic shapes; not a RefCOCO model)")
    weights.add_argument("--random-weights", action="store_true",
                         help="seeded random weights instead of the demo checkpoint (absolute oIoU/mIoU then mean nothing)")
    model.add_argument("--variant", choices=VARIANTS,
                       help="conv = paper, mamba = released (default: the checkpoint's; conv with --random-weights)")
    model.add_argument("--preset", choices=PRESETS,
                       help="model size (default: the checkpoint's, read from the file; tiny with --random-weights)")
    model.add_argument("--seed", type=int_type("--seed", minimum=0, maximum=2**63 - 1), default=0,
                       help="seed of the random weights (with --random-weights)")
    run = parser.add_argument_group("what to run")
    run.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"comma-separated subset of {', '.join(RUNTIMES)}")
    run.add_argument("--precision", default="fp32", help="comma-separated: fp32, fp16")
    run.add_argument("--resolution", type=size_type("--resolution"), default=None,
                     help="network input side, a multiple of 32 (default: the demo checkpoint's training resolution, else 480)")
    run.add_argument("--threads", type=int_type("--threads", maximum=4096), help="CPU threads for PyTorch and ONNX Runtime (default: theirs)")
    out = parser.add_argument_group("output and gate")
    out.add_argument("--out", type=Path, help="report folder (default ./reports/eval-<UTC timestamp>)")
    out.add_argument("--resume", action="store_true", help="continue the run whose samples.jsonl is in --out")
    out.add_argument("--keep-artifacts", action="store_true", help="keep <out>/artifacts (ONNX, engines) after the run")
    out.add_argument("--worst", type=int_type("--worst", minimum=0, maximum=MAX_COUNT), default=5, metavar="K", help="list the K sentences where runtimes disagree most, with overlays")
    out.add_argument("--max-oiou-drop", type=float_type("--max-oiou-drop", minimum=0, maximum=100), metavar="POINTS",
                     help="exit 4 when a runtime's oIoU is more than POINTS percentage points below the reference's")


def parse_precisions(text: str) -> list[str]:
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in PRECISIONS]
    if unknown or not names:
        raise InputError(f"unknown precision {', '.join(map(repr, unknown)) or '(none given)'} in --precision; "
                         f"use {' and/or '.join(PRECISIONS)}, e.g. --precision fp32,fp16")
    return list(dict.fromkeys(names))


def _check_numbers(args) -> None:
    for name in ("limit", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name} must be at least 1, got {value}")
    if args.worst < 0:
        raise InputError(f"--worst must be >= 0, got {args.worst}")
    if args.max_oiou_drop is not None and not args.max_oiou_drop >= 0:
        raise InputError(f"--max-oiou-drop must be >= 0 points, got {args.max_oiou_drop}")


def fingerprint(args, dataset, choice) -> dict:
    """What must not change between an interrupted run and its resume (the demo checkpoint included)."""
    ckpt = None
    if choice.checkpoint is not None:
        stat = Path(choice.checkpoint).stat()
        ckpt = {"path": str(Path(choice.checkpoint).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {"data": str(dataset.root.resolve()), "dataset": dataset.dataset, "split_by": dataset.split_by,
            "split": args.split, "resolution": args.resolution, "variant": choice.variant, "preset": choice.preset,
            "seed": args.seed, "checkpoint": ckpt, "weights": choice.kind}


def default_out_dir() -> Path:
    import datetime as _dt

    return Path("reports") / ("eval-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S"))


class _Inputs:
    """Preprocessed network inputs and ground truth per sample; the last image and mask are cached
    (a ref's sentences are consecutive and share them)."""

    def __init__(self, dataset, resolution: int):
        self.dataset, self.resolution = dataset, resolution
        self._image = self._mask = (None, None)

    def get(self, sample):
        from .. import imageio, tokenizer

        if self._image[0] != sample.image_id:
            image = self.dataset.image(sample.image_id)
            pixels = np.ascontiguousarray(imageio.preprocess(image, self.resolution).numpy(), dtype=np.float32)
            self._image = (sample.image_id, pixels)
        if self._mask[0] != sample.ann_id:
            self._mask = (sample.ann_id, self.dataset.mask(sample.ann_id))
        ids, attention = tokenizer.tokenize([sample.sentence])
        feeds = {"image": self._image[1],
                 "input_ids": np.ascontiguousarray(ids.numpy(), dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(attention.numpy(), dtype=np.int64)}
        return feeds, self._mask[1]


def run(args) -> int:
    from ..data.refcoco import RefDataset
    from ..export.model_source import RANDOM_WARNING, choose_model, model_metadata
    from ..imageio import check_size
    from ..validate.paths import check_output_dir
    from . import environment
    from .cli import parse_runtimes
    from .eval_results import ResultsFile

    # Everything a user can get wrong is checked before the slow part starts.
    runtimes = parse_runtimes(args.runtimes)
    precisions = parse_precisions(args.precision)
    if args.resolution is not None:
        check_size(args.resolution)
    _check_numbers(args)
    dataset = RefDataset(args.data, args.dataset, args.split_by)
    samples = dataset.samples(args.split, args.limit)
    keys = [s.key for s in samples]
    out_dir = check_output_dir(Path(args.out) if args.out else default_out_dir(), "--out",
                               inputs=[dataset.root, dataset.dataset_dir, dataset.image_dir])
    results_path = out_dir / "samples.jsonl"
    if args.resume and not results_path.is_file():
        raise InputError(f"--resume: {results_path} does not exist; pass the --out of the interrupted run")
    choice = choose_model(args.checkpoint, args.random_weights, args.variant, args.preset, args.seed)
    if args.resolution is None:
        args.resolution = choice.demo.resolution if choice.demo is not None else 480
    resolution = check_size(args.resolution)
    results = ResultsFile(results_path, fingerprint(args, dataset, choice), resume=args.resume)

    import torch
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    say = lambda message: tqdm.write(f"eval: {message}", file=sys.stderr)  # noqa: E731
    if results.resumed:
        say(f"resuming {results_path}: {results.resumed} results already there")
    random_weights = choice.random
    if random_weights:
        say(RANDOM_WARNING.format(seed=args.seed) + "; absolute oIoU/mIoU mean nothing, only the deltas between "
            "runtimes do")
    artifacts = out_dir / "artifacts"
    row_info: dict[str, dict] = {}
    opened, failures = [], []
    bar = None
    try:
        say(f"building the model: {choice.description}"
            + (f" ({choice.checkpoint})" if choice.checkpoint is not None else ""))
        model, _ = choice.load()
        model.eval()
        active = _prepare_rows(model, runtimes, precisions, resolution, args, keys, results, row_info, opened,
                               failures, artifacts, say, model_metadata(choice.variant, choice.preset, args.seed,
                                                                        choice.checkpoint, choice.description))
        done_before = sum(all(results.done(label, k) for label in active) for k in keys)
        bar = tqdm(total=len(keys), initial=done_before, desc="eval", unit="sentence", file=sys.stderr,
                   dynamic_ncols=True)
        inputs = _Inputs(dataset, resolution)
        for sample in samples:
            pending = [label for label in active if not results.done(label, sample.key)]
            if not pending:
                continue
            feeds, gt = inputs.get(sample)
            for label in pending:
                _score(label, active, sample, feeds, gt, results, row_info, failures, say)
            bar.update(1)
    except KeyboardInterrupt:
        say(f"interrupted; continue with the same command plus --resume (results so far: {results_path})")
        raise
    finally:
        if bar is not None:
            bar.close()
        for runtime in opened:
            try:
                runtime.close()
            except Exception:
                pass
        results.close()

    rows = eval_report.build_rows(results, row_info, keys)
    worst = eval_report.disagreements(results, rows, samples, args.worst)
    eval_report.write_overlays(worst, results, dataset, out_dir, random=random_weights)
    gate = eval_report.gate(rows, args.max_oiou_drop)
    report = {
        "tool": eval_report.TOOL,
        "tool_version": _version(),
        "created_utc": environment.utc_now(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "config": {"data": str(dataset.root), "dataset": dataset.dataset, "split_by": dataset.split_by,
                   "split": args.split, "limit": args.limit, "resolution": resolution, "variant": choice.variant,
                   "preset": choice.preset, "seed": args.seed,
                   "checkpoint": str(choice.checkpoint) if choice.checkpoint is not None else None,
                   "weights": (f"{choice.description} ({choice.checkpoint})" if choice.kind == "demo"
                               else f"from {choice.checkpoint}" if choice.checkpoint is not None
                               else f"random (seed {args.seed})"),
                   "weights_kind": choice.kind,
                   "runtimes": runtimes, "precisions": precisions, "threads": args.threads},
        "random_weights": random_weights,
        "dataset": {"sentences": len(samples), "refs": len({s.ref_id for s in samples}),
                    "images": len({s.image_id for s in samples})},
        "protocol": PROTOCOL,
        "reference": eval_report.REFERENCE_LABEL,
        "rows": rows,
        "disagreements": worst,
        "gate": gate,
        "environment": environment.collect(args.threads, ",".join(precisions)),
        "results_file": results_path.name,
    }
    exit_code = gate["exit_code"] or (EXIT_RUNTIME_FAILED if failures else 0)
    json_path = eval_report.write_json(report, out_dir / "report.json")
    from ..atomic import write_text_atomic

    md_path = write_text_atomic(out_dir / "report.md", eval_report.markdown(report))
    if failures:
        write_text_atomic(out_dir / "errors.log", "\n\n".join(failures))
    complete = all(r["status"] in ("measured", "skipped") for r in rows)
    if complete and not args.keep_artifacts:
        shutil.rmtree(artifacts, ignore_errors=True)
    print(eval_report.summary_text(report))
    if random_weights:
        print("weights are RANDOM: the absolute oIoU/mIoU mean nothing, only the deltas between runtimes do")
    print(f"report: {md_path}\njson:   {json_path}")
    if gate["failed"]:
        print("eval: ACCURACY GATE FAILED (exit 4): "
              + ", ".join(f"{f['row']} oIoU drop {f['oiou_drop_points']:.2f} points > {args.max_oiou_drop:g}"
                          for f in gate["failed"]), file=sys.stderr)
    elif failures:
        print(f"eval: a runtime failed (exit 1): see {out_dir / 'errors.log'}", file=sys.stderr)
    return exit_code


def _version() -> str:
    from .. import __version__

    return __version__


def _prepare_rows(model, runtimes, precisions, resolution, args, keys, results, row_info, opened, failures,
                  artifacts: Path, say, metadata) -> dict:
    """Build each runtime (export, session, engine) and return {row label: infer function}.

    The reference row comes first. A row whose sentences are all in the results file already is
    not rebuilt. ``None`` as infer function marks a row that *is* the reference computation."""
    from .runtimes import RUNTIMES, BenchContext, Skip, cuda_available, reference_logits

    active = {REFERENCE_ROW: lambda feeds: reference_logits(model, feeds)}
    row_info[REFERENCE_ROW] = {"runtime": "torch", "precision": "fp32", "status": "measured", "reason": None,
                               "device": "cpu", "details": {"scan_backend": "reference"}}
    artifacts.mkdir(parents=True, exist_ok=True)
    for precision in precisions:
        ctx = BenchContext(model=model, precision=precision, threads=args.threads, batch=1, workdir=artifacts,
                           stage=say, metadata=metadata)
        onnx = artifacts / f"remamber_{resolution}_{precision}.onnx"
        if onnx.is_file() and results.resumed:
            say(f"reusing {onnx} from the interrupted run")
            ctx._onnx[resolution] = (onnx, 0.0)
        for name in runtimes:
            label = f"{name}/{precision}"
            previous = results.rows.get(label)
            if previous and previous.get("status") == "measured" and all(results.done(label, k) for k in keys):
                row_info[label] = previous
                continue
            info = {"runtime": name, "precision": precision, "status": "measured", "reason": None, "device": None,
                    "details": {}}
            # PyTorch on a GPU moves its model there; the CPU reference keeps the original.
            run_ctx = ctx
            if name == "torch" and cuda_available():
                run_ctx = copy.copy(ctx)
                run_ctx.model = copy.deepcopy(model)
            try:
                if name == "trt" and not cuda_available():
                    # Building an engine that cannot run would only cost time (bench does build it, to
                    # prove the plugin and the ONNX parse); accuracy needs inference.
                    raise Skip("a TensorRT engine runs only on a GPU and none is available here; "
                               "`remamber-deploy bench` checks that the engine builds")
                runtime = RUNTIMES[name](run_ctx, resolution)
            except Skip as skip:
                info.update(status="skipped", reason=skip.reason, details=skip.details)
                say(f"{label} skipped: {skip.reason}")
            except Exception as exc:  # a runtime that breaks must not hide the others
                info.update(status="failed", reason=f"{type(exc).__name__}: {exc}".strip())
                failures.append(f"{label}\n{traceback.format_exc()}")
                say(f"{label} FAILED: {info['reason']}")
            else:
                opened.append(runtime)
                info.update(device=runtime.device, details=dict(runtime.details))
                if runtime.is_reference:
                    info["details"]["is_reference"] = True
                    info["details"]["note"] = ("CPU, fp32, reference scan backend: the reference computation itself; "
                                               "its results are the reference row's")
                    active[label] = None
                else:
                    active[label] = runtime.infer
            results.set_row(label, **info)
            row_info[label] = info
    return active


def _score(label, active, sample, feeds, gt, results, row_info, failures, say) -> None:
    """Run one row on one sample and append its (I, U, mask) to the results file."""
    from .eval_metrics import intersection_union, predicted_mask

    infer = active[label]
    if infer is None:  # the reference computation itself: same result as the reference row
        ref = results.samples[(REFERENCE_ROW, sample.key)]
        results.add_sample(label, sample.key, ref["inter"], ref["union"], ref["nan"], ref["ms"],
                           _decode(ref["mask"]))
        return
    try:
        t0 = time.perf_counter()
        logits = infer(feeds)
        ms = (time.perf_counter() - t0) * 1e3
        mask, has_nan = predicted_mask(logits[0], *gt.shape)
        inter, union = intersection_union(mask, gt)
    except Exception as exc:
        if label == REFERENCE_ROW:
            raise
        row_info[label].update(status="failed", reason=f"{type(exc).__name__}: {exc} (at sentence {sample.key})")
        failures.append(f"{label} at {sample.key}\n{traceback.format_exc()}")
        say(f"{label} FAILED at {sample.key}: {exc}; its other sentences are skipped")
        results.set_row(label, **row_info[label])
        del active[label]
        return
    results.add_sample(label, sample.key, inter, union, has_nan, ms, mask)


def _decode(rle):
    from .eval_results import decode_mask

    return decode_mask(rle)
