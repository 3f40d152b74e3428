"""Deadline classes and model weights: parsing the CLI's mini-languages and drawing from them.

- A deadline mix is ``MS:P[,MS:P...]`` (e.g. ``20:0.3,50:0.5,200:0.2``; an ``ms`` suffix is
  allowed) or one number for a fixed SLO (``50`` = ``50:1``). Probabilities must sum to 1.
- A ratio / weighted model list is ``M[:W][,M[:W]...]`` (e.g. ``resnet50:3,resnet101:2,resnet152:1``);
  a missing weight is 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class DeadlineMix:
    """Deadline classes: relative deadlines in ms and the share of requests in each."""

    deadlines_ms: tuple[float, ...]
    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.deadlines_ms or len(self.deadlines_ms) != len(self.probs):
            raise ValueError("a deadline mix needs one probability per deadline class and at least one class")
        for d in self.deadlines_ms:
            if not (math.isfinite(d) and d > 0):
                raise ValueError(f"deadline {d!r} ms: deadlines must be finite and > 0")
        if len(set(self.deadlines_ms)) != len(self.deadlines_ms):
            raise ValueError(f"deadline classes {list(self.deadlines_ms)} repeat a deadline")
        for p in self.probs:
            if not (math.isfinite(p) and 0 <= p <= 1):
                raise ValueError(f"probability {p!r}: each class's probability must be in [0, 1]")
        total = sum(self.probs)
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ValueError(f"deadline class probabilities {list(self.probs)} sum to {total:g}; they must sum to 1")

    @classmethod
    def of(cls, mix: DeadlineMix | float | Sequence[tuple[float, float]]) -> DeadlineMix:
        """Accept a mix, one fixed deadline in ms, or ``[(deadline_ms, prob), ...]``."""
        if isinstance(mix, DeadlineMix):
            return mix
        if isinstance(mix, int | float):
            return cls((float(mix),), (1.0,))
        pairs = list(mix)
        return cls(tuple(float(d) for d, _ in pairs), tuple(float(p) for _, p in pairs))

    @classmethod
    def parse(cls, text: str) -> DeadlineMix:
        form = "expected MS or MS:P[,MS:P...] with probabilities summing to 1, e.g. 20:0.3,50:0.5,200:0.2"
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise ValueError(f"deadline mix {text!r} is empty; {form}")
        if len(parts) == 1 and ":" not in parts[0]:
            return cls((_number(parts[0].removesuffix("ms"), f"deadline mix {text!r}", form),), (1.0,))
        deadlines, probs = [], []
        for part in parts:
            ms, sep, p = part.partition(":")
            if not sep:
                raise ValueError(f"deadline mix {text!r}: {part!r} has no ':P'; {form}")
            deadlines.append(_number(ms.strip().removesuffix("ms"), f"deadline mix {text!r}", form))
            probs.append(_number(p, f"deadline mix {text!r}", form))
        try:
            return cls(tuple(deadlines), tuple(probs))
        except ValueError as exc:
            raise ValueError(f"deadline mix {text!r}: {exc}") from None

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` deadlines in ms, each class drawn independently with its probability."""
        if len(self.deadlines_ms) == 1:
            return np.full(n, self.deadlines_ms[0])
        probs = np.asarray(self.probs) / sum(self.probs)  # exact normalisation for numpy's check
        return np.asarray(self.deadlines_ms)[rng.choice(len(probs), size=n, p=probs)]

    def describe(self) -> str:
        return ",".join(f"{d:g}:{p:g}" for d, p in zip(self.deadlines_ms, self.probs))


def parse_weights(text: str, what: str = "ratio") -> dict[str, float]:
    """``M[:W][,M[:W]...]`` -> {model: weight}, in the order written; weights finite and > 0."""
    form = "expected MODEL[:WEIGHT][,MODEL[:WEIGHT]...], e.g. resnet50:3,resnet101:2,resnet152:1"
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, w = part.partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"{what} {text!r}: empty model name; {form}")
        weight = _number(w, f"{what} {text!r}", form) if sep else 1.0
        if not weight > 0:
            raise ValueError(f"{what} {text!r}: weight of {name!r} must be > 0, got {weight:g}")
        if name in weights:
            raise ValueError(f"{what} {text!r}: model {name!r} appears twice")
        weights[name] = weight
    return weights


def split_rate(total_rps: float, weights: Mapping[str, float]) -> dict[str, float]:
    """Split a total rate over models in proportion to ``weights``."""
    if not (math.isfinite(total_rps) and total_rps >= 0):
        raise ValueError(f"total rate {total_rps!r}: must be a finite number >= 0 requests/s")
    if not weights:
        raise ValueError("a ratio needs at least one model")
    s = sum(weights.values())
    return {m: total_rps * w / s for m, w in weights.items()}


def _number(text: str, where: str, form: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text.strip()!r} is not a number; {form}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {text.strip()!r} is not a finite number; {form}")
    return value
