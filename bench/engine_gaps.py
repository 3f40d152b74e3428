"""The live engine's reaction time, measured and replayed in the simulator.

Between the moment requests wait for the device (a slot ended with work queued, or an arrival gave an
idle engine work) and the start of the next slot, the live worker does the engine loop's bookkeeping
(answers handed to the event loop, gauges), wakes the engine thread, decides, and waits for the GIL
while the event loop parses requests. The simulator starts a slot the instant work is there.
``edgeserving_engine_gap_seconds`` (a worker histogram, ``Engine`` measures it) records each such gap;
``bench fidelity`` reads its buckets over the calibration at load and ``GappedExecutor`` puts a gap
drawn from them before every simulated slot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

GAP_METRIC = "edgeserving_engine_gap_seconds"
# The handler's time before the engine holds a request (body read, validation, hand-off), drawn the same way.
HANDLING_METRIC = "edgeserving_request_handling_seconds"


class GapDraws:
    """Gaps (ms) drawn from histogram buckets: a bucket by its share, then uniformly within its bounds (the
    open-ended last bucket is drawn as its lower bound)."""

    def __init__(self, bounds_s: list[float], counts: list[float]) -> None:
        if len(bounds_s) != len(counts) or sum(counts) <= 0:
            raise ValueError("need one count per bucket and at least one observation")
        self.lows_ms = np.asarray([0.0] + [1000.0 * b for b in bounds_s[:-1]])
        self.highs_ms = np.asarray([1000.0 * b if math.isfinite(b) else 1000.0 * bounds_s[-2] for b in bounds_s])
        self.p = np.asarray(counts, dtype=float) / sum(counts)
        self.n = int(sum(counts))

    def draw(self, rng: np.random.Generator) -> float:
        k = rng.choice(len(self.p), p=self.p)
        return float(rng.uniform(self.lows_ms[k], self.highs_ms[k]))

    def draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray([self.draw(rng) for _ in range(n)], dtype=float)

    def mean_ms(self) -> float:
        return float(np.sum(self.p * (self.lows_ms + self.highs_ms) / 2.0))

    def describe(self) -> str:
        return f"{self.n} gaps, mean about {self.mean_ms():.2f} ms"


def gap_draws(before: Mapping[str, float], after: Mapping[str, float], metric: str = GAP_METRIC) -> GapDraws | None:
    """The observations of a worker histogram (default: the engine gaps) recorded between two scrapes
    (``bench.live_harness.scrape_metrics``), or None when it recorded none."""
    def buckets(samples: Mapping[str, float]) -> dict[float, float]:
        out: dict[float, float] = {}
        for key, value in samples.items():
            name, _, labels = key.partition("{")
            if name == f"{metric}_bucket":
                le = dict(kv.split("=", 1) for kv in labels.rstrip("}").split(",") if kv)["le"]
                out[float(le)] = out.get(float(le), 0.0) + value  # summed over worker processes
        return out

    b0, b1 = buckets(before), buckets(after)
    bounds = sorted(b1)
    cumulative = [b1[b] - b0.get(b, 0.0) for b in bounds]
    counts = [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]
    return GapDraws(bounds, counts) if bounds and sum(counts) > 0 else None


class GappedExecutor:
    """Wraps a simulator executor: every slot first waits a drawn gap, the live engine's reaction time
    (the simulated engine plans at the instant work is there; the device then sits idle for the gap)."""

    def __init__(self, inner: Any, clock: Any, rng: np.random.Generator, gaps: GapDraws) -> None:
        self.inner, self.clock, self.rng, self.gaps = inner, clock, rng, gaps

    def run(self, plan: Any) -> Any:
        self.clock.sleep(self.gaps.draw(self.rng) / 1000.0)
        return self.inner.run(plan)
