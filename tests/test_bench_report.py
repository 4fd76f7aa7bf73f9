"""Report schema, baselines and the regression / parity gates, on synthetic rows (no timing)."""

import copy
import json

import numpy as np
import pytest

from remamber.bench import baseline as gate
from remamber.bench import report as report_mod
from remamber.bench.cli import decide
from remamber.bench.latency import Measurement, summarize_measurement
from remamber.bench.schema import validate_report
from remamber.errors import InputError, RemamberError
from remamber.parity import compare_logits


def measured_row(runtime, resolution, samples_ms, max_abs_error=0.0, logit_scale=8.0, nan_count=0):
    m = Measurement(samples={"latency": list(samples_ms)}, wall_s=sum(samples_ms) / 1e3, warmup_iterations=1,
                    warmup_ms=samples_ms[0], stop_rule=f"{len(samples_ms)} iterations")
    parity = compare_logits(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4))).as_dict()
    parity.update(max_abs_error=max_abs_error, logit_scale=logit_scale, nan_count=nan_count,
                  scaled_max_abs_error=max_abs_error / logit_scale, tolerance=1e-3,
                  passed=max_abs_error / logit_scale <= 1e-3 and nan_count == 0, batches=1)
    return {
        "runtime": runtime, "resolution": resolution, "precision": "fp32", "batch": 1, "status": "measured",
        "reason": None, "device": "cpu", "timing": "host perf_counter_ns", "details": {}, "parity": parity,
        "latency": summarize_measurement(m, batch=1).as_dict(), "plots": {},
    }


def skipped_row(runtime, resolution, reason):
    return {
        "runtime": runtime, "resolution": resolution, "precision": "fp32", "batch": 1, "status": "skipped",
        "reason": reason, "device": None, "timing": None, "details": {}, "parity": None, "latency": None, "plots": {},
    }


def synthetic_report(rows):
    return {
        "schema_version": 1,
        "tool": "remamber-deploy bench",
        "tool_version": "0.1.0",
        "created_utc": "2026-11-27T12:00:00Z",
        "command": ["remamber-deploy", "bench"],
        "config": {
            "variant": "conv", "preset": "tiny", "checkpoint": None, "precision": "fp32", "batch": 1,
            "resolutions": sorted({r["resolution"] for r in rows}), "runtimes": sorted({r["runtime"] for r in rows}),
            "warmup": "1 iteration", "iterations": 5, "duration_s": None, "min_iterations": 3, "max_iterations": 1000,
            "threads": None, "seed": 0, "percentile_method": "linear", "cv_warn_percent": 2.5,
            "inputs": [{"name": "sample:cat", "text": "the cat"}], "reference": "PyTorch fp32 on CPU",
        },
        "environment": {
            "cpu_model": "test CPU", "cpu_cores": 2, "gpu": {"available": False, "name": None, "driver": None, "cuda_runtime": None},
            "device_summary": "CPU: test CPU", "python": "3.11", "torch": "2.13", "onnxruntime": "1.32",
            "tensorrt": {"flavour": None, "version": None}, "plugin": {}, "git_commit": "unknown",
            "precision": "fp32", "threads": None,
        },
        "parity_rule": {"metric": "max_abs_error / logit_scale", "tolerance": 1e-3,
                        "precision_tolerances": {"fp32": 1e-3, "fp16": 3e-2}},
        "rows": rows,
        "plots": {},
    }


STEADY_100 = [99.0, 100.0, 101.0, 100.0, 100.5, 99.5, 100.0]  # median 100, MAD 0.5


def test_a_generated_report_validates_and_round_trips(tmp_path):
    report = synthetic_report([
        measured_row("torch", 64, STEADY_100),
        measured_row("ort", 64, [10.0, 11.0, 12.0], max_abs_error=1e-6),
        skipped_row("trt", 64, "engine built with TensorRT-RTX 1.7 on CPU in 0.4 s; no GPU to run it"),
    ])
    assert validate_report(report) == []
    path = report_mod.write_json(report, tmp_path / "report.json")
    assert validate_report(json.loads(path.read_text())) == []
    md = report_mod.markdown(report)
    assert "no GPU to run it" in md and "| ort" in md and "p99" in md
    # ort's samples 10, 11, 12 have CV 7.4 %, torch's 0.6 %: only ort is called unstable
    warning = next(line for line in md.splitlines() if "unstable timings" in line)
    assert "for ort @64:" in warning and "torch" not in warning
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize(
    "breakage, where",
    [
        (lambda r: r.pop("schema_version"), "schema_version"),
        (lambda r: r.update(schema_version=2), "schema_version"),
        (lambda r: r["rows"][0]["latency"]["stats"]["latency"].pop("p99"), "p99"),
        (lambda r: r["rows"][0].update(resolution=100), "resolution"),
        (lambda r: r["rows"][2].update(reason=None), "reason"),  # a skipped row must say why
        (lambda r: r["rows"][0].update(parity=None), "parity"),  # a measured row must have parity
        (lambda r: r["rows"][0].update(runtime="tvm"), "runtime"),
        (lambda r: r["environment"].pop("git_commit"), "git_commit"),
    ],
)
def test_a_broken_report_fails_validation(breakage, where, tmp_path):
    report = synthetic_report([
        measured_row("torch", 64, STEADY_100),
        measured_row("ort", 64, [10.0, 11.0]),
        skipped_row("trt", 64, "no GPU"),
    ])
    broken = copy.deepcopy(report)
    breakage(broken)
    errors = validate_report(broken)
    assert errors and any(where in e for e in errors), errors
    with pytest.raises(RemamberError, match="report_schema.json"):
        report_mod.write_json(broken, tmp_path / "report.json")
    assert not (tmp_path / "report.json").exists()


def test_judge_latency_needs_both_the_percentage_and_the_noise():
    # 20 % slower, tiny spread: regression
    slowdown, noise, regression = gate.judge_latency(100.0, 0.5, 120.0, 0.5, 10.0)
    assert slowdown == pytest.approx(20.0)
    assert noise == pytest.approx(3 * 1.4826 * np.hypot(0.5, 0.5))
    assert regression
    # 20 % slower, but the runs are so noisy that a 20 ms change is within 3 sigma: not a regression
    assert not gate.judge_latency(100.0, 10.0, 120.0, 10.0, 10.0)[2]
    # 5 % slower and stable: within the threshold
    assert not gate.judge_latency(100.0, 0.1, 105.0, 0.1, 10.0)[2]
    # faster is never a regression
    assert not gate.judge_latency(100.0, 0.0, 50.0, 0.0, 0.0)[2]


def test_gate_trips_on_a_faster_baseline_and_passes_within_threshold(tmp_path):
    run = synthetic_report([measured_row("torch", 64, STEADY_100), skipped_row("trt", 64, "no GPU")])
    path = tmp_path / "baseline.json"

    faster = synthetic_report([measured_row("torch", 64, [s * 0.8 for s in STEADY_100])])  # run is 25 % slower
    gate.save_baseline(faster, path)
    code, text, offenders = decide(run, gate.load_baseline(path), str(path), 10.0, None)
    assert code == gate.EXIT_LATENCY_REGRESSION == 3
    assert "REGRESSION" in text and "torch @64 fp32 b1" in offenders
    assert run["gate"]["latency"]["regressions"] == ["torch @64 fp32 b1"]

    close = synthetic_report([measured_row("torch", 64, [s * 0.95 for s in STEADY_100])])  # run is ~5 % slower
    gate.save_baseline(close, path)
    code, text, offenders = decide(run, gate.load_baseline(path), str(path), 10.0, None)
    assert code == 0 and offenders == ""
    assert "+5.3%" in text


def test_rows_missing_on_either_side_are_listed_not_judged(tmp_path):
    run = synthetic_report([measured_row("torch", 64, STEADY_100)])
    base = gate.baseline_from_report(synthetic_report([measured_row("ort", 64, STEADY_100)]))
    verdicts, unmatched = gate.compare_latency(run, base, 10.0)
    assert verdicts == []
    assert any("not in the baseline" in u for u in unmatched)
    assert any("not measured in this run" in u for u in unmatched)


def test_parity_failure_gives_exit_code_4_and_wins_over_latency(tmp_path):
    ok = synthetic_report([measured_row("ort", 64, STEADY_100, max_abs_error=1e-4, logit_scale=8.0)])
    assert decide(ok, None, None, 10.0, None)[0] == 0  # 1.25e-5 of the logit scale: within fp32's 1e-3
    assert decide(ok, None, None, 10.0, 1e-6)[0] == gate.EXIT_PARITY_FAILURE == 4  # a stricter threshold
    nan = synthetic_report([measured_row("ort", 64, STEADY_100, nan_count=3)])
    code, _, offenders = decide(nan, None, None, 10.0, None)
    assert code == 4 and "ort @64 fp32 b1" in offenders
    both = synthetic_report([measured_row("ort", 64, STEADY_100, max_abs_error=1.0)])
    path = tmp_path / "b.json"
    gate.save_baseline(synthetic_report([measured_row("ort", 64, [s / 2 for s in STEADY_100])]), path)
    code, _, offenders = decide(both, gate.load_baseline(path), str(path), 10.0, None)
    assert code == 4 and "parity failures" in offenders and "latency regressions" in offenders


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
        (json.dumps({"schema_version": 1, "rows": []}).encode(), "not a remamber bench baseline"),
        (json.dumps({"schema_version": 1, "kind": "remamber-bench-baseline", "created_utc": "x", "device": "d",
                     "git_commit": "c", "rows": [{"runtime": "torch", "resolution": 64, "precision": "fp32",
                                                  "batch": 1, "metric": "latency", "median_ms": -1,
                                                  "mad_ms": 0, "iqr_ms": 0, "count": 1}]}).encode(),
         "median_ms"),
    ],
)
def test_unreadable_or_invalid_baselines_are_input_errors(tmp_path, content, message):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        gate.load_baseline(path)
    assert "--save-baseline" in str(info.value)  # the message says how to get a good one


def test_mask_overlay_outlines_the_true_mask_in_yellow(tmp_path):
    """With the demo scene's true mask, its outline is drawn (yellow pixels appear); without, none."""
    from PIL import Image

    from remamber.bench import plots

    image = Image.new("RGB", (64, 48), (40, 40, 40))
    truth = np.zeros((48, 64), dtype=bool)
    truth[10:30, 20:44] = True
    mask = np.zeros_like(truth)
    mask[12:28, 22:40] = True

    def yellow_pixels(path):
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int(((rgb[..., 0] > 200) & (rgb[..., 1] > 200) & (rgb[..., 2] < 80)).sum())

    with_truth = plots.mask_overlay(image, mask, mask, tmp_path / "with.png", "ort", "t", truth_mask=truth)
    without = plots.mask_overlay(image, mask, mask, tmp_path / "without.png", "ort", "t")
    assert yellow_pixels(with_truth) > 50
    assert yellow_pixels(without) == 0


def test_mask_highlight_keeps_the_mask_and_dims_the_rest_on_any_colour():
    """bench/plots.highlight: the mask's pixels keep the image's colour (a blue mask on a blue square
    stays visible as itself), every other pixel becomes a darker grey."""
    from remamber.bench import plots

    rgb = np.zeros((20, 30, 3), dtype=np.float32)
    rgb[...] = (0.16, 0.31, 0.86)  # the synthetic grammar's blue, everywhere
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:12, 8:20] = True
    out = plots.highlight(rgb, mask)
    assert np.array_equal(out[mask], rgb[mask])
    outside = out[~mask]
    assert np.allclose(outside[:, 0], outside[:, 1]) and np.allclose(outside[:, 1], outside[:, 2])  # grey
    assert outside.mean() < 0.5 * rgb[~mask].max()  # darker than the brightest channel it replaced
