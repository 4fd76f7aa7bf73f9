"""Latency statistics against values worked out by hand, and the measuring loop on a fake clock."""

import math

import pytest

from remamber.bench.latency import (
    Measurement,
    Warmup,
    cpu_timed,
    measure,
    parse_warmup,
    summarize,
    summarize_measurement,
    throughput_qps,
)
from remamber.errors import InputError


def test_summary_of_one_to_ten_matches_hand_computed_values():
    s = summarize([7, 3, 10, 1, 5, 2, 9, 4, 8, 6])  # 1..10, shuffled
    assert (s.count, s.min, s.max) == (10, 1.0, 10.0)
    assert s.mean == pytest.approx(5.5)
    assert s.median == pytest.approx(5.5)
    # linear interpolation: position (n-1) * p / 100 = 9p/100 between order statistics x[i], x[i+1]
    assert s.p90 == pytest.approx(9.1)   # 8.1  -> x[8]=9 + 0.1 * (10 - 9)
    assert s.p95 == pytest.approx(9.55)  # 8.55 -> 9 + 0.55
    assert s.p99 == pytest.approx(9.91)  # 8.91 -> 9 + 0.91
    assert s.iqr == pytest.approx(7.75 - 3.25)  # p75 at 6.75, p25 at 2.25
    # population variance: 2 * (4.5^2 + 3.5^2 + 2.5^2 + 1.5^2 + 0.5^2) / 10 = 82.5 / 10
    assert s.std == pytest.approx(math.sqrt(8.25))
    assert s.cv_percent == pytest.approx(100 * math.sqrt(8.25) / 5.5)
    # |x - 5.5| = 0.5, 0.5, 1.5, 1.5, 2.5, 2.5, 3.5, 3.5, 4.5, 4.5 -> median 2.5
    assert s.mad == pytest.approx(2.5)
    assert s.unstable


def test_stable_samples_are_not_flagged():
    s = summarize([10.0, 10.1, 9.9, 10.0, 10.0])
    assert s.mean == pytest.approx(10.0)
    assert s.std == pytest.approx(math.sqrt(0.02 / 5))
    assert s.cv_percent == pytest.approx(100 * math.sqrt(0.004) / 10)
    assert s.mad == pytest.approx(0.0)
    assert not s.unstable


def test_unstable_threshold_is_strictly_above_two_and_a_half_percent():
    at = summarize([97.5, 102.5])  # mean 100, population std 2.5 -> CV exactly 2.5 %
    assert at.cv_percent == pytest.approx(2.5)
    assert not at.unstable
    above = summarize([97.4, 102.6])  # CV 2.6 %
    assert above.cv_percent == pytest.approx(2.6)
    assert above.unstable


def test_single_sample_and_empty_input():
    s = summarize([4.0])
    assert (s.min, s.median, s.p99, s.max, s.std, s.mad, s.iqr) == (4.0, 4.0, 4.0, 4.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        summarize([])


def test_throughput_counts_images_over_wall_time():
    assert throughput_qps(10, 2, 4.0) == pytest.approx(5.0)


@pytest.mark.parametrize(
    "text, expected",
    [("10", Warmup(iterations=10)), ("0", Warmup(iterations=0)), ("200ms", Warmup(ms=200.0)),
     ("1.5s", Warmup(ms=1500.0)), (" 3 s ", Warmup(ms=3000.0))],
)
def test_parse_warmup(text, expected):
    assert parse_warmup(text) == expected


@pytest.mark.parametrize("text", ["abc", "1.5", "-1", "10 minutes", ""])
def test_parse_warmup_rejects_nonsense(text):
    with pytest.raises(InputError, match="--warmup"):
        parse_warmup(text)


class FakeClock:
    """Every step advances time by ``step_ms``; the clock itself never moves on its own."""

    def __init__(self, step_ms):
        self.ns = 0
        self.step_ms = step_ms
        self.calls = 0

    def __call__(self):
        return self.ns

    def step(self):
        self.calls += 1
        self.ns += int(self.step_ms * 1e6)
        return {"latency": self.step_ms, "compute": self.step_ms / 2}


def test_time_warmup_then_duration():
    clock = FakeClock(10)
    m = measure(clock.step, warmup=parse_warmup("25ms"), duration_s=0.05, min_iterations=2, clock_ns=clock)
    assert m.warmup_iterations == 3  # 10, 20, 30 ms: stops once 25 ms have passed
    assert m.warmup_ms == pytest.approx(30.0)
    assert m.iterations == 5  # 5 x 10 ms reach the 50 ms duration
    assert m.wall_s == pytest.approx(0.05)
    assert m.samples["compute"] == [5.0] * 5
    assert clock.calls == 8


def test_minimum_and_maximum_iterations_bound_a_duration():
    slow = FakeClock(1000)  # each iteration longer than the whole duration
    m = measure(slow.step, warmup=Warmup(iterations=0), duration_s=0.5, min_iterations=3, clock_ns=slow)
    assert m.iterations == 3 and m.warmup_iterations == 0
    fast = FakeClock(1)
    m = measure(fast.step, warmup=Warmup(iterations=0), duration_s=10, max_iterations=4, clock_ns=fast)
    assert m.iterations == 4
    assert "capped at 4" in m.stop_rule


def test_fixed_iterations_and_prior_warmup_credit():
    clock = FakeClock(10)
    m = measure(clock.step, warmup=parse_warmup("25ms"), iterations=4, clock_ns=clock, prior_warm=(1, 30.0))
    assert m.warmup_iterations == 1  # the parity run already covered the 25 ms
    assert m.iterations == 4 and clock.calls == 4
    clock = FakeClock(10)
    m = measure(clock.step, warmup=Warmup(iterations=3), iterations=2, clock_ns=clock, prior_warm=(1, 10.0))
    assert m.warmup_iterations == 3 and clock.calls == 4  # two more warm-up runs, then two measured


def test_measure_needs_exactly_one_stop_rule():
    clock = FakeClock(1)
    with pytest.raises(ValueError):
        measure(clock.step, warmup=Warmup(iterations=0), clock_ns=clock)
    with pytest.raises(ValueError):
        measure(clock.step, warmup=Warmup(iterations=0), iterations=2, duration_s=1.0, clock_ns=clock)


def test_cpu_timed_step_reports_the_clock_difference():
    ticks = iter([1_000_000, 4_500_000])
    step = cpu_timed(lambda: None, clock_ns=lambda: next(ticks))
    assert step() == {"latency": pytest.approx(3.5)}


def test_summarize_measurement_keeps_samples_and_throughput():
    m = Measurement(samples={"latency": [2.0, 4.0, 6.0]}, wall_s=0.012, warmup_iterations=1, warmup_ms=2.0,
                    stop_rule="3 iterations")
    r = summarize_measurement(m, batch=2).as_dict()
    assert r["samples_ms"] == [2.0, 4.0, 6.0]
    assert r["throughput_qps"] == pytest.approx(3 * 2 / 0.012)
    assert r["stats"]["latency"]["median"] == 4.0
