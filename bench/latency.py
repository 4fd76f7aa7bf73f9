"""Latency measurement and its statistics, in trtexec's vocabulary.

trtexec (TensorRT ``samples/common/sampleReporting.cpp``) reports min, max, mean, median and
percentiles per metric, a throughput in queries per second over the host wall time, and warns
that a run is *unstable* when the coefficient of variation (population standard deviation / mean)
exceeds 2.5 %. We follow it, with two documented differences:

* percentiles use ``numpy.percentile(method="linear")`` (type 7, interpolating between the two
  nearest order statistics); trtexec picks a nearest-rank sample instead, so on short runs our
  p99 can sit between two samples where trtexec's equals one of them;
* we also report the median absolute deviation (MAD) and the inter-quartile range (IQR), the
  robust spreads the regression gate uses (see ``baseline.py``).

The measuring loop is clock-agnostic: a *step* is any callable that runs one inference and returns
``{metric: milliseconds}`` (``latency`` always; on GPU also ``compute``, ``h2d``, ``d2h``). On CPU
a step is timed with ``time.perf_counter_ns``; GPU runtimes time themselves with device events.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..errors import InputError

PERCENTILE_METHOD = "linear"
PERCENTILES = (90, 95, 99)
CV_WARN_PERCENT = 2.5  # trtexec's "unstable" threshold

Step = Callable[[], Mapping[str, float]]


@dataclass(frozen=True)
class Warmup:
    """Warm-up as a number of iterations or a time budget (at least one iteration either way)."""

    iterations: int | None = None
    ms: float | None = None

    def describe(self) -> str:
        if self.iterations is not None:
            return f"{self.iterations} iteration" + ("" if self.iterations == 1 else "s")
        return f"{self.ms:g} ms"


def parse_warmup(text: str) -> Warmup:
    """``"10"`` -> 10 iterations; ``"200ms"`` / ``"1.5s"`` -> a time budget."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", str(text))
    if not match:
        raise InputError(
            f"--warmup {text!r} is not understood; give iterations (e.g. 5) or a duration (e.g. 200ms or 2s)"
        )
    value, unit = float(match.group(1)), match.group(2)
    if unit is None:
        if not value.is_integer():
            raise InputError(f"--warmup {text!r}: an iteration count must be a whole number (or add ms / s)")
        return Warmup(iterations=int(value))
    return Warmup(ms=value * (1000.0 if unit == "s" else 1.0))


@dataclass
class LatencyStats:
    """Summary of one metric's samples, all in milliseconds (cv in percent)."""

    count: int
    min: float
    max: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    std: float          # population standard deviation (divides by n, as trtexec does)
    cv_percent: float   # 100 * std / mean
    mad: float          # median(|x - median|), unscaled
    iqr: float          # p75 - p25 (linear interpolation)
    unstable: bool      # cv_percent > CV_WARN_PERCENT

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms) -> LatencyStats:
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("latency: need a non-empty 1-D list of samples")
    p25, median, p75, p90, p95, p99 = np.percentile(x, (25, 50, 75, *PERCENTILES), method=PERCENTILE_METHOD)
    mean = float(x.mean())
    std = float(x.std(ddof=0))
    cv = 100.0 * std / mean if mean > 0 else float("inf")
    return LatencyStats(
        count=int(x.size),
        min=float(x.min()),
        max=float(x.max()),
        mean=mean,
        median=float(median),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
        std=std,
        cv_percent=cv,
        mad=float(np.median(np.abs(x - median))),
        iqr=float(p75 - p25),
        unstable=bool(cv > CV_WARN_PERCENT),
    )


def throughput_qps(iterations: int, batch: int, wall_s: float) -> float:
    """Queries (images) per second over the measured loop's host wall time, as trtexec defines it."""
    return iterations * batch / wall_s if wall_s > 0 else float("inf")


@dataclass
class Measurement:
    samples: dict[str, list[float]]  # metric -> per-iteration milliseconds
    wall_s: float                    # host wall time of the measured loop (warm-up excluded)
    warmup_iterations: int
    warmup_ms: float
    stop_rule: str                   # how the loop ended, for the report

    @property
    def iterations(self) -> int:
        return len(self.samples["latency"])


def measure(
    step: Step,
    *,
    warmup: Warmup,
    iterations: int | None = None,
    duration_s: float | None = None,
    min_iterations: int = 1,
    max_iterations: int | None = None,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
    on_iteration: Callable[[int], None] | None = None,
    prior_warm: tuple[int, float] = (0, 0.0),
) -> Measurement:
    """Warm up, then run ``step`` for ``iterations`` or for ``duration_s`` (whichever is given).

    With a duration the loop runs at least ``min_iterations`` and at most ``max_iterations``; this
    is how a CPU run of a slow resolution still gets a usable sample count without running away.
    ``prior_warm`` = (iterations, ms) of inferences already run on the same inputs (the parity
    run), which count toward the warm-up.
    """
    if (iterations is None) == (duration_s is None):
        raise ValueError("measure: give exactly one of iterations or duration_s")
    warm, prior_ms = prior_warm
    start = clock_ns()
    while True:
        warm_ms = prior_ms + (clock_ns() - start) / 1e6
        if warmup.iterations is not None and warm >= warmup.iterations:
            break
        if warmup.ms is not None and warm >= 1 and warm_ms >= warmup.ms:
            break
        step()
        warm += 1

    samples: dict[str, list[float]] = {}
    start = clock_ns()
    n = 0
    while True:
        if iterations is not None and n >= iterations:
            rule = f"{iterations} iterations"
            break
        if duration_s is not None and n >= min_iterations:
            elapsed_s = (clock_ns() - start) / 1e9
            if elapsed_s >= duration_s:
                rule = f"{duration_s:g} s and at least {min_iterations} iterations"
                break
            if max_iterations is not None and n >= max_iterations:
                rule = f"{duration_s:g} s, capped at {max_iterations} iterations"
                break
        result = step()
        if "latency" not in result:
            raise ValueError("measure: a step must return at least a 'latency' time")
        for metric, ms in result.items():
            samples.setdefault(metric, []).append(float(ms))
        n += 1
        if on_iteration is not None:
            on_iteration(n)
    wall_s = (clock_ns() - start) / 1e9
    return Measurement(samples=samples, wall_s=wall_s, warmup_iterations=warm, warmup_ms=warm_ms, stop_rule=rule)


def cpu_timed(fn: Callable[[], object], clock_ns: Callable[[], int] = time.perf_counter_ns) -> Step:
    """A step that times ``fn`` on the host with ``perf_counter_ns`` (CPU runtimes)."""

    def step() -> dict[str, float]:
        t0 = clock_ns()
        fn()
        return {"latency": (clock_ns() - t0) / 1e6}

    return step


@dataclass
class LatencyResult:
    """What a report row holds about timing: per-metric statistics plus how they were taken."""

    stats: dict[str, LatencyStats]
    throughput_qps: float
    wall_s: float
    iterations: int
    warmup_iterations: int
    warmup_ms: float
    stop_rule: str
    samples_ms: list[float] = field(default_factory=list)  # the primary "latency" samples, kept for plots and baselines

    def as_dict(self) -> dict:
        return {
            "stats": {k: v.as_dict() for k, v in self.stats.items()},
            "throughput_qps": self.throughput_qps,
            "wall_s": self.wall_s,
            "iterations": self.iterations,
            "warmup_iterations": self.warmup_iterations,
            "warmup_ms": self.warmup_ms,
            "stop_rule": self.stop_rule,
            "samples_ms": list(self.samples_ms),
        }


def summarize_measurement(m: Measurement, batch: int) -> LatencyResult:
    return LatencyResult(
        stats={metric: summarize(values) for metric, values in m.samples.items()},
        throughput_qps=throughput_qps(m.iterations, batch, m.wall_s),
        wall_s=m.wall_s,
        iterations=m.iterations,
        warmup_iterations=m.warmup_iterations,
        warmup_ms=m.warmup_ms,
        stop_rule=m.stop_rule,
        samples_ms=list(m.samples["latency"]),
    )
