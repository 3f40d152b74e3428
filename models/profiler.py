"""Measures slot latency per (model, exit, batch) with the torch executor and builds the profile JSON.

What is timed is ``TorchExecutor.run(plan)`` itself: the slot time the live worker will see,
stacking and softmax included, ``torch.cuda.synchronize`` included on a GPU. Every configuration
gets warm-up runs first; the timed runs then go in rounds over all configurations, in a fresh
seeded order each round, so a burst of noise from another process spreads over all of them instead
of skewing one, and the caches are as cold or warm as they are when a live worker switches models
between slots.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.device import device_name
from models.executor import TorchExecutor
from scheduler.profile import Profile
from scheduler.types import Plan, Request


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the profile records about a model besides its latencies."""

    accuracy: dict[str, float]  # exit -> accuracy
    extra: dict[str, Any]  # extra keys kept in the profile's model entry (input shape, source, ...)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1-10"``, ``"1,2,4,8"`` or a mix like ``"1-4,8"`` -> sorted unique positive sizes."""
    sizes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                sizes.update(range(lo, hi + 1))
            else:
                sizes.add(int(part))
        except ValueError:
            raise ValueError(f"bad batch sizes {text!r}: expected e.g. '1-10', '1,2,4,8' or '1-4,8'") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"bad batch sizes {text!r}: sizes must be positive integers")
    return tuple(sorted(sizes))


def quantiles(samples_ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p95, p99 = np.percentile(arr, [50, 90, 95, 99])
    return {"mean": float(arr.mean()), "p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99)}


Samples = dict[str, dict[str, dict[int, list[float]]]]  # model -> exit -> batch -> slot times in ms


def measure(executor: TorchExecutor, batch_sizes: Sequence[int], warmup: int, repeats: int,
            rng: np.random.Generator, tick: Callable[[], None] | None = None) -> Samples:
    """Slot times in ms: ``samples[model][exit][batch]`` holds ``repeats`` measurements each.

    ``tick`` is called once per run (warm-up included), for a progress bar.
    """
    configs = [(name, exit, b) for name, model in executor.models.items() for exit in model.exits
               for b in batch_sizes]
    plans = {c: _plan(executor, *c, rng) for c in configs}
    samples: Samples = {
        name: {e: {b: [] for b in batch_sizes} for e in model.exits} for name, model in executor.models.items()}
    for c in configs:
        for _ in range(warmup):
            executor.run(plans[c])
            if tick:
                tick()
    for _ in range(repeats):
        # A fresh order each round: whichever configuration follows a big batch of another model runs
        # with cold caches, and that penalty should fall on every configuration alike.
        for i in rng.permutation(len(configs)):
            c = configs[i]
            samples[c[0]][c[1]][c[2]].append(executor.run(plans[c]).slot_ms)
            if tick:
                tick()
    return samples


def _plan(executor: TorchExecutor, name: str, exit: str, batch: int, rng: np.random.Generator) -> Plan:
    shape = executor.models[name].input_shape
    payloads = torch.from_numpy(rng.standard_normal((batch, *shape), dtype=np.float32))
    requests = tuple(Request(f"profile-{name}-{exit}-{batch}-{i}", name, 0.0, 1e9, payload=payloads[i])
                     for i in range(batch))
    return Plan.run(name, exit, requests, 0.0)


def build_profile(name: str, executor: TorchExecutor, samples: Samples,
                  infos: Mapping[str, ModelInfo], threads: int, warmup: int, repeats: int,
                  description: str = "") -> dict[str, Any]:
    """The profile JSON of ARCHITECTURE.md (plus extra keys), validated by the core's loader."""
    device = executor.device
    models = {}
    for model_name, per_exit in samples.items():
        exits = list(executor.models[model_name].exits)
        info = infos[model_name]
        models[model_name] = {
            "exits": exits,
            "accuracy": {e: info.accuracy[e] for e in exits},
            "latency_ms": {e: {str(b): quantiles(ms) for b, ms in per_exit[e].items()} for e in exits},
            **info.extra,
        }
    data = {
        "name": name,
        "description": description or f"measured by `edgeserving profile` on {device_name(device)}",
        "device": device_name(device),
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "torch_version": torch.__version__,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "models": models,
    }
    Profile.from_dict(data, source=f"<profile {name}>")  # fail here, not in the engine, if anything is off
    return data

