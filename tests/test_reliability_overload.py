"""Overload on a real Ray Serve worker: a 5x-capacity burst for 60 s from the open-loop replayer.

The worker serves one model through the profile executor (slots sleep their profiled time on the
real clock), so its capacity is known exactly and small enough for the HTTP path of a 2-core box:
two requests per 320 ms slot at the shallowest exit, 6.25 requests/s. The burst offers 31 req/s
for 60 s (about 1,900 requests), then a recovery phase at 80% of capacity. The project's default
policy (``scheduler.policies.DEFAULT_POLICY``) schedules; a separate probe process polls the
health endpoint every 50 ms and samples /metrics twice a second throughout.

Checked: the worker stays up (same process, every health poll answered, 90% of them within
100 ms and none blocked: the tail depends on what else this shared machine runs, so the test
prints it and ``edgeserving bench soak --overload`` reports it), every request gets an answer, the
requests that can be met still are (goodput stays near capacity: the policy sheds the hopeless),
service is back to normal 3 s after the burst, the queue and the open requests never exceed
their bounds, resident memory stays flat, and the server's counts equal the client's, outcome by
outcome. The module's teardown checks requests in = sum of outcomes with empty queues.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import httpx
import numpy as np
import pytest

from bench.probe import Probe
from scheduler.policies import DEFAULT_POLICY
from scheduler.serving.metrics import reason_label
from tests.conftest import metric_sum, scrape, settled_metrics, write_profile
from workloads.generators import generate
from workloads.replay import replay_http

pytestmark = [pytest.mark.serve, pytest.mark.slow]

SERVE_CLUSTER = {"gpus": 1, "apps": {}}  # filled by the fixture: the profile lives in a temp dir
SLOT_MS = {"m": {"e1": {1: 240.0, 2: 320.0}, "e2": {1: 480.0, 2: 640.0}}}
BMAX = 2
CAPACITY_RPS = BMAX / (SLOT_MS["m"]["e1"][BMAX] / 1000.0)  # full batches at the shallowest exit, back to back
DEADLINE_MS = 2000.0
QUEUE_BOUND = 32
BURST_FACTOR = 5.0
BURST_S = 60.0
RECOVERY_S = 12.0
RECOVERY_LOAD = 0.8
RECOVERED_AFTER_S = 3.0  # "a few seconds"
# The default policy may keep hopeless requests to salvage spare time, dropping them at most 10 s past
# their deadline: the client waits longer than that, so every answer is the server's.
CLIENT_GRACE_MS = 15_000.0


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    profile = write_profile(tmp_path_factory.mktemp("overload") / "overload.json", SLOT_MS)
    SERVE_CLUSTER["apps"] = {"ov": {"args": {
        "executor": "profile", "profile": str(profile), "policy": DEFAULT_POLICY, "bmax": BMAX,
        "queue_bound": QUEUE_BOUND, "reject_infeasible": True, "models": {"m": {"input_shape": [4], "num_classes": 5,
                                                     "default_deadline_ms": DEADLINE_MS}}}}}
    return request.getfixturevalue("live_cluster")


def outcome_counts(samples: dict[str, float]) -> Counter:
    return Counter({o: metric_sum(samples, "edgeserving_requests_total", outcome=o)
                    for o in ("MET", "LATE", "REJECTED", "DROPPED", "FAILED")})


def test_admission_refuses_early_with_a_reason(cluster):
    """A deadline even the shallowest exit cannot meet is refused at once (503 deadline_infeasible, the
    config asks for it); past the queue bound, 503 queue_full with Retry-After. Neither enters a queue."""
    url = cluster.url("ov")
    r = httpx.post(f"{url}/v1/infer", json={"model": "m", "inputs": [1, 2, 3, 4], "deadline_ms": 100})
    assert (r.status_code, r.json()["outcome"], r.json()["reason"]) == (503, "REJECTED", "deadline_infeasible")
    assert "retry-after" not in r.headers  # retrying the same deadline cannot help

    async def flood(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as c:
            return await asyncio.gather(*(c.post(f"{url}/v1/infer", json={
                "model": "m", "inputs": [1, 2, 3, 4], "deadline_ms": 30_000}) for _ in range(n)))

    with Probe(url, health_interval_s=1.0, metrics_interval_s=0.1) as probe:
        answers = asyncio.run(flood(QUEUE_BOUND + 12))
    full = [a for a in answers if a.json()["reason"] == "queue_full"]
    assert len(full) >= 12 - BMAX
    assert all(a.status_code == 503 and a.headers["retry-after"] == "1" and a.json()["outcome"] == "REJECTED"
               for a in full)
    assert all(a.json()["outcome"] == "MET" for a in answers if a not in full)
    assert probe.report is not None and probe.report.max_of("queue_depth") <= QUEUE_BOUND


def test_a_5x_burst_for_60_s_is_answered_shed_and_recovered_from(cluster):
    url = cluster.url("ov")
    rng = np.random.default_rng(8)
    burst = generate("poisson", {"m": BURST_FACTOR * CAPACITY_RPS}, [(DEADLINE_MS, 1.0)], BURST_S, rng)
    calm = generate("poisson", {"m": RECOVERY_LOAD * CAPACITY_RPS}, [(DEADLINE_MS, 1.0)], RECOVERY_S, rng)
    rows = burst + [replace(r, arrival_s=r.arrival_s + BURST_S, request_id=f"calm-{r.request_id}") for r in calm]
    before = scrape(url)

    with Probe(url, health_interval_s=0.05, metrics_interval_s=0.5) as probe:
        report = replay_http(rows, url, grace_ms=CLIENT_GRACE_MS)
    probe_report = probe.report
    assert probe_report is not None
    results = report.results

    # Every request got the server's answer: nothing timed out, failed in transport or broke the contract.
    not_answered = [r.reason for r in results if r.reason and r.reason.startswith(("client_", "protocol_error"))]
    assert not not_answered, not_answered[:5]
    by = Counter(r.outcome.value for r in results)
    assert by["FAILED"] == 0, Counter(r.reason for r in results if r.outcome.value == "FAILED")
    # By reason label: a displaced late request's reason says why after the label.
    shed = Counter(reason_label(r.reason) for r in results if r.outcome.value in ("REJECTED", "DROPPED"))
    assert set(shed) <= {"queue_full", "deadline_infeasible", "deadline_unreachable"}, shed

    # Requests that could be met still are: near-capacity goodput all through the burst.
    in_burst = [r for r in results if r.request.arrival_s < BURST_S]
    met_rps = sum(r.outcome.value == "MET" for r in in_burst) / BURST_S
    print(f"\nburst: {len(in_burst)} requests at {BURST_FACTOR:g}x capacity ({CAPACITY_RPS:g} req/s): "
          f"{met_rps:.2f} MET/s; outcomes {dict(by)}; shed {dict(shed)}")
    assert met_rps >= 0.6 * CAPACITY_RPS, f"goodput {met_rps:.2f} req/s collapsed under overload"

    # Back to normal a few seconds after the burst.
    settled = [r for r in results if r.request.arrival_s >= BURST_S + RECOVERED_AFTER_S]
    met_after = sum(r.outcome.value == "MET" for r in settled) / len(settled)
    missed = Counter((r.outcome.value, reason_label(r.reason)) for r in settled if r.outcome.value != "MET")
    print(f"recovery: {met_after:.1%} of {len(settled)} requests MET from {RECOVERED_AFTER_S:g} s after the burst; "
          f"the others {dict(missed)}")
    assert met_after >= 0.9

    # The worker stayed up and its health endpoint kept answering quickly.
    health = probe_report.health_summary()
    print(f"health: {health}")
    assert not probe_report.health_failures, probe_report.health_failures[:5]
    assert health["polls"] >= 0.5 * (BURST_S + RECOVERY_S) / 0.05
    # Not queued behind inference work (that would cost whole slots, hundreds of ms, on most polls) and
    # never blocked: the tail above 100 ms is this shared machine's scheduling noise, reported, not asserted.
    assert np.percentile(probe_report.health_ms, 90) <= 100.0, health
    assert health["max_ms"] <= 2000.0, health
    pids = {pid for s in probe_report.samples for pid in s.resident_bytes}
    assert len(pids) == 1, f"the worker process changed under load: {pids}"

    # Bounded: the queue, the open requests and the resident memory.
    assert probe_report.max_of("queue_depth") <= QUEUE_BOUND
    # Open requests: the queue, the running slot, and the requests the running slot's plan dropped (the
    # engine answers those when the slot ends).
    assert probe_report.max_of("inflight") <= 2 * QUEUE_BOUND + BMAX
    rss = [b for _, b in probe_report.resident_of(pids.pop())]
    print(f"resident memory: {rss[0] / 2**20:.1f} MiB at the start, max {max(rss) / 2**20:.1f} MiB")
    assert max(rss) - rss[0] <= 64 * 2**20

    # The server's counts are the client's, outcome by outcome.
    after = settled_metrics(url)
    assert metric_sum(after, "edgeserving_requests_received_total") - \
        metric_sum(before, "edgeserving_requests_received_total") == len(results)
    assert outcome_counts(after) - outcome_counts(before) == +by
