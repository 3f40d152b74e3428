"""Arrival processes: rates, burstiness and deadline shares, checked statistically.

Every tolerance is Z standard errors of the statistic, derived from the sample size; Z = 4.5 makes
a false failure a ~1e-5 event per check under the normal approximation, and the seeds are fixed,
so the suite is deterministic.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from workloads.generators import (
    MmppShape,
    diurnal_times,
    gamma_times,
    generate,
    mmpp_phases,
    mmpp_times,
    poisson_times,
)
from workloads.mix import DeadlineMix, parse_weights, split_rate
from workloads.stats import interarrival_cv

Z = 4.5


def cv_stderr(cv: float, n: int) -> float:
    """Standard error of the sample CV of n gamma gaps with true CV ``cv``.

    Delta method: Var(s/m) ~ c^2/n [(kurt - 1)/4 - c skew + c^2]; a gamma has skew 2c and
    kurtosis 3 + 6c^2, which reduces to c^2 (1 + c^2) / (2n) (exponential gaps: 1/n).
    """
    return math.sqrt(cv**2 * (1 + cv**2) / (2 * n))


def count_stderr_renewal(rate: float, seconds: float, cv: float) -> float:
    """Renewal CLT: Var N(T) ~ T sigma^2 / mu^3 = rate T cv^2."""
    return cv * math.sqrt(rate * seconds)


def test_poisson_rate_and_cv():
    rng = np.random.default_rng(11)
    rate, seconds = 150.0, 200.0
    t = poisson_times(rate, seconds, rng)
    assert abs(len(t) - rate * seconds) <= Z * math.sqrt(rate * seconds)
    assert abs(interarrival_cv(t) - 1.0) <= Z * cv_stderr(1.0, len(t) - 1)
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < seconds


@pytest.mark.parametrize("cv", [0.5, 2.0, 3.0])
def test_gamma_rate_and_cv(cv):
    rng = np.random.default_rng(int(cv * 100))
    rate, seconds = 200.0, 300.0
    t = gamma_times(rate, cv, seconds, rng)
    assert abs(len(t) - rate * seconds) <= Z * count_stderr_renewal(rate, seconds, cv)
    assert abs(interarrival_cv(t) - cv) <= Z * cv_stderr(cv, len(t) - 1)


def test_gamma_through_generate_is_per_model():
    rates = {"a": 120.0, "b": 60.0}
    rows = generate("gamma", rates, 50, 200.0, np.random.default_rng(3), cv=2.5)
    for m, rate in rates.items():
        t = np.array([r.arrival_s for r in rows if r.model == m])
        assert abs(len(t) - rate * 200.0) <= Z * count_stderr_renewal(rate, 200.0, 2.5)
        assert abs(interarrival_cv(t) - 2.5) <= Z * cv_stderr(2.5, len(t) - 1)


def test_mmpp_bursts_at_the_burst_factor_and_keeps_the_mean():
    shape = MmppShape(burst_factor=3.0, on_fraction=0.25, mean_on_s=1.0)
    rng = np.random.default_rng(5)
    rate, seconds = 40.0, 4000.0
    on = mmpp_phases(seconds, shape, rng)
    t = mmpp_times(rate, on, shape, seconds, rng)
    on_s = float((on[:, 1] - on[:, 0]).sum())
    off_s = seconds - on_s
    in_on = int(sum(((t >= a) & (t < b)).sum() for a, b in on))
    # Given the on/off path, counts inside and outside bursts are Poisson: exact conditional checks.
    assert abs(in_on - 3.0 * rate * on_s) <= Z * math.sqrt(3.0 * rate * on_s)
    off_rate = rate * shape.off_factor()
    assert abs((len(t) - in_on) - off_rate * off_s) <= Z * math.sqrt(off_rate * off_s)
    # The time share of bursts converges to on_fraction: Var ~ 2 p (1 - p) tau / T for a two-state
    # chain whose correlation time is tau = 1 / (1/mean_on + 1/mean_off).
    tau = 1.0 / (1.0 / shape.mean_on_s + 1.0 / shape.mean_off_s)
    p = shape.on_fraction
    assert abs(on_s / seconds - p) <= Z * math.sqrt(2 * p * (1 - p) * tau / seconds)


def test_mmpp_long_run_mean_through_generate():
    shape = MmppShape()
    rates = {"a": 30.0, "b": 15.0}
    seconds = 3000.0
    rows = generate("mmpp", rates, 50, seconds, np.random.default_rng(8))
    total = sum(rates.values())
    # Var N(T) ~ rate T + 2 Var(rate(t)) tau T (Poisson noise plus the modulating chain's).
    p = shape.on_fraction
    var_rate = (total * (shape.burst_factor - shape.off_factor())) ** 2 * p * (1 - p)
    tau = 1.0 / (1.0 / shape.mean_on_s + 1.0 / shape.mean_off_s)
    sd = math.sqrt(total * seconds + 2 * var_rate * tau * seconds)
    assert abs(len(rows) - total * seconds) <= Z * sd
    # Shared bursts: the merged stream is far burstier than a Poisson stream (CV 1).
    t = np.array([r.arrival_s for r in rows])
    assert interarrival_cv(t) > 1.0 + Z * cv_stderr(1.0, len(t) - 1)


def test_diurnal_follows_the_sinusoid():
    rng = np.random.default_rng(21)
    rate, period, amp = 50.0, 400.0, 0.8
    seconds = 2 * period
    t = diurnal_times(rate, seconds, rng, period, amp)
    assert abs(len(t) - rate * seconds) <= Z * math.sqrt(rate * seconds)
    edges = np.linspace(0, seconds, 17)
    counts, _ = np.histogram(t, edges)
    for (a, b), n in zip(itertools.pairwise(edges), counts):
        w = 2 * np.pi / period
        expected = rate * ((b - a) - amp / w * (np.cos(w * b) - np.cos(w * a)))  # integral of the rate
        assert abs(n - expected) <= Z * math.sqrt(expected), (a, b, n, expected)


def test_deadline_mix_shares_and_row_invariants():
    mix = DeadlineMix.parse("20:0.3,50:0.5,200:0.2")
    rows = generate("poisson", {"resnet50": 300.0, "resnet101": 200.0}, mix, 40.0, np.random.default_rng(2))
    n = len(rows)
    for d, p in zip(mix.deadlines_ms, mix.probs):
        k = sum(r.deadline_ms == d for r in rows)
        assert abs(k - n * p) <= Z * math.sqrt(n * p * (1 - p))
    assert [r.arrival_s for r in rows] == sorted(r.arrival_s for r in rows)
    assert [r.request_id for r in rows] == [str(i) for i in range(n)]
    assert [r.input_seed for r in rows] == list(range(n))
    assert {r.deadline_ms for r in rows} == {20.0, 50.0, 200.0}


def test_same_seed_same_trace_whatever_the_rate_order():
    a = generate("mmpp", {"x": 30.0, "y": 10.0}, 50, 20.0, np.random.default_rng(4))
    b = generate("mmpp", {"y": 10.0, "x": 30.0}, 50, 20.0, np.random.default_rng(4))
    c = generate("mmpp", {"x": 30.0, "y": 10.0}, 50, 20.0, np.random.default_rng(5))
    assert a == b
    assert a != c


def test_total_rate_with_ratio():
    rates = split_rate(240.0, parse_weights("resnet50:3,resnet101:2,resnet152:1"))
    assert rates == pytest.approx({"resnet50": 120.0, "resnet101": 80.0, "resnet152": 40.0})


@pytest.mark.parametrize("call, message", [
    (lambda: generate("poisson", {"a": 1.0}, 50, 10.0, np.random.default_rng(0), cv=2.0), "cv"),
    (lambda: generate("gamma", {"a": 1.0}, 50, 10.0, np.random.default_rng(0), amplitude=0.5), "amplitude"),
    (lambda: generate("weibull", {"a": 1.0}, 50, 10.0, np.random.default_rng(0)), "poisson, gamma, mmpp"),
    (lambda: generate("mmpp", {"a": 1.0}, 50, 10.0, np.random.default_rng(0), burst_factor=5.0,
                      on_fraction=0.5), "on fraction <= 0.2"),
    (lambda: generate("poisson", {"a": -1.0}, 50, 10.0, np.random.default_rng(0)), "'a'"),
    (lambda: generate("poisson", {"a": 1.0}, 50, 0.0, np.random.default_rng(0)), "trace length"),
    (lambda: generate("diurnal", {"a": 1.0}, 50, 10.0, np.random.default_rng(0), amplitude=1.5), "[0, 1]"),
    (lambda: DeadlineMix.parse("20:0.3,50:0.5"), "sum to 0.8"),
    (lambda: DeadlineMix.parse("20:0.5,abc:0.5"), "'abc' is not a number"),
    (lambda: DeadlineMix.parse("-5"), "> 0"),
    (lambda: parse_weights("resnet50:3,resnet50:1"), "twice"),
])
def test_bad_options_are_named(call, message):
    with pytest.raises(ValueError, match=None) as info:
        call()
    assert message in str(info.value)
