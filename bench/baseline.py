"""Saved latency baselines and the two gates of a bench run: latency regression and parity.

Latency rule (documented in bench/README.md). Rows are matched by (runtime, resolution,
precision, batch) on the primary ``latency`` metric. A row is a *regression* only when BOTH hold:

1. practical: the median got slower by more than ``--max-regression`` percent of the baseline
   median, and
2. statistical: the increase exceeds the combined spread of the two runs,
   ``NOISE_K * 1.4826 * sqrt(MAD_base**2 + MAD_run**2)`` (1.4826 * MAD estimates a standard
   deviation for normal noise; NOISE_K = 3 sigma).

So a noisy run does not fail on a change its own spread explains, and a very stable run does not
fail on a change too small to matter. (The same two-part "statistical and practical" gate is what
intel-xpu-backend-for-triton #6441 asks for; see ANCHORS.md section 4.)

Parity rule: a measured row fails when its logits contain NaN/Inf or when
``max_abs_error / logit_scale`` (max absolute error relative to the largest reference logit)
exceeds the threshold: ``--max-parity-error`` or, by default, the tolerance of the run's precision.

Exit codes of ``remamber-deploy bench``: 0 pass, 2 bad input (including an unreadable or invalid
baseline), 3 latency regression, 4 parity failure (4 wins when both happen: wrong numbers matter
more than slow ones).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .environment import utc_now
from ..atomic import write_text_atomic
from .schema import load_schema, schema_errors

BASELINE_KIND = "remamber-bench-baseline"
BASELINE_SCHEMA_VERSION = 1
NOISE_K = 3.0
MAD_TO_SIGMA = 1.4826

EXIT_OK = 0
EXIT_LATENCY_REGRESSION = 3
EXIT_PARITY_FAILURE = 4

# Default parity tolerance per precision, on max_abs_error / logit_scale.
PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}

RowKey = tuple  # (runtime, resolution, precision, batch)


def row_key(row: dict) -> RowKey:
    return (row["runtime"], int(row["resolution"]), row["precision"], int(row["batch"]))


def key_label(key: RowKey) -> str:
    runtime, resolution, precision, batch = key
    return f"{runtime} @{resolution} {precision} b{batch}"


# ----------------------------------------------------------------------------------- baselines

def baseline_from_report(report: dict) -> dict:
    """Reduce a run report to what a later run is compared with (measured rows only)."""
    rows = []
    for row in report["rows"]:
        if row["status"] != "measured":
            continue
        stats = row["latency"]["stats"]["latency"]
        rows.append(
            {
                "runtime": row["runtime"],
                "resolution": row["resolution"],
                "precision": row["precision"],
                "batch": row["batch"],
                "metric": "latency",
                "median_ms": stats["median"],
                "mad_ms": stats["mad"],
                "iqr_ms": stats["iqr"],
                "count": stats["count"],
            }
        )
    env = report["environment"]
    return {
        "schema_version": BASELINE_SCHEMA_VERSION,
        "kind": BASELINE_KIND,
        "created_utc": utc_now(),
        "source_report_created_utc": report["created_utc"],
        "device": env.get("device_summary", "unknown"),
        "git_commit": env.get("git_commit", "unknown"),
        "rows": rows,
    }


def save_baseline(report: dict, path: Path) -> dict:
    baseline = baseline_from_report(report)
    write_text_atomic(Path(path), json.dumps(baseline, indent=2) + "\n")
    return baseline


def load_baseline(path: Path) -> dict:
    """Read and validate a baseline; any problem is an InputError naming the file and the fix."""
    from ..validate.baselines import check_baseline_values, read_baseline_file

    path = Path(path)
    fix = "pass a file written by `remamber-deploy bench --save-baseline FILE`"
    data = read_baseline_file(path, fix)  # strict JSON: NaN / Infinity refused
    errors = schema_errors(data, load_schema("baseline_schema.json"))
    if errors:
        raise InputError(f"baseline {path} is not a remamber bench baseline: {errors[0]}; {fix}")
    check_baseline_values(data, f"baseline {path}", fix)  # finite, in range: a NaN must not pass the gate
    return data


# ------------------------------------------------------------------------------------- latency

@dataclass
class LatencyVerdict:
    key: RowKey
    baseline_median_ms: float
    median_ms: float
    slowdown_percent: float
    noise_ms: float           # the combined-spread threshold on the increase
    regression: bool

    def table_row(self) -> list:
        return [
            key_label(self.key),
            f"{self.baseline_median_ms:.3f}",
            f"{self.median_ms:.3f}",
            f"{self.slowdown_percent:+.1f}%",
            f"{self.median_ms - self.baseline_median_ms:+.3f}",
            f"{self.noise_ms:.3f}",
            "REGRESSION" if self.regression else "ok",
        ]


LATENCY_HEADERS = ["row", "baseline median ms", "median ms", "change", "increase ms", "noise ms", "verdict"]


def judge_latency(base_median: float, base_mad: float, median: float, mad: float, max_regression_percent: float):
    """The two-part rule of this module's docstring; returns (slowdown %, noise ms, regression?)."""
    delta = median - base_median
    slowdown = 100.0 * delta / base_median if base_median > 0 else math.inf
    noise = NOISE_K * MAD_TO_SIGMA * math.hypot(base_mad, mad)
    if not all(math.isfinite(v) for v in (base_median, base_mad, median, mad, max_regression_percent)):
        # Validated inputs never get here; should one, a NaN must fail the gate, not pass it.
        return slowdown, noise, True
    return slowdown, noise, bool(slowdown > max_regression_percent and delta > noise)


def compare_latency(report: dict, baseline: dict, max_regression_percent: float):
    """Verdicts for rows present in both, plus the keys present in only one of them."""
    base_rows = {row_key(r): r for r in baseline["rows"]}
    verdicts, unmatched = [], []
    for row in report["rows"]:
        if row["status"] != "measured":
            continue
        key = row_key(row)
        base = base_rows.pop(key, None)
        if base is None:
            unmatched.append(f"{key_label(key)}: not in the baseline")
            continue
        stats = row["latency"]["stats"]["latency"]
        slowdown, noise, regression = judge_latency(
            base["median_ms"], base["mad_ms"], stats["median"], stats["mad"], max_regression_percent
        )
        verdicts.append(LatencyVerdict(key, base["median_ms"], stats["median"], slowdown, noise, regression))
    unmatched += [f"{key_label(k)}: in the baseline but not measured in this run" for k in base_rows]
    return verdicts, unmatched


# -------------------------------------------------------------------------------------- parity

@dataclass
class ParityVerdict:
    key: RowKey
    scaled_error: float
    threshold: float
    nan_count: int
    mask_pixel_mismatch: float
    failed: bool

    def table_row(self) -> list:
        return [
            key_label(self.key),
            f"{self.scaled_error:.3e}",
            f"{self.threshold:.1e}",
            self.nan_count,
            f"{100 * self.mask_pixel_mismatch:.3f}%",
            "FAIL" if self.failed else "ok",
        ]


PARITY_HEADERS = ["row", "max abs err / logit scale", "threshold", "NaN/Inf", "mask pixels differ", "verdict"]


def scaled_error(parity: dict) -> float:
    scale = parity["logit_scale"]
    return parity["max_abs_error"] / scale if scale > 0 else parity["max_abs_error"]


def parity_threshold(precision: str, override: float | None) -> float:
    if override is not None and not (isinstance(override, (int, float)) and math.isfinite(override) and override >= 0):
        raise InputError(f"--max-parity-error {override!r} must be a finite number >= 0")
    return override if override is not None else PARITY_TOLERANCE[precision]


def parity_failed(parity: dict, threshold: float) -> bool:
    err = scaled_error(parity)
    return parity["nan_count"] > 0 or not math.isfinite(err) or err > threshold


def check_parity(report: dict, max_parity_error: float | None):
    verdicts = []
    for row in report["rows"]:
        parity = row.get("parity")
        if row["status"] != "measured" or parity is None:
            continue
        threshold = parity_threshold(row["precision"], max_parity_error)
        verdicts.append(ParityVerdict(row_key(row), scaled_error(parity), threshold, parity["nan_count"],
                                      parity["mask_pixel_mismatch"], parity_failed(parity, threshold)))
    return verdicts
