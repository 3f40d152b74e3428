"""The numbers of ``edgeserving bench soak``, as pure functions of replay results and probe samples.

- ``workload``: Poisson arrivals over the served models, each at its default deadline.
- ``capacity_step``: one step of the capacity search (does this rate pass?).
- ``per_bin``: outcomes and violation ratio per time bin (a minute) by arrival time.
- ``memory_drift``: a worker process's resident memory, first bin against last bin.
- ``accounting``: the server's counts against the client's, outcome by outcome.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scheduler.types import Outcome, RequestResult
from workloads.trace import TraceRow

OUTCOMES = tuple(o.value for o in Outcome)
CLIENT_SIDE = ("client_", "protocol_error")  # reasons the replayer gives when the server's answer is missing


def workload(deadlines_ms: Mapping[str, float], rate_rps: float, seconds: float, rng: np.random.Generator,
             start_s: float = 0.0, tag: str = "") -> list[TraceRow]:
    """Poisson arrivals at ``rate_rps`` in all, split evenly over the models, each with its deadline."""
    from workloads.generators import generate

    share = rate_rps / len(deadlines_ms)
    rows = [r for m, d in deadlines_ms.items() for r in generate("poisson", {m: share}, d, seconds, rng)]
    rows.sort(key=lambda r: r.arrival_s)
    return [replace(r, arrival_s=r.arrival_s + start_s, request_id=f"{tag}{i}", input_seed=i)
            for i, r in enumerate(rows)]


def reasons(results: Sequence[RequestResult]) -> dict[str, int]:
    """How many requests ended each way other than MET/LATE: ``OUTCOME reason`` (the reason cut at its
    first ':' and at 60 characters, as the metrics label it), most frequent first."""
    counts = Counter(f"{r.outcome.value} {(r.reason or '').split(':', 1)[0][:60]}".strip()
                     for r in results if not r.outcome.completed)
    return dict(counts.most_common())


def not_answered(results: Sequence[RequestResult]) -> list[RequestResult]:
    """Requests that ended without the server's answer (client timeout, transport or protocol error)."""
    return [r for r in results if r.outcome is Outcome.FAILED and (r.reason or "").startswith(CLIENT_SIDE)]


@dataclass(frozen=True, slots=True)
class CapacityStep:
    rate_rps: float
    requests: int
    met_ratio: float  # MET / all, as the server judged (its deadline counts from its own receipt)
    throughput_ratio: float  # answered per second / offered per second
    fell_behind: bool  # the replayer could not keep its own schedule: the result says little
    passed: bool


def capacity_step(rate_rps: float, seconds: float, results: Sequence[RequestResult], wall_s: float,
                  fell_behind: bool, slo: float) -> CapacityStep:
    """A rate passes when at least ``slo`` of its requests are MET and answers keep up with the offer
    (no backlog building up in front of the worker: the whole run ends within 1 / ``slo`` of its length)."""
    n = len(results)
    met = sum(r.outcome is Outcome.MET for r in results) / n if n else 0.0
    throughput = min(seconds / wall_s, 1.0) if wall_s > 0 else 0.0
    ok = n > 0 and met >= slo and throughput >= slo and not not_answered(results) and not fell_behind
    return CapacityStep(rate_rps, n, met, throughput, fell_behind, ok)


def per_bin(results: Sequence[RequestResult], bin_s: float) -> list[dict[str, Any]]:
    """Per bin of arrival time: requests, outcome counts, violation ratio (everything but MET) and the
    client-side p99 latency of completed requests."""
    bins: dict[int, list[RequestResult]] = {}
    for r in results:
        bins.setdefault(int(r.request.arrival_s // bin_s), []).append(r)
    out = []
    for b in sorted(bins):
        rs = bins[b]
        counts = Counter(r.outcome.value for r in rs)
        lat = [r.latency_ms for r in rs if r.outcome.completed and r.latency_ms is not None]
        out.append({"bin": b, "start_s": b * bin_s, "requests": len(rs), **{o: counts.get(o, 0) for o in OUTCOMES},
                    "violation_ratio": 1.0 - counts.get("MET", 0) / len(rs),
                    "p99_latency_ms": float(np.percentile(lat, 99)) if lat else None})
    return out


@dataclass(frozen=True, slots=True)
class Drift:
    pid: str
    reference_bytes: float  # median over the first bin
    final_bytes: float  # median over the last bin
    max_bytes: float

    @property
    def ratio(self) -> float:
        return (self.final_bytes - self.reference_bytes) / self.reference_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "reference_mib": self.reference_bytes / 2**20, "final_mib": self.final_bytes / 2**20,
                "max_mib": self.max_bytes / 2**20, "drift": self.ratio}


def memory_drift(series: Sequence[tuple[float, float]], start_s: float, end_s: float, bin_s: float) -> Drift | None:
    """Drift of one process over ``[start_s, end_s)``: the median of its first ``bin_s`` against the
    median of its last (medians: a single sample taken mid-allocation does not decide)."""
    inside = [(t, b) for t, b in series if start_s <= t < end_s]
    first = [b for t, b in inside if t < start_s + bin_s]
    last = [b for t, b in inside if t >= end_s - bin_s]
    if not first or not last:
        return None
    return Drift("", float(np.median(first)), float(np.median(last)), max(b for _, b in inside))


def accounting(results: Sequence[RequestResult], before: Mapping[str, float], after: Mapping[str, float]
               ) -> dict[str, Any]:
    """The client's counts against the server's (``after`` - ``before``, from /metrics): requests
    received, and each outcome; plus what is left in flight or queued. ``ok`` when all agree."""
    client = Counter(r.outcome.value for r in results)
    server = {o: after.get(o, 0.0) - before.get(o, 0.0) for o in OUTCOMES}
    received = after["received"] - before["received"]
    ok = (received == len(results) == sum(server.values()) and all(server[o] == client.get(o, 0) for o in OUTCOMES)
          and after["inflight"] == 0 and after["queued"] == 0 and not not_answered(results))
    return {"ok": ok, "sent": len(results), "received": received, "client": {o: client.get(o, 0) for o in OUTCOMES},
            "server": server, "inflight": after["inflight"], "queued": after["queued"],
            "unanswered": len(not_answered(results))}


def server_counts(metrics_text: str) -> dict[str, float]:
    """What ``accounting`` needs from one /metrics scrape: outcomes, requests received, in flight, queued."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {o: 0.0 for o in OUTCOMES}
    out.update(received=0.0, inflight=0.0, queued=0.0)
    fields = {"edgeserving_requests_received_total": "received", "edgeserving_inflight_requests": "inflight",
              "edgeserving_queue_depth": "queued"}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "edgeserving_requests_total" and sample.labels.get("outcome") in out:
                out[sample.labels["outcome"]] += sample.value
            elif sample.name in fields:
                out[fields[sample.name]] += sample.value
    return out


def recovery_s(results: Sequence[RequestResult], burst_end_s: float, bin_s: float = 1.0, met: float = 0.95
               ) -> float | None:
    """Seconds after ``burst_end_s`` from which every ``bin_s`` bin of arrivals has at least ``met``
    of its requests MET; None when the last bin still has not."""
    bins: dict[int, list[bool]] = {}
    for r in results:
        if r.request.arrival_s >= burst_end_s:
            bins.setdefault(int((r.request.arrival_s - burst_end_s) // bin_s), []).append(r.outcome is Outcome.MET)
    settled = None
    for b in sorted(bins, reverse=True):
        if np.mean(bins[b]) < met:
            break
        settled = b * bin_s
    return settled
