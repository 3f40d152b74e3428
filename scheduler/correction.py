"""Online latency correction: follow the device from measured slot times.

A profile is measured once; the device then warms up, throttles or shares its GPU with other
tenants. ``LatencyCorrection`` keeps, per (model, exit, batch), a sliding window of the ratio
measured / profiled mean, and predicts each slot as ``profiled mean x scale``:

- ``scale(key)`` shrinks the key's window mean towards the global window mean with the weight of
  ``prior_weight`` pseudo-samples, so a key seen a few times (or never) borrows what every other key
  says about the device (a uniformly 1.5x slower device is learned from any slot), and a key seen
  often follows its own measurements.
- ``margin()`` is the safety factor a deadline-aware policy plans with: the ``margin_quantile`` of
  the out-of-sample residuals measured / (mean x scale) over the last ``margin_window`` slots (each
  residual is computed with the scale *before* that slot was added, so it is an honest prediction
  error). Until ``min_margin_samples`` residuals exist it is ``prior_margin`` (by default the
  profile's own tail: its largest p99/mean, extended by a quarter of the p95-p99 gap, where the
  quantile curve would reach certainty). The margin never exceeds ``max_margin`` (by default
  ``MAX_MARGIN_FACTOR`` x the prior): residuals past that are interference (the OS descheduling the
  worker, another tenant's burst), not latency any slot choice avoids. Planning for them would make
  every deadline look infeasible and push every batch to its shallowest exit. Measured on the 2-core
  CI box, live 0.999-quantiles of 10-20x turned 3-4 ms slots into 30-80 ms plans.

Estimates change at most every ``refresh_every`` observations (``version`` counts the changes), so
a policy can cache latency tables built from them. Prediction error (measured minus what the
policy planned with) is kept for reporting, see ``error_stats``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

from scheduler.profile import Profile

Key = tuple[str, int, int]  # (model, exit index, batch size)
MAX_MARGIN_FACTOR = 1.5


def profile_tail_margin(profile: Profile, batches: Iterable[int] | None = None) -> float:
    """The largest (p99 + (p99 - p95) / 4) / mean over the profile's entries: its tail at certainty."""
    worst = 1.0
    for m in profile.models.values():
        sizes = m.batch_sizes if batches is None else tuple(batches)
        for e in m.exits:
            for b in sizes:
                d = profile.distribution(m.name, e, b)
                worst = max(worst, (d["p99"] + (d["p99"] - d["p95"]) / 4.0) / d["mean"])
    return worst


class LatencyCorrection:
    def __init__(self, profile: Profile, *, window: int = 32, prior_weight: float = 4.0,
                 global_window: int = 512, margin_window: int = 2000, margin_quantile: float = 0.999,
                 min_margin_samples: int = 50, prior_margin: float | None = None,
                 max_margin: float | None = None, refresh_every: int = 16) -> None:
        if window < 1 or global_window < 1 or margin_window < 1:
            raise ValueError("window, global_window and margin_window must be >= 1")
        if not 0.0 < margin_quantile <= 1.0:
            raise ValueError(f"margin_quantile must be in (0, 1], got {margin_quantile}")
        if prior_weight <= 0:
            raise ValueError(f"prior_weight must be > 0, got {prior_weight}")
        self.profile = profile
        self.window = window
        self.prior_weight = prior_weight
        self.margin_quantile = margin_quantile
        self.min_margin_samples = min_margin_samples
        self.prior_margin = profile_tail_margin(profile) if prior_margin is None else prior_margin
        self.max_margin = MAX_MARGIN_FACTOR * self.prior_margin if max_margin is None else max_margin
        if self.max_margin < 1.0:
            raise ValueError(f"max_margin must be >= 1, got {self.max_margin}")
        self.refresh_every = max(1, refresh_every)
        self.version = 0  # bumped whenever scale() or margin() may have changed
        self._mean = profile.table("mean").rows
        self._by_key: dict[Key, deque[float]] = {}
        self._key_sum: dict[Key, float] = {}
        self._global: deque[float] = deque(maxlen=global_window)
        self._global_sum = 0.0
        self._residuals: deque[float] = deque(maxlen=margin_window)
        self._errors_ms: deque[float] = deque(maxlen=margin_window)  # measured - planned, ms
        self._pending = 0
        self._margin = self.prior_margin
        self._global_scale = 1.0
        self.observations = 0

    # -- learning --------------------------------------------------------------------------

    def observe(self, model: str, exit_index: int, batch: int, measured_ms: float,
                planned_ms: float | None = None) -> None:
        """Record one slot: ``batch`` requests of ``model`` run to exit ``exit_index`` took ``measured_ms``."""
        if not measured_ms > 0:
            return  # a zero/negative measurement carries no information about the device
        key = (model, exit_index, batch)
        base = self._mean[model][exit_index][batch]
        self._residuals.append(measured_ms / (base * self._scale(key)))
        if planned_ms is not None:
            self._errors_ms.append(measured_ms - planned_ms)
        ratio = measured_ms / base
        win = self._by_key.get(key)
        if win is None:
            win = self._by_key[key] = deque(maxlen=self.window)
            self._key_sum[key] = 0.0
        if len(win) == win.maxlen:
            self._key_sum[key] -= win[0]
        win.append(ratio)
        self._key_sum[key] += ratio
        if len(self._global) == self._global.maxlen:
            self._global_sum -= self._global[0]
        self._global.append(ratio)
        self._global_sum += ratio
        self.observations += 1
        self._pending += 1
        if self._pending >= self.refresh_every:
            self.refresh()

    def refresh(self) -> None:
        """Recompute the global scale and the margin from the windows (called every ``refresh_every``)."""
        self._pending = 0
        # Re-sum now and then so floating-point drift of the running sums never accumulates.
        self._global_sum = float(sum(self._global))
        self._global_scale = self._global_sum / len(self._global) if self._global else 1.0
        if len(self._residuals) >= self.min_margin_samples:
            q = float(np.quantile(np.fromiter(self._residuals, float), self.margin_quantile))
            self._margin = min(max(1.0, q), self.max_margin)
        self.version += 1

    # -- prediction ------------------------------------------------------------------------

    def _scale(self, key: Key) -> float:
        win = self._by_key.get(key)
        if not win:
            return self._global_scale
        return (self._key_sum[key] + self.prior_weight * self._global_scale) / (len(win) + self.prior_weight)

    def scale(self, model: str, exit_index: int, batch: int) -> float:
        """Measured / profiled mean slot time for this key, as currently estimated."""
        return self._scale((model, exit_index, batch))

    def expected_ms(self, model: str, exit_index: int, batch: int) -> float:
        """Predicted mean slot time in ms."""
        return self._mean[model][exit_index][batch] * self._scale((model, exit_index, batch))

    def margin(self) -> float:
        """Safety factor (>= 1) on expected_ms that covers ``margin_quantile`` of the prediction error."""
        return self._margin

    def error_stats(self) -> dict[str, float | int]:
        """Prediction error of the planned slot time over the window: count, mean, mean |.|, p95 |.| in ms."""
        margin = {"margin": self._margin, "max_margin": self.max_margin, "global_scale": self._global_scale}
        if not self._errors_ms:
            return {"slots": 0, "mean_error_ms": 0.0, "mean_abs_error_ms": 0.0, "p95_abs_error_ms": 0.0, **margin}
        err = np.fromiter(self._errors_ms, float)
        abs_err = np.abs(err)
        return {"slots": int(err.size), "mean_error_ms": float(err.mean()),
                "mean_abs_error_ms": float(abs_err.mean()), "p95_abs_error_ms": float(np.percentile(abs_err, 95)),
                **margin}
