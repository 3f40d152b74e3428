"""Synthetic arrival processes, per model, merged into one trace.

Processes (``rate`` is each model's long-run mean rate in requests/s):

- ``poisson``: exponential inter-arrival times (coefficient of variation 1).
- ``gamma``: a renewal process with gamma inter-arrival times of mean ``1/rate`` and coefficient of
  variation ``cv`` (shape ``1/cv^2``); ``cv > 1`` is burstier than Poisson, ``cv < 1`` more regular.
  It starts from a warm-up before time 0, so the trace begins in steady state.
- ``mmpp``: a two-state Markov-modulated Poisson process (on/off bursts). During *on* periods the
  rate is ``burst_factor * rate``; during *off* periods it is ``rate * (1 - p*b) / (1 - p)``, where
  ``p = on_fraction`` is the long-run share of time spent on, so the long-run mean stays ``rate``
  (``p * b <= 1``; at ``p * b = 1`` off periods are silent). Period lengths are exponential with
  means ``mean_on_s`` and ``mean_on_s * (1 - p) / p``. One on/off path is shared by every model:
  bursts hit the whole server at once, which is what stresses a scheduler.
- ``diurnal``: an inhomogeneous Poisson process with rate ``rate * (1 + amplitude * sin(2 pi t / period_s))``
  (by thinning); ``period_s`` defaults to the trace length, so the trace holds one full cycle and
  its mean rate is ``rate``.

Deadlines are drawn per request from a deadline mix; ``input_seed`` is the request's index, so a
replay generates the same inputs for the same trace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from workloads.mix import DeadlineMix
from workloads.trace import TraceRow

PROCESSES = ("poisson", "gamma", "mmpp", "diurnal")

DEFAULT_GAMMA_CV = 2.0
DEFAULT_BURST_FACTOR = 3.0
DEFAULT_ON_FRACTION = 0.25
DEFAULT_MEAN_ON_S = 1.0
DEFAULT_AMPLITUDE = 0.5

_GAMMA_WARMUP_INTERVALS = 50  # mean intervals (times cv^2) simulated before t = 0


@dataclass(frozen=True, slots=True)
class MmppShape:
    burst_factor: float = DEFAULT_BURST_FACTOR  # on-period rate / long-run mean rate
    on_fraction: float = DEFAULT_ON_FRACTION  # long-run share of time in on periods
    mean_on_s: float = DEFAULT_MEAN_ON_S  # mean length of one on period, s

    def __post_init__(self) -> None:
        if not (math.isfinite(self.burst_factor) and self.burst_factor >= 1):
            raise ValueError(f"mmpp burst factor {self.burst_factor!r}: expected a finite number >= 1")
        if not 0 < self.on_fraction < 1:
            raise ValueError(f"mmpp on fraction {self.on_fraction!r}: expected a number in (0, 1)")
        if self.on_fraction * self.burst_factor > 1 + 1e-12:
            raise ValueError(f"mmpp burst factor {self.burst_factor:g} x on fraction {self.on_fraction:g} "
                             f"exceeds 1: the on periods alone would carry more than the mean rate; "
                             f"use an on fraction <= {1 / self.burst_factor:.4g}")
        if not (math.isfinite(self.mean_on_s) and self.mean_on_s > 0):
            raise ValueError(f"mmpp mean on period {self.mean_on_s!r} s: expected a finite number > 0")

    @property
    def mean_off_s(self) -> float:
        return self.mean_on_s * (1 - self.on_fraction) / self.on_fraction

    def off_factor(self) -> float:
        """Off-period rate / long-run mean rate."""
        return max(0.0, (1 - self.on_fraction * self.burst_factor) / (1 - self.on_fraction))


def generate(process: str, rates_rps: Mapping[str, float],
             deadline_mix: DeadlineMix | float | Sequence[tuple[float, float]], seconds: float,
             rng: np.random.Generator, *, cv: float | None = None, burst_factor: float | None = None,
             on_fraction: float | None = None, mean_on_s: float | None = None,
             period_s: float | None = None, amplitude: float | None = None) -> list[TraceRow]:
    """A trace over ``[0, seconds)``: independent arrivals per model, merged and sorted by time.

    ``cv`` applies to ``gamma``; ``burst_factor``, ``on_fraction`` and ``mean_on_s`` to ``mmpp``;
    ``period_s`` and ``amplitude`` to ``diurnal`` (see the module docstring). Passing an option the
    process does not use is an error. Models are drawn in sorted-name order, so the same seed gives
    the same trace whatever the order ``rates_rps`` lists them in.
    """
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    _check_options(process, cv=cv, burst_factor=burst_factor, on_fraction=on_fraction,
                   mean_on_s=mean_on_s, period_s=period_s, amplitude=amplitude)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"trace length {seconds!r} s: expected a finite number > 0")
    if not rates_rps:
        raise ValueError("no models: give at least one model's rate")
    for model, rate in rates_rps.items():
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate >= 0):
            raise ValueError(f"rate of {model!r} is {rate!r}; expected a finite number >= 0 requests/s")
    mix = DeadlineMix.of(deadline_mix)

    shape = MmppShape(DEFAULT_BURST_FACTOR if burst_factor is None else burst_factor,
                      DEFAULT_ON_FRACTION if on_fraction is None else on_fraction,
                      DEFAULT_MEAN_ON_S if mean_on_s is None else mean_on_s)
    # One on/off path for every model, drawn first so the per-model draws follow in a fixed order.
    phases = mmpp_phases(seconds, shape, rng) if process == "mmpp" else np.empty((0, 2))
    times: list[np.ndarray] = []
    for model in sorted(rates_rps):
        rate = float(rates_rps[model])
        if process == "poisson":
            t = poisson_times(rate, seconds, rng)
        elif process == "gamma":
            t = gamma_times(rate, DEFAULT_GAMMA_CV if cv is None else cv, seconds, rng)
        elif process == "mmpp":
            t = mmpp_times(rate, phases, shape, seconds, rng)
        else:
            t = diurnal_times(rate, seconds, rng, seconds if period_s is None else period_s,
                              DEFAULT_AMPLITUDE if amplitude is None else amplitude)
        times.append(t)
    return rows_from_times(sorted(rates_rps), times, mix, rng)


def rows_from_times(models: Sequence[str], times: Sequence[np.ndarray], mix: DeadlineMix,
                    rng: np.random.Generator) -> list[TraceRow]:
    """Merge per-model arrival times into sorted rows; ties keep ``models`` order."""
    all_t = np.concatenate([np.asarray(t, dtype=float) for t in times]) if times else np.empty(0)
    which = np.concatenate([np.full(len(t), i) for i, t in enumerate(times)]) if times else np.empty(0, int)
    order = np.lexsort((which, all_t))
    deadlines = mix.draw(len(order), rng)
    return [TraceRow(float(all_t[i]), models[which[i]], float(deadlines[k]), str(k), input_seed=k)
            for k, i in enumerate(order)]


def poisson_times(rate_rps: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Homogeneous Poisson arrivals on ``[0, seconds)``: a Poisson count, then uniform times."""
    n = int(rng.poisson(rate_rps * seconds)) if rate_rps > 0 else 0
    return np.sort(rng.uniform(0.0, seconds, n))


def gamma_times(rate_rps: float, cv: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Gamma renewal arrivals on ``[0, seconds)`` with mean interval ``1/rate`` and CV ``cv``."""
    if not (math.isfinite(cv) and cv > 0):
        raise ValueError(f"coefficient of variation {cv!r}: expected a finite number > 0")
    if rate_rps <= 0:
        return np.empty(0)
    shape = 1.0 / cv**2
    scale = 1.0 / (rate_rps * shape)
    warmup_s = _GAMMA_WARMUP_INTERVALS * max(cv**2, 1.0) / rate_rps
    t_s = -warmup_s
    chunks = []
    expected = rate_rps * (seconds + warmup_s)
    while t_s < seconds:
        gaps = rng.gamma(shape, scale, int(expected * 0.1 + 4 * math.sqrt(expected) + 16))
        arrivals = t_s + np.cumsum(gaps)
        chunks.append(arrivals)
        t_s = float(arrivals[-1])
    t = np.concatenate(chunks)
    return t[(t >= 0) & (t < seconds)]


def mmpp_phases(seconds: float, shape: MmppShape, rng: np.random.Generator) -> np.ndarray:
    """The on periods of a stationary on/off Markov chain on ``[0, seconds)``: an array of
    ``[start_s, end_s)`` rows. The chain starts on with probability ``on_fraction``."""
    on = bool(rng.random() < shape.on_fraction)
    t_s = 0.0
    intervals = []
    while t_s < seconds:
        length = rng.exponential(shape.mean_on_s if on else shape.mean_off_s)
        if on:
            intervals.append((t_s, min(t_s + length, seconds)))
        t_s += length
        on = not on
    return np.asarray(intervals, dtype=float).reshape(-1, 2)


def mmpp_times(rate_rps: float, on_periods: np.ndarray, shape: MmppShape, seconds: float,
               rng: np.random.Generator) -> np.ndarray:
    """MMPP arrivals given the on periods: Poisson at ``b * rate`` inside them, at the off rate outside."""
    if rate_rps <= 0:
        return np.empty(0)
    edges = np.concatenate(([0.0], on_periods.ravel(), [seconds]))
    starts, ends = edges[:-1], edges[1:]
    is_on = np.arange(len(starts)) % 2 == 1  # [0, on0) is off, [on0, end0) on, ...
    rates = np.where(is_on, shape.burst_factor, shape.off_factor()) * rate_rps
    lengths = np.maximum(ends - starts, 0.0)
    counts = rng.poisson(rates * lengths)
    t = np.repeat(starts, counts) + rng.uniform(0.0, 1.0, int(counts.sum())) * np.repeat(lengths, counts)
    return np.sort(t[t < seconds])


def diurnal_rate(t_s: np.ndarray | float, rate_rps: float, period_s: float, amplitude: float) -> np.ndarray:
    """The diurnal process's instantaneous rate, requests/s."""
    return rate_rps * (1.0 + amplitude * np.sin(2 * np.pi * np.asarray(t_s) / period_s))


def diurnal_times(rate_rps: float, seconds: float, rng: np.random.Generator, period_s: float,
                  amplitude: float) -> np.ndarray:
    """Sinusoidal-rate Poisson arrivals by thinning a Poisson process at the peak rate."""
    if not (math.isfinite(period_s) and period_s > 0):
        raise ValueError(f"diurnal period {period_s!r} s: expected a finite number > 0")
    if not 0 <= amplitude <= 1:
        raise ValueError(f"diurnal amplitude {amplitude!r}: expected a number in [0, 1] (the rate stays >= 0)")
    peak = rate_rps * (1 + amplitude)
    t = poisson_times(peak, seconds, rng)
    keep = rng.uniform(0.0, 1.0, len(t)) * peak < diurnal_rate(t, rate_rps, period_s, amplitude)
    return t[keep]


_OPTIONS = {"gamma": ("cv",), "mmpp": ("burst_factor", "on_fraction", "mean_on_s"),
            "diurnal": ("period_s", "amplitude"), "poisson": ()}


def _check_options(process: str, **given: float | None) -> None:
    wrong = [k for k, v in given.items() if v is not None and k not in _OPTIONS[process]]
    if wrong:
        uses = ", ".join(_OPTIONS[process]) or "no options"
        raise ValueError(f"option(s) {', '.join(wrong)} do not apply to process {process!r} (it uses {uses})")
