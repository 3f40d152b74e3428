"""Executors run one plan (one time-division slot). The simulator's executor draws slot times
from the profile; the live worker uses the torch executor in ``models/``."""

from __future__ import annotations

import bisect
from typing import Protocol

import numpy as np

from scheduler.clock import Clock
from scheduler.profile import Profile
from scheduler.types import Plan, SlotResult


class Executor(Protocol):
    def run(self, plan: Plan) -> SlotResult:
        """Run ``plan``'s batch up to its exit; the slot's time passes on the engine's clock."""
        ...


# Probability levels of the profiled quantiles, in the order they anchor the inverse CDF.
_LEVELS = (0.5, 0.9, 0.95, 0.99)


class SlotTimeSampler:
    """Draws slot times from a profile's quantiles.

    The inverse CDF is piecewise linear through (0.5, p50), (0.9, p90), (0.95, p95), (0.99, p99);
    above p99 it continues with the p95-p99 slope up to u = 1; below the median it falls linearly
    to a floor q0 at u = 0, chosen so the distribution's mean equals the profiled mean (clamped to
    0 <= q0 <= p50 where the quantiles cannot carry that mean). When every quantile equals the
    mean, every draw is exactly the mean, so a simulation is a pure function of its inputs.

    ``noise`` scales every quantile's distance from the mean (1.0 = as profiled), which is how the
    hard benchmark suites raise p99/mean without a new profile.
    """

    def __init__(self, profile: Profile, noise: float = 1.0) -> None:
        assert noise >= 0, f"noise must be >= 0, got {noise}"
        self.profile = profile
        self.noise = noise
        self._curves: dict[tuple[str, str, int], tuple[tuple[float, ...], tuple[float, ...]] | float] = {}

    def curve(self, model: str, exit: str, batch: int) -> tuple[tuple[float, ...], tuple[float, ...]] | float:
        key = (model, exit, batch)
        c = self._curves.get(key)
        if c is None:
            c = self._curves[key] = self._fit(self.profile.distribution(model, exit, batch))
        return c

    def _fit(self, d: dict[str, float]) -> tuple[tuple[float, ...], tuple[float, ...]] | float:
        mean = d["mean"]
        qs = [max(mean + self.noise * (d[k] - mean), 1e-6) for k in ("p50", "p90", "p95", "p99")]
        if all(q == mean for q in qs):
            return mean
        top = qs[3] + (qs[3] - qs[2]) / (0.99 - 0.95) * 0.01
        levels = [*_LEVELS, 1.0]
        values = [*qs, top]
        upper_area = sum((levels[i + 1] - levels[i]) * (values[i] + values[i + 1]) / 2 for i in range(4))
        q0 = min(max(4.0 * (mean - upper_area) - qs[0], 0.0), qs[0])  # lower area = 0.5 * (q0 + p50) / 2
        return (0.0, *levels), (q0, *values)

    def draw_ms(self, model: str, exit: str, batch: int, u: float) -> float:
        """The slot time at probability level ``u`` in [0, 1)."""
        c = self.curve(model, exit, batch)
        if isinstance(c, float):
            return c
        levels, values = c
        i = bisect.bisect_right(levels, u) - 1
        i = min(i, len(levels) - 2)
        frac = (u - levels[i]) / (levels[i + 1] - levels[i])
        return values[i] + frac * (values[i + 1] - values[i])


class ProfileExecutor:
    """Simulated GPU: each slot takes a time drawn from the profile, slept on the given clock.

    With a ``VirtualClock`` this is the simulator's executor; with a ``RealClock`` it stands in
    for a GPU in live tests and benchmarks that need a known service time.
    """

    def __init__(self, profile: Profile, clock: Clock, rng: np.random.Generator, noise: float = 1.0,
                 report_measured: bool = False) -> None:
        self.sampler = SlotTimeSampler(profile, noise)
        self.clock = clock
        self.rng = rng
        # On a real clock a sleep overshoots; report what the clock saw, not what was drawn.
        self.report_measured = report_measured

    def run(self, plan: Plan) -> SlotResult:
        assert plan.model is not None and plan.exit is not None, "cannot run an idle plan"
        slot_ms = self.sampler.draw_ms(plan.model, plan.exit, plan.batch_size, float(self.rng.random()))
        start_s = self.clock.now()
        self.clock.sleep(slot_ms / 1000.0)
        if self.report_measured:
            slot_ms = (self.clock.now() - start_s) * 1000.0
        return SlotResult(slot_ms=slot_ms, exits=(plan.exit,) * plan.batch_size)
