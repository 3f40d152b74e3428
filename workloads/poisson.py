"""Poisson workloads from a one-line spec, e.g. ``resnet50=120,resnet101=80,resnet152=40@50ms``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workloads.trace import TraceRow


@dataclass(frozen=True, slots=True)
class PoissonSpec:
    rates_rps: dict[str, float]  # model -> mean arrival rate, requests per second
    deadline_ms: float  # one SLO for every request

    @classmethod
    def parse(cls, text: str) -> PoissonSpec:
        """Parse ``M=R[,M=R...]@Dms``; errors say which part is wrong and show the expected form."""
        form = "expected MODEL=RATE[,MODEL=RATE...]@DEADLINEms, e.g. resnet50=120,resnet101=80@50ms"
        rates_text, sep, deadline_text = text.partition("@")
        if not sep:
            raise ValueError(f"poisson spec {text!r}: no '@DEADLINE'; {form}")
        deadline_text = deadline_text.strip().removesuffix("ms")
        try:
            deadline_ms = float(deadline_text)
        except ValueError:
            raise ValueError(f"poisson spec {text!r}: bad deadline {deadline_text!r}; {form}") from None
        if not deadline_ms > 0:
            raise ValueError(f"poisson spec {text!r}: the deadline must be positive")
        rates = parse_rates(rates_text)
        return cls(rates, deadline_ms)


def parse_rates(text: str) -> dict[str, float]:
    """``M=R[,M=R...]`` -> {model: rate}; rates must be finite and >= 0."""
    rates: dict[str, float] = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"bad rate {part!r}: expected MODEL=RATE")
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"bad rate {part!r}: {value!r} is not a number") from None
        if not (rate >= 0 and np.isfinite(rate)):
            raise ValueError(f"bad rate {part!r}: the rate must be a finite number >= 0")
        if name in rates:
            raise ValueError(f"model {name!r} appears twice in {text!r}")
        rates[name] = rate
    return rates


def poisson_rows(rates_rps: dict[str, float], deadline_ms: float, seconds: float,
                 rng: np.random.Generator) -> list[TraceRow]:
    """Independent Poisson arrivals per model over ``[0, seconds)``, merged and sorted.

    Models are drawn in sorted-name order so the same seed gives the same trace whatever the
    order the rates were written in.
    """
    times: list[np.ndarray] = []
    names: list[str] = []
    for model in sorted(rates_rps):
        rate = rates_rps[model]
        n = int(rng.poisson(rate * seconds)) if rate > 0 else 0
        t = np.sort(rng.uniform(0.0, seconds, n))  # given the count, arrivals are uniform
        times.append(t)
        names.extend([model] * n)
    all_t = np.concatenate(times) if times else np.empty(0)
    order = np.argsort(all_t, kind="stable")
    return [TraceRow(float(all_t[i]), names[i], deadline_ms, str(k)) for k, i in enumerate(order)]
