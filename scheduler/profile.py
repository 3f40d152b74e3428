"""Latency/accuracy profiles: loading, validation and fast lookup.

A profile (the JSON format in ARCHITECTURE.md) gives, per model, its exits (shallowest first),
the accuracy at each exit and the slot latency per (exit, batch size) as mean/p50/p90/p95/p99 in ms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUANTILES = ("mean", "p50", "p90", "p95", "p99")
# Tables cover batch sizes 0..MAX_BATCH (clamped beyond the profiled range), so a policy can index
# them with any batch up to its Bmax without a bounds check in its hot path.
MAX_BATCH = 256


class ProfileError(ValueError):
    """A profile file is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True, slots=True)
class ModelProfile:
    name: str
    exits: tuple[str, ...]  # shallowest first
    accuracy: dict[str, float]  # exit -> top-1 accuracy in [0, 1]
    latency_ms: dict[str, dict[int, dict[str, float]]]  # exit -> batch -> quantile -> ms
    batch_sizes: tuple[int, ...]  # profiled batch sizes, ascending

    def exit_index(self, exit: str) -> int:
        try:
            return self.exits.index(exit)
        except ValueError:
            raise ValueError(f"model {self.name!r} has no exit {exit!r}; exits are {list(self.exits)}") from None


@dataclass(frozen=True, slots=True)
class LatencyTable:
    """Latencies at one quantile, pre-expanded for O(1) lookup in policies' hot paths.

    ``rows[model][exit_index][b]`` is the latency in ms of a batch of ``b`` requests, for
    ``b`` in ``0..MAX_BATCH``; batch sizes outside the profiled range are clamped to it and
    sizes between profiled ones are interpolated linearly.
    """

    quantile: str
    rows: dict[str, tuple[tuple[float, ...], ...]]
    max_batch: int  # the largest profiled batch size

    def ms(self, model: str, exit_index: int, batch: int) -> float:
        return self.rows[model][exit_index][min(batch, MAX_BATCH)]


class Profile:
    """A validated profile. Read-only after construction."""

    def __init__(self, name: str, models: dict[str, ModelProfile], device: str = "",
                 description: str = "", source: str = "<memory>", extra: dict[str, Any] | None = None):
        assert models, "a profile needs at least one model"
        self.name = name
        self.device = device
        self.description = description
        self.source = source
        self.models = models
        self.model_names: tuple[str, ...] = tuple(models)  # profile order breaks policy ties
        self.extra = extra or {}
        self._tables: dict[str, LatencyTable] = {}

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read profile: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "<memory>") -> Profile:
        def fail(key: str, problem: str) -> ProfileError:
            return ProfileError(f"{source}: {key}: {problem}")

        if not isinstance(data, dict):
            raise fail("<top level>", "expected a JSON object")
        for key in ("name", "models"):
            if key not in data:
                raise fail(key, "missing required key")
        if not isinstance(data["models"], dict) or not data["models"]:
            raise fail("models", "expected a non-empty object of model name -> model profile")
        models = {name: _parse_model(name, spec, fail) for name, spec in data["models"].items()}
        extra = {k: v for k, v in data.items() if k not in ("name", "description", "device", "models")}
        return cls(str(data["name"]), models, device=str(data.get("device", "")),
                   description=str(data.get("description", "")), source=source, extra=extra)

    @classmethod
    def from_latencies(cls, name: str, latency_ms: dict[str, dict[str, dict[int, float]]],
                       accuracy: dict[str, dict[str, float]] | None = None) -> Profile:
        """A deterministic profile (every quantile = the mean) from ``{model: {exit: {batch: ms}}}``.

        Exits are taken in the given order, shallowest first; accuracy defaults to rising with depth.
        """
        models: dict[str, Any] = {}
        for model, per_exit in latency_ms.items():
            exits = list(per_exit)
            acc = (accuracy or {}).get(model) or {e: (i + 1) / (len(exits) + 1) for i, e in enumerate(exits)}
            models[model] = {
                "exits": exits,
                "accuracy": acc,
                "latency_ms": {e: {str(b): dict.fromkeys(QUANTILES, ms) for b, ms in per_exit[e].items()}
                               for e in exits},
            }
        return cls.from_dict({"name": name, "device": "synthetic", "models": models}, source=f"<{name}>")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "device": self.device,
            **self.extra,
            "models": {
                m.name: {
                    "exits": list(m.exits),
                    "accuracy": dict(m.accuracy),
                    "latency_ms": {e: {str(b): dict(q) for b, q in m.latency_ms[e].items()} for e in m.exits},
                }
                for m in self.models.values()
            },
        }

    # -- lookup ----------------------------------------------------------------------------

    def model(self, name: str) -> ModelProfile:
        try:
            return self.models[name]
        except KeyError:
            raise ValueError(f"unknown model {name!r}; known models are {list(self.model_names)}") from None

    def latency_ms(self, model: str, exit: str, batch: int, quantile: str = "p95") -> float:
        """Profiled slot latency of ``batch`` requests of ``model`` run to ``exit``, in ms."""
        mp = self.model(model)
        return self.table(quantile).ms(model, mp.exit_index(exit), batch)

    def accuracy(self, model: str, exit: str) -> float:
        mp = self.model(model)
        mp.exit_index(exit)
        return mp.accuracy[exit]

    def table(self, quantile: str = "p95") -> LatencyTable:
        if quantile not in QUANTILES:
            raise ValueError(f"unknown quantile {quantile!r}; choose one of {list(QUANTILES)}")
        table = self._tables.get(quantile)
        if table is None:
            table = self._tables[quantile] = self._build_table(quantile)
        return table

    def max_batch(self) -> int:
        return max(m.batch_sizes[-1] for m in self.models.values())

    def distribution(self, model: str, exit: str, batch: int) -> dict[str, float]:
        """All quantiles of one (model, exit, batch), the batch clamped/interpolated as in tables."""
        return {q: self.latency_ms(model, exit, batch, q) for q in QUANTILES}

    def _build_table(self, quantile: str) -> LatencyTable:
        max_batch = self.max_batch()
        rows = {}
        for m in self.models.values():
            rows[m.name] = tuple(
                tuple(_interp_batch(m, e, b, quantile) for b in range(MAX_BATCH + 1)) for e in m.exits
            )
        return LatencyTable(quantile, rows, max_batch)


def _interp_batch(m: ModelProfile, exit: str, batch: int, quantile: str) -> float:
    sizes = m.batch_sizes
    by_batch = m.latency_ms[exit]
    if batch <= sizes[0]:
        return by_batch[sizes[0]][quantile]
    if batch >= sizes[-1]:
        return by_batch[sizes[-1]][quantile]
    if batch in by_batch:
        return by_batch[batch][quantile]
    hi = next(s for s in sizes if s > batch)
    lo = max(s for s in sizes if s < batch)
    frac = (batch - lo) / (hi - lo)
    return by_batch[lo][quantile] * (1 - frac) + by_batch[hi][quantile] * frac


def _parse_model(name: str, spec: Any, fail) -> ModelProfile:
    key = f"models.{name}"
    if not isinstance(spec, dict):
        raise fail(key, "expected an object with exits, accuracy and latency_ms")
    for sub in ("exits", "accuracy", "latency_ms"):
        if sub not in spec:
            raise fail(f"{key}.{sub}", "missing required key")
    exits = spec["exits"]
    if not isinstance(exits, list) or not exits or not all(isinstance(e, str) for e in exits):
        raise fail(f"{key}.exits", "expected a non-empty list of exit names, shallowest first")
    if len(set(exits)) != len(exits):
        raise fail(f"{key}.exits", f"duplicate exit names in {exits}")
    accuracy: dict[str, float] = {}
    for e in exits:
        value = spec["accuracy"].get(e) if isinstance(spec["accuracy"], dict) else None
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise fail(f"{key}.accuracy.{e}", f"expected a number in [0, 1], got {value!r}")
        accuracy[e] = float(value)
    latency: dict[str, dict[int, dict[str, float]]] = {}
    batch_sets = []
    for e in exits:
        per_batch = spec["latency_ms"].get(e) if isinstance(spec["latency_ms"], dict) else None
        if not isinstance(per_batch, dict) or not per_batch:
            raise fail(f"{key}.latency_ms.{e}", "missing or empty: expected batch size -> quantiles")
        latency[e] = {}
        for b_text, quantiles in per_batch.items():
            bkey = f"{key}.latency_ms.{e}.{b_text}"
            try:
                b = int(b_text)
            except ValueError:
                raise fail(bkey, "batch size must be a positive integer") from None
            if b < 1:
                raise fail(bkey, "batch size must be a positive integer")
            if not isinstance(quantiles, dict):
                raise fail(bkey, f"expected an object with {list(QUANTILES)}")
            for q in QUANTILES:
                v = quantiles.get(q)
                if not _is_number(v) or v <= 0:
                    raise fail(f"{bkey}.{q}", f"expected a positive number of ms, got {v!r}")
            qs = {q: float(quantiles[q]) for q in QUANTILES}
            if not qs["p50"] <= qs["p90"] <= qs["p95"] <= qs["p99"]:
                raise fail(bkey, f"quantiles must be non-decreasing (p50 <= p90 <= p95 <= p99), got {qs}")
            latency[e][b] = qs
        batch_sets.append(tuple(sorted(latency[e])))
    if len(set(batch_sets)) != 1:
        raise fail(f"{key}.latency_ms", "every exit must be profiled at the same batch sizes")
    return ModelProfile(name, tuple(exits), accuracy, latency, batch_sets[0])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
