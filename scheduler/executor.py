"""Executors run one plan (one time-division slot). The simulator's executor draws slot times
from the profile; the live worker uses the torch executor in ``models/``."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Protocol

import numpy as np

from scheduler.clock import Clock
from scheduler.profile import Profile
from scheduler.types import Plan, SlotResult

# Asked after each stage short of the plan's exit, with the exit just reached: stop the batch there?
StopCheck = Callable[[str], bool]


class Executor(Protocol):
    def run(self, plan: Plan) -> SlotResult:
        """Run ``plan``'s batch up to its exit; the slot's time passes on the engine's clock."""
        ...


class PreemptibleExecutor(Executor, Protocol):
    """An executor that can also run a plan stage by stage (the engine uses it when the policy preempts)."""

    def run_preemptible(self, plan: Plan, should_stop: StopCheck) -> SlotResult:
        """Run ``plan`` stage by stage; after each exit short of the plan's, call ``should_stop(exit)`` (the
        time so far has passed on the engine's clock) and, when it says so, answer the batch from that
        exit's head and return a SlotResult with ``preempted=True`` and that exit for every request."""
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

    def run_preemptible(self, plan: Plan, should_stop: StopCheck) -> SlotResult:
        """The slot stage by stage. The time to the plan's exit is drawn once, as ``run`` draws it (the same
        random stream, so a slot nobody stops takes exactly what ``run`` would give), and split into stage
        boundaries in proportion to the profiled mean latency of each exit at this batch size: the boundary
        after exit k lies at ``drawn x mean(k) / mean(cap)`` (the profile times a slot run *to* exit k, its
        head included, so this is where a slot stopped at k ends). A stop there reports that boundary's time."""
        assert plan.model is not None and plan.exit is not None, "cannot run an idle plan"
        model, b = plan.model, plan.batch_size
        drawn_ms = self.sampler.draw_ms(model, plan.exit, b, float(self.rng.random()))
        exits = self.sampler.profile.model(model).exits
        cap = exits.index(plan.exit)
        cap_mean_ms = self.sampler.profile.latency_ms(model, plan.exit, b, "mean")
        start_s = self.clock.now()
        done_ms = 0.0
        for k in range(cap):
            # Clamped so a profile where a shallower exit is not faster still gives ordered boundaries.
            share = min(self.sampler.profile.latency_ms(model, exits[k], b, "mean") / cap_mean_ms, 1.0)
            done_ms = max(drawn_ms * share, done_ms)
            self._wait_until(start_s, done_ms)
            if should_stop(exits[k]):
                slot_ms = (self.clock.now() - start_s) * 1000.0 if self.report_measured else done_ms
                return SlotResult(slot_ms=slot_ms, exits=(exits[k],) * b, preempted=True)
        self._wait_until(start_s, drawn_ms)
        slot_ms = (self.clock.now() - start_s) * 1000.0 if self.report_measured else drawn_ms
        return SlotResult(slot_ms=slot_ms, exits=(plan.exit,) * b)

    def _wait_until(self, start_s: float, offset_ms: float) -> None:
        """Let the clock reach ``start_s + offset_ms``. A virtual clock jumps there, so the slot ends at the
        very float ``run`` would give it, whatever boundaries it stopped at on the way."""
        target_s = start_s + offset_ms / 1000.0
        advance_to = getattr(self.clock, "advance_to", None)
        if advance_to is not None:
            advance_to(target_s)
        else:
            self.clock.sleep(target_s - self.clock.now())
