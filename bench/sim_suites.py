"""The workloads of ``edgeserving bench sim``: run specs, how each is generated, capacity and noise.

**Capacity** of a profile for a model mix (``capacity_rps``): the total arrival rate, split over the
models in the mix's proportions, at which the GPU is busy 100% of the time when every request runs
at its model's most accurate exit (ties to the faster one) in full batches of Bmax, at the profiled
mean slot time. It is the load a scheduler could carry at full accuracy with perfect batching; above
it, something must give (exits, deadlines or requests). For the seed profile and the 3:2:1 mix it is
about 956 requests/s, i.e. lambda = 159 (the seed workload's lambda is the rate per weight unit).

**Hard noise** (``noise_for_p99_ratio``): the simulator's ``noise`` scales every quantile's distance
from the mean, so p99/mean becomes ``1 + noise * (p99/mean - 1)``; the factor that makes the mean of
p99/mean over all of the profile's (model, exit, batch) entries equal 1.3 is
``0.3 / mean(p99/mean - 1)`` (2.31 for the seed profile, whose p99 is 1.13 x the mean everywhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scheduler.profile import Profile

SEED_WEIGHTS = (3.0, 2.0, 1.0)  # the seed workload's rate ratio, in profile order
HARD_P99_RATIO = 1.3
# Overload points as multiples of capacity; at 4x (seed profile, 3:2:1) the load is 95% of what even the
# shallowest exits carry in full batches, so the whole sweep stays within what some schedule can serve.
OVERLOAD_FACTORS = (2.0, 2.5, 3.0, 3.5, 4.0)
MIXED_DEADLINES = ((20.0, 1 / 3), (50.0, 1 / 3), (200.0, 1 / 3))  # three deadline classes, equal shares
# The same with a 10 ms class: shorter than the seed profile's longest slots (resnet152 to layer3 in a
# batch of 10 takes 18.9 ms), so an urgent arrival can be doomed by the slot already running.
TIGHT_DEADLINES = ((10.0, 1 / 3), (50.0, 1 / 3), (200.0, 1 / 3))
# The bursty arrival processes of the hard suites: (suite, process, generator options).
BURSTY = (("gamma-cv4", "gamma", (("cv", 4.0),)), ("mmpp-3x", "mmpp", (("burst_factor", 3.0),)))
# Loads of ``bench sim --preemption``, as fractions of capacity: below it, near it, at its edge.
PREEMPTION_LOADS = (0.6, 0.8, 0.95)


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload point, independent of policy and seed."""

    suite: str
    process: str  # poisson | gamma | mmpp | azure
    load: float  # the x axis: lambda (rate per weight unit) or, for azure, the fraction of capacity
    total_rps: float  # mean total arrival rate
    weights: tuple[tuple[str, float], ...]  # model -> share weight
    deadlines: tuple[tuple[float, float], ...]  # (deadline_ms, probability)
    noise: float
    seconds: float | None  # trace length; None for a whole (rescaled) public trace
    options: tuple[tuple[str, float], ...] = ()  # process options (cv, burst_factor)
    target: int | None = None  # the issue-7 target this point is checked against: 1 seed, 2 hard, 3 overload
    device_scale: float = 1.0  # the simulated device runs this many times slower than the profile says

    @property
    def slo_label(self) -> str:
        return "/".join(f"{d:g}" for d, _ in self.deadlines) + " ms"

    def rates_rps(self) -> dict[str, float]:
        total_w = sum(w for _, w in self.weights)
        return {m: self.total_rps * w / total_w for m, w in self.weights}


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One simulation: a workload, a policy variant and a seed."""

    workload: Workload
    label: str  # the policy as tables show it (a registry name, or name[-option] for ablations)
    policy: str  # registry name
    seed: int
    options: tuple[tuple[str, object], ...] = field(default=())  # policy constructor options


def capacity_rps(profile: Profile, weights: Mapping[str, float], bmax: int) -> float:
    """Total requests/s the GPU carries at full accuracy in full batches (see the module docstring)."""
    total_w = sum(weights.values())
    busy_ms = 0.0
    for m, w in weights.items():
        mp = profile.model(m)
        best = max(mp.exits, key=lambda e: (mp.accuracy[e], -profile.latency_ms(m, e, bmax, "mean")))
        busy_ms += w / total_w * profile.latency_ms(m, best, bmax, "mean") / bmax
    return 1000.0 / busy_ms


def noise_for_p99_ratio(profile: Profile, ratio: float = HARD_P99_RATIO) -> float:
    """The simulator noise factor that makes the profile's mean p99/mean equal ``ratio``."""
    excess = []
    for mp in profile.models.values():
        for e in mp.exits:
            for q in mp.latency_ms[e].values():
                excess.append(q["p99"] / q["mean"] - 1.0)
    mean_excess = float(np.mean(excess))
    if mean_excess <= 0:
        raise ValueError(f"profile {profile.name!r} has p99 == mean everywhere: no noise factor can give "
                         f"p99/mean = {ratio}")
    return (ratio - 1.0) / mean_excess


def seed_weights(profile: Profile) -> tuple[tuple[str, float], ...]:
    names = profile.model_names
    weights = SEED_WEIGHTS if len(names) == len(SEED_WEIGHTS) else (1.0,) * len(names)
    return tuple(zip(names, weights))


def _lambda_workload(suite: str, target: int, process: str, lam: float, weights, deadlines, noise: float,
                     seconds: float, options=()) -> Workload:
    total = lam * sum(w for _, w in weights)
    return Workload(suite, process, lam, total, weights, tuple(deadlines), noise, seconds, tuple(options), target)


def default_workloads(profile: Profile, bmax: int, seconds: float, quick: bool,
                      azure_available: bool) -> list[Workload]:
    """The default suite (``quick`` trims the points, not the kinds)."""
    weights = seed_weights(profile)
    hard = noise_for_p99_ratio(profile)
    cap = capacity_rps(profile, dict(weights), bmax)
    cap_lambda = cap / sum(w for _, w in weights)
    seed_lams = (40, 120, 240) if quick else (40, 80, 120, 160, 200, 240)
    hard_lams = (160, 240) if quick else (80, 160, 240)
    mixed = MIXED_DEADLINES
    slo50 = [(50.0, 1.0)]
    out: list[Workload] = []
    for slo in (50.0, 20.0):
        out += [_lambda_workload("seed", 1, "poisson", lam, weights, [(slo, 1.0)], 1.0, seconds) for lam in seed_lams]
    out += [_lambda_workload(suite, 2, process, lam, weights, slo50, hard, seconds, options)
            for suite, process, options in BURSTY for lam in hard_lams]
    out += [_lambda_workload("mixed-deadlines", 2, "poisson", lam, weights, mixed, hard, seconds)
            for lam in hard_lams]
    if azure_available:
        out += [Workload("azure-llm", "azure", frac, frac * cap, weights, tuple(slo50), hard, None, target=2)
                for frac in ((0.9,) if quick else (0.6, 0.9))]
    out += [_lambda_workload("overload", 3, "poisson", round(k * cap_lambda, 1), weights, slo50, 1.0, seconds)
            for k in ((2.0, 4.0) if quick else OVERLOAD_FACTORS)]
    return out


def ablation_workloads(profile: Profile, bmax: int, seconds: float, quick: bool) -> list[Workload]:
    """The points the ablation compares variants on: the hardest of each kind, plus a drifted device
    (30% slower than its profile) where only the online correction knows the real slot times."""
    weights = seed_weights(profile)
    hard = noise_for_p99_ratio(profile)
    cap_lambda = capacity_rps(profile, dict(weights), bmax) / sum(w for _, w in weights)
    mixed = MIXED_DEADLINES
    slo50 = [(50.0, 1.0)]
    out = [
        _lambda_workload("seed", 1, "poisson", 240, weights, [(20.0, 1.0)], 1.0, seconds),
        _lambda_workload("mixed-deadlines", 2, "poisson", 240, weights, mixed, hard, seconds),
        _lambda_workload("mmpp-3x", 2, "mmpp", 240, weights, slo50, hard, seconds, [("burst_factor", 3.0)]),
        _lambda_workload("overload", 3, "poisson", round(OVERLOAD_FACTORS[-1] * cap_lambda, 1), weights, slo50, 1.0,
                         seconds),
        _lambda_workload("seed", 1, "poisson", 240, weights, slo50, 1.0, seconds),
        _lambda_workload("gamma-cv4", 2, "gamma", 240, weights, slo50, hard, seconds, [("cv", 4.0)]),
        Workload("drift-1.3x", "poisson", 160, 160 * sum(w for _, w in weights), weights, tuple(slo50), 1.0,
                 seconds, device_scale=1.3),
    ]
    return out[:4] if quick else out


def preemption_workloads(profile: Profile, bmax: int, seconds: float, quick: bool) -> list[Workload]:
    """The points ``bench sim --preemption`` compares on: bursty arrivals with mixed deadlines, where an
    urgent request may arrive while a slot planned for 200 ms requests is running (20/50/200 ms, and
    10/50/200 ms where the shortest deadline is below the longest slots), at fractions of capacity
    (``load`` is that fraction, as for the Azure suite). Hard noise, as in the hard suites."""
    weights = seed_weights(profile)
    hard = noise_for_p99_ratio(profile)
    cap = capacity_rps(profile, dict(weights), bmax)
    loads = PREEMPTION_LOADS[1:] if quick else PREEMPTION_LOADS
    return [Workload(suite, process, frac, frac * cap, weights, deadlines, hard, seconds, options)
            for deadlines in (MIXED_DEADLINES, TIGHT_DEADLINES) for suite, process, options in BURSTY
            for frac in loads]


def scaled_profile(profile: Profile, factor: float) -> Profile:
    """The same profile on a device ``factor`` times slower: every latency quantile scaled."""
    d = profile.to_dict()
    for spec in d["models"].values():
        for per_batch in spec["latency_ms"].values():
            for q in per_batch.values():
                for k in q:
                    q[k] *= factor
    return Profile.from_dict(d, source=f"{profile.source} x{factor:g}")


def build_requests(w: Workload, profile: Profile, trace_rng: np.random.Generator,
                   azure_path: str | None = None) -> list:
    """The workload's requests (sorted by arrival), drawn with ``trace_rng``."""
    from workloads.generators import generate

    if w.process == "azure":
        from workloads.azure import convert_azure_llm

        if azure_path is None:
            raise ValueError("the azure workload needs the Azure LLM trace path")
        rows = convert_azure_llm(azure_path, dict(w.weights), list(w.deadlines), trace_rng, rate_rps=w.total_rps)
    else:
        assert w.seconds is not None
        rows = generate(w.process, w.rates_rps(), list(w.deadlines), w.seconds, trace_rng, **dict(w.options))
    return [r.to_request() for r in rows]


def ablation_variants(ours: str) -> list[tuple[str, str, tuple[tuple[str, object], ...]]]:
    """(label, policy, options): the full policy, then each capability turned off, then the reference."""
    off: Sequence[tuple[str, str, object]] = (
        ("-lookahead", "lookahead", False),
        ("-reserve", "reserve", False),
        ("-accuracy", "accuracy_aware", False),
        ("-budget", "budget", False),
        ("-shed", "shed", "off"),
        ("-salvage", "shed", "drop"),
        ("-newest-late", "salvage_order", "oldest"),
        ("-salvage-load", "salvage_load", False),
        ("-adaptive", "adaptive", False),
        ("-edf-batches", "edf_batches", False),
        ("-backlog", "budget_options", {"backlog_timing": False}),
    )
    out = [(ours, ours, ())]
    out += [(ours + suffix, ours, ((key, value),)) for suffix, key, value in off]
    return out
