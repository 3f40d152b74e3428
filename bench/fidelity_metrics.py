"""Comparing a live replay with the simulator's run of the same trace (pure functions, no Ray).

Two views of a live run, so a gap can be traced to its source:

- **server view**: what the worker saw. Latency = ``queue_ms + slot_ms`` from the worker's answer
  (from the moment its handler received the request to the end of its slot) and the worker's own
  MET/LATE. The simulator models exactly this part (engine, policy, slot times), so a gap here is
  the profile (slot times off on the live worker: contention, stale profile) or the engine thread's
  scheduling delays.
- **client view**: the replayer's latency (send to answer: client, HTTP, Ray Serve proxy, the
  worker's request handling, the engine) and MET/LATE judged on it. The simulator knows nothing of
  the HTTP path, so its latencies get a **measured** per-request overhead added: samples of
  ``client latency - slot_ms`` taken one request at a time on the idle server before the replay
  (``overhead_samples``), drawn per request with a seeded generator. It is a calibration measured
  like a profile, never fitted to the replay it predicts.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from scheduler.profile import Profile
from scheduler.types import Outcome, RequestResult

P95_TOLERANCE = 0.10  # target: simulated P95 within 10% of the live one
VIOLATION_TOLERANCE = 0.02  # target: violation ratio within 2 points


def _with_latency(r: RequestResult, latency_ms: float) -> RequestResult:
    outcome = Outcome.MET if latency_ms <= r.request.slo_ms else Outcome.LATE
    return dataclasses.replace(r, finish_s=r.request.arrival_s + latency_ms / 1000.0, outcome=outcome)


def server_view(results: Sequence[RequestResult]) -> list[RequestResult]:
    """Live results with the worker-side latency (queue + slot); outcomes as the worker judged them."""
    out = []
    for r in results:
        if r.outcome.completed and r.queue_ms is not None and r.slot_ms is not None:
            latency_ms = r.queue_ms + r.slot_ms
            out.append(dataclasses.replace(r, finish_s=r.request.arrival_s + latency_ms / 1000.0))
        else:
            out.append(r)
    return out


def client_view(results: Sequence[RequestResult]) -> list[RequestResult]:
    """Live results judged on the client-side latency (MET when within the request's deadline)."""
    return [_with_latency(r, r.latency_ms) if r.outcome.completed and r.latency_ms is not None else r
            for r in results]


def with_overhead(results: Sequence[RequestResult], overhead_ms: Sequence[float],
                  rng: np.random.Generator) -> list[RequestResult]:
    """Simulated results as a client would see them: each completed request's latency plus one overhead
    sample (drawn with replacement), re-judged against its deadline."""
    samples = np.asarray(overhead_ms, dtype=float)
    if samples.size == 0:
        raise ValueError("no overhead samples: calibrate with at least one request")
    draws = rng.choice(samples, size=len(results))
    return [_with_latency(r, r.latency_ms + float(d)) if r.outcome.completed and r.latency_ms is not None else r
            for r, d in zip(results, draws)]


def overhead_samples(calibration: Sequence[Mapping[str, float]]) -> np.ndarray:
    """``client_ms - slot_ms`` of each calibration request (closed loop on the idle server)."""
    return np.asarray([c["client_ms"] - c["slot_ms"] for c in calibration], dtype=float)


@dataclasses.dataclass(frozen=True, slots=True)
class Gap:
    """Live against simulated on one view: the target is P95 within 10% and violations within 2 points."""

    view: str
    live: Mapping[str, Any]  # summaries (scheduler.summary.summarize)
    sim: Mapping[str, Any]

    @property
    def violation_points(self) -> float:
        return self.sim["violation_ratio"] - self.live["violation_ratio"]

    def rel(self, key: str) -> float | None:
        live, sim = self.live[key], self.sim[key]
        return None if live in (None, 0) or sim is None else (sim - live) / live

    @property
    def met(self) -> bool:
        p95 = self.rel("p95_ms")
        return p95 is not None and abs(p95) <= P95_TOLERANCE and abs(self.violation_points) <= VIOLATION_TOLERANCE

    def row(self) -> list[str]:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:+.1f}%"

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        return [self.view, f"{100 * self.live['violation_ratio']:.2f}", f"{100 * self.sim['violation_ratio']:.2f}",
                f"{100 * self.violation_points:+.2f}", ms(self.live["p50_ms"]), ms(self.sim["p50_ms"]),
                pct(self.rel("p50_ms")), ms(self.live["p95_ms"]), ms(self.sim["p95_ms"]), pct(self.rel("p95_ms")),
                "yes" if self.met else "no"]

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "live_violation_ratio": self.live["violation_ratio"],
                "sim_violation_ratio": self.sim["violation_ratio"], "violation_points": self.violation_points,
                "live_p50_ms": self.live["p50_ms"], "sim_p50_ms": self.sim["p50_ms"], "p50_rel": self.rel("p50_ms"),
                "live_p95_ms": self.live["p95_ms"], "sim_p95_ms": self.sim["p95_ms"], "p95_rel": self.rel("p95_ms"),
                "target_met": self.met}


GAP_HEADER = ["view", "live viol %", "sim viol %", "diff (points)", "live P50", "sim P50", "P50 err",
              "live P95", "sim P95", "P95 err", "target met"]


def slots(results: Sequence[RequestResult]) -> list[tuple[str, str, int, float]]:
    """The distinct slots behind completed results: (model, exit, batch size, slot ms).

    Every request of a slot reports the same ``slot_ms``, so equal tuples are one slot (counted once
    per ``batch_size`` requests that report it)."""
    counts: dict[tuple[str, str, int, float], int] = defaultdict(int)
    for r in results:
        if r.outcome.completed and r.slot_ms is not None and r.exit is not None and r.batch_size:
            counts[(r.request.model, r.exit, int(r.batch_size), float(r.slot_ms))] += 1
    out = []
    for (model, exit, batch, slot_ms), n in counts.items():
        out.extend([(model, exit, batch, slot_ms)] * max(1, round(n / batch)))
    return out


def slot_rows(slot_list: Sequence[tuple[str, str, int, float]], profile: Profile,
              ) -> tuple[list[str], list[list[str]], dict[str, float]]:
    """Measured against profiled slot times per (model, exit), pooled over batch sizes.

    For each slot, ratio = measured / the profile's mean at its (model, exit, batch); the table gives
    the mean and p95 of those ratios and how often a slot ran past the profile's p95. The overall
    figures (all slots) come back as a dict too."""
    groups: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for model, exit, batch, slot_ms in slot_list:
        d = profile.distribution(model, exit, batch)
        groups[(model, exit)].append((slot_ms, d["mean"], d["p95"]))
    header = ["model", "exit", "slots", "measured mean ms", "profile mean ms", "mean error", "p95 of ratio",
              "over profile p95"]
    rows = []
    everything: list[tuple[float, float, float]] = []
    order = sorted(groups, key=lambda k: (k[0], profile.model(k[0]).exit_index(k[1])))
    for model, exit in order:
        g = groups[(model, exit)]
        everything += g
        rows.append([model, exit, *_slot_stats(g)])
    overall = _slot_summary(everything)
    if everything:
        rows.append(["all", "", *_slot_stats(everything)])
    return header, rows, overall


def _slot_summary(g: Sequence[tuple[float, float, float]]) -> dict[str, float]:
    if not g:
        return {"slots": 0}
    a = np.asarray(g)
    ratio = a[:, 0] / a[:, 1]
    measured, profiled = float(a[:, 0].mean()), float(a[:, 1].mean())
    return {"slots": len(g), "measured_mean_ms": measured, "profile_mean_ms": profiled,
            "mean_rel_error": measured / profiled - 1.0, "ratio_p95": float(np.percentile(ratio, 95)),
            "over_p95_share": float(np.mean(a[:, 0] > a[:, 2]))}


def _slot_stats(g: Sequence[tuple[float, float, float]]) -> list[str]:
    s = _slot_summary(g)
    return [str(s["slots"]), f"{s['measured_mean_ms']:.2f}", f"{s['profile_mean_ms']:.2f}",
            f"{100 * s['mean_rel_error']:+.1f}%", f"{s['ratio_p95']:.2f}x", f"{100 * s['over_p95_share']:.1f}%"]


# -- the serving environment, measured at load -------------------------------------------------------

def slot_ratios(slot_list: Sequence[tuple[str, str, int, float]], profile: Profile,
                min_per_model: int = 20) -> dict[str, np.ndarray]:
    """Per model, the measured slot times over the profile's mean at the same (exit, batch); a model with
    fewer than ``min_per_model`` slots gets every model's ratios pooled (key ``"*"`` holds the pool)."""
    per: dict[str, list[float]] = defaultdict(list)
    for model, exit, batch, slot_ms in slot_list:
        per[model].append(slot_ms / profile.distribution(model, exit, batch)["mean"])
    pool = np.asarray([v for vs in per.values() for v in vs], dtype=float)
    if pool.size == 0:
        raise ValueError("no measured slots to take slot-time ratios from")
    out = {m: np.asarray(v, dtype=float) for m, v in per.items() if len(v) >= min_per_model}
    out["*"] = pool
    return out


class MeasuredSlotExecutor:
    """The simulator's executor with slot times as the live worker measured them at load: the profile's
    mean for the slot's (model, exit, batch) times a ratio drawn from the measured ratios of that model."""

    def __init__(self, profile: Profile, clock: Any, rng: np.random.Generator, ratios: Mapping[str, np.ndarray]):
        self.profile = profile
        self.clock = clock
        self.rng = rng
        self.ratios = ratios

    def run(self, plan: Any) -> Any:
        from scheduler.types import SlotResult

        assert plan.model is not None and plan.exit is not None, "cannot run an idle plan"
        ratios = self.ratios.get(plan.model, self.ratios["*"])
        mean = self.profile.distribution(plan.model, plan.exit, plan.batch_size)["mean"]
        slot_ms = mean * float(ratios[self.rng.integers(len(ratios))])
        self.clock.sleep(slot_ms / 1000.0)
        return SlotResult(slot_ms=slot_ms, exits=(plan.exit,) * plan.batch_size)


def _outside_ms(r: RequestResult) -> float | None:
    """Client latency minus the worker's own time (queue + slot), for a completed request with all three."""
    if r.outcome.completed and r.latency_ms is not None and r.queue_ms is not None and r.slot_ms is not None:
        return r.latency_ms - r.queue_ms - r.slot_ms
    return None


def outside_worker_ms(results: Sequence[RequestResult]) -> np.ndarray:
    """Per completed request: client latency minus the worker's own time (queue + slot): the client,
    HTTP and Ray Serve proxy part of its latency."""
    return np.asarray([x for r in results if (x := _outside_ms(r)) is not None], dtype=float)


def frontend_waits(arrivals_s: Sequence[float], service_ms: float, servers: int) -> np.ndarray:
    """Waits (ms) of a FIFO queue with ``servers`` servers and a fixed service time: the machine's cores
    spending ``service_ms`` of CPU on each request's HTTP path (client, proxy, the worker's request
    handling) before the engine sees it. Bursts beyond ``servers / service_ms`` build a backlog."""
    import heapq

    if servers < 1 or service_ms < 0:
        raise ValueError(f"need servers >= 1 and service_ms >= 0, got {servers}, {service_ms}")
    free = [0.0] * servers
    waits = np.empty(len(arrivals_s))
    for i, t in enumerate(arrivals_s):
        start = max(t, heapq.heappop(free))
        waits[i] = (start - t) * 1000.0
        heapq.heappush(free, start + service_ms / 1000.0)
    return waits


def shifted(results: Sequence[RequestResult], extra_ms: Sequence[float]) -> list[RequestResult]:
    """Results of a simulation run on shifted arrivals, as the client sees them: each completed
    request's latency plus its ``extra_ms`` (time before the engine saw it, and after), re-judged
    against its deadline from the client's send time."""
    out = []
    for r, extra in zip(results, extra_ms):
        if r.outcome.completed and r.latency_ms is not None:
            out.append(_with_latency(r, r.latency_ms + float(extra)))
        else:
            out.append(r)
    return out


class QuantileMap:
    """A simulated time mapped to the measured time at the same quantile: fitted on one traffic (the calibration
    at load: its simulated and its live times in the worker), applied to another (the trace's simulation). It
    corrects what the simulator leaves out of the worker's time (the engine's reaction, the handler's time,
    slower slots under load) without knowing which; the ranks, and so the scheduling, stay the simulator's."""

    def __init__(self, simulated_ms: Sequence[float], measured_ms: Sequence[float]) -> None:
        sim = np.sort(np.asarray(simulated_ms, dtype=float))
        live = np.sort(np.asarray(measured_ms, dtype=float))
        sim, live = sim[np.isfinite(sim)], live[np.isfinite(live)]
        if sim.size == 0 or live.size == 0:
            raise ValueError("need simulated and measured times to map between")
        self.simulated, self.measured = sim, live

    def __call__(self, values_ms: Sequence[float]) -> np.ndarray:
        """Each value's quantile among the simulated times (NaN stays NaN), as a measured time."""
        v = np.asarray(values_ms, dtype=float)
        q = np.searchsorted(self.simulated, v, side="right") / self.simulated.size
        out = np.quantile(self.measured, np.clip(q, 0.0, 1.0))
        return np.where(np.isfinite(v), out, np.nan)


LOCAL_WINDOW_S = 0.5  # the load a request's HTTP path meets: arrivals in the half second up to it


def local_rates_rps(arrivals_s: Sequence[float], window_s: float = LOCAL_WINDOW_S) -> np.ndarray:
    """Per arrival (sorted), the arrivals in the ``window_s`` up to and including it, per second."""
    a = np.asarray(arrivals_s, dtype=float)
    if a.size > 1 and np.any(np.diff(a) < 0):
        raise ValueError("arrivals must be sorted")
    first = np.searchsorted(a, a - window_s, side="right")
    return (np.arange(a.size) - first + 1) / window_s


class RateOverhead:
    """Time outside the worker (client, HTTP, proxy) as a function of the local arrival rate.

    Calibration samples are binned by their local rate (``bins`` quantile bins); a request is given a
    sample of the bin its own local rate falls in (the outermost bins beyond the calibrated range), so a
    burst in the replayed trace meets the HTTP-path delays measured at a burst's rate, where samples
    pooled over all rates would spread them over every request.

    With each sample's time in the worker (``worker_ms``: queue + slot) it can also draw **coupled**
    (``draw_coupled``): on two shared cores one CPU contention slows the HTTP path and the worker together,
    so a request that waited long in the worker tends to wait long outside it too (rank correlation 0.4-0.6
    within a rate bin at load on this box). Independent draws lose that and with it 7-10% of the client's
    P95 (the live replay's own components, recombined independently). Per bin, the calibration's rank
    correlation sets a Gaussian copula between a simulated request's worker time (its rank among the
    simulated requests of the bin) and the quantile of the bin's outside samples it gets."""

    def __init__(self, rates_rps: Sequence[float], samples_ms: Sequence[float], bins: int = 6,
                 worker_ms: Sequence[float] | None = None) -> None:
        rates, samples = np.asarray(rates_rps, dtype=float), np.asarray(samples_ms, dtype=float)
        if rates.size != samples.size or samples.size == 0:
            raise ValueError("need one local rate per overhead sample, and at least one sample")
        edges = np.unique(np.quantile(rates, np.linspace(0.0, 1.0, max(bins, 1) + 1)))
        self.inner_edges = edges[1:-1]
        which = np.searchsorted(self.inner_edges, rates, side="right")
        self.bins = [samples[which == k] for k in range(self.inner_edges.size + 1)]
        self.bin_rates = [float(np.median(rates[which == k])) for k in range(len(self.bins))]
        self.correlations: list[float] | None = None  # per bin, on the normal scale (the copula's parameter)
        if worker_ms is not None:
            worker = np.asarray(worker_ms, dtype=float)
            if worker.size != samples.size:
                raise ValueError("need one worker time per overhead sample")
            self.correlations = [_normal_correlation(worker[which == k], b) for k, b in enumerate(self.bins)]

    def _which(self, rates_rps: Sequence[float]) -> np.ndarray:
        return np.searchsorted(self.inner_edges, np.asarray(rates_rps, dtype=float), side="right")

    def draw(self, rates_rps: Sequence[float], rng: np.random.Generator) -> np.ndarray:
        return np.asarray([rng.choice(self.bins[k]) for k in self._which(rates_rps)], dtype=float)

    def draw_coupled(self, rates_rps: Sequence[float], worker_ms: Sequence[float],
                     rng: np.random.Generator) -> np.ndarray:
        """One sample per request, of its rate's bin, at a quantile tied to its worker time's rank among the
        requests of that bin by the bin's measured correlation (no worker time, NaN: ranked last)."""
        if self.correlations is None:
            raise ValueError("coupled draws need the calibration's worker times (worker_ms)")
        which, worker = self._which(rates_rps), np.asarray(worker_ms, dtype=float)
        if worker.size != which.size:
            raise ValueError("need one worker time per request")
        out = np.empty(worker.size)
        for k in np.unique(which):
            idx = np.flatnonzero(which == k)
            rho = self.correlations[k]
            z = rho * _normal_scores(worker[idx]) + math.sqrt(1.0 - rho * rho) * rng.standard_normal(idx.size)
            ordered = np.sort(self.bins[k])
            quantile = np.asarray([_NORMAL.cdf(float(v)) for v in z])
            out[idx] = ordered[np.minimum((quantile * ordered.size).astype(int), ordered.size - 1)]
        return out

    def describe(self) -> str:
        corr = self.correlations or [None] * len(self.bins)
        return ", ".join(f"{rate:.0f} req/s: p50 {np.percentile(s, 50):.1f} / p95 {np.percentile(s, 95):.1f} ms"
                         + (f" (worker-time correlation {c:.2f})" if c is not None else "")
                         for rate, s, c in zip(self.bin_rates, self.bins, corr))


_NORMAL = NormalDist()


def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Each value's rank, as a standard normal quantile ((rank + 0.5) / n; ties in order, NaN last)."""
    ranks = np.empty(x.size)
    ranks[np.argsort(x, kind="stable")] = np.arange(x.size)
    return np.asarray([_NORMAL.inv_cdf((r + 0.5) / x.size) for r in ranks])


def _normal_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of ``a`` and ``b``, as the correlation of a Gaussian copula
    (2 sin(pi rho_s / 6)); 0 for fewer than 3 pairs or a constant side, kept inside (-0.99, 0.99)."""
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    rank_a, rank_b = np.argsort(np.argsort(a, kind="stable")), np.argsort(np.argsort(b, kind="stable"))
    rho_s = float(np.corrcoef(rank_a, rank_b)[0, 1])
    return float(np.clip(2.0 * math.sin(math.pi * rho_s / 6.0), -0.99, 0.99))


def rate_samples(results: Sequence[RequestResult], window_s: float = LOCAL_WINDOW_S
                 ) -> tuple[list[float], list[float], list[float]]:
    """Of one replay: each completed request's local arrival rate at its arrival, its time outside the
    worker (as in ``outside_worker_ms``) and its time in the worker (queue + slot)."""
    ordered = sorted(results, key=lambda r: r.request.arrival_s)
    rates = local_rates_rps([r.request.arrival_s for r in ordered], window_s)
    keep = [(float(rate), x, r.queue_ms + r.slot_ms) for rate, r in zip(rates, ordered)
            if (x := _outside_ms(r)) is not None and r.queue_ms is not None and r.slot_ms is not None]
    return [k[0] for k in keep], [k[1] for k in keep], [k[2] for k in keep]


def outside_by_rate(results: Sequence[RequestResult], window_s: float = LOCAL_WINDOW_S) -> RateOverhead:
    """``RateOverhead`` of a calibration replay: time outside the worker against the local arrival rate, with
    each sample's time in the worker (for coupled draws)."""
    rates, outside, worker = rate_samples(results, window_s)
    return RateOverhead(rates, outside, worker_ms=worker)
