"""The open-loop replayer against a real Ray Serve deployment (ray_config.yaml, the torch demo zoo).

A short trace of about 90 requests mixes loose deadlines (MET), impossible ones (shed: DROPPED by
the clockwork policy) and a same-instant burst into a queue bound of 4 (some REJECTED queue_full):
every request must come back with exactly one row and one outcome, and the worker's Prometheus
counters must count the same requests, outcomes and exits as the replayer did. The module's
teardown checks the server's own accounting (requests in = outcomes, queues empty).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.conftest import demo_zoo_args, metric_sum, scrape
from workloads.replay import replay_http
from workloads.trace import TraceRow

pytestmark = pytest.mark.serve

SERVE_CLUSTER = {"gpus": 1, "apps": {}}  # filled by the module fixture (the zoo may come from the cache)
OUTCOMES = ("MET", "LATE", "REJECTED", "DROPPED", "FAILED")


@pytest.fixture(scope="module")
def cluster(request):
    zoo_args = demo_zoo_args()
    SERVE_CLUSTER["apps"] = {"replay": {"args": {**zoo_args, "policy": "clockwork", "queue_bound": 4}}}
    return request.getfixturevalue("live_cluster")


def _trace(models: list[str]) -> list[TraceRow]:
    rng = np.random.default_rng(7)
    rows = []
    for i, t in enumerate(np.sort(rng.uniform(0.0, 2.0, 50))):  # loose, and impossible (0.3 ms) deadlines
        rows.append(TraceRow(float(t), models[i % len(models)], 0.3 if i % 5 == 0 else 500.0, f"r{i}", input_seed=i))
    heavy = models[-1]  # the heavy model: a burst of 40 at one instant against a queue bound of 4
    rows += [TraceRow(2.2, heavy, 1000.0, f"burst{k}", input_seed=100 + k) for k in range(40)]
    return sorted(rows, key=lambda r: r.arrival_s)


def _counts(samples: dict[str, float]) -> dict[str, float]:
    out = {"received": metric_sum(samples, "edgeserving_requests_received_total")}
    out.update({o: metric_sum(samples, "edgeserving_requests_total", outcome=o) for o in OUTCOMES})
    return out


def test_every_request_has_one_row_and_one_outcome_and_the_metrics_agree(cluster):
    import httpx

    url = cluster.url("replay")
    models = [m["name"] for m in httpx.get(f"{url}/v1/models").json()["models"]]
    rows = _trace(models)
    before = scrape(url)
    report = replay_http(rows, url, judge="server", label="clockwork")
    after = scrape(url)

    # One row per trace row, in trace order, one outcome each; nothing lost on the client side.
    assert [r.request.id for r in report.results] == [r.request_id for r in rows]
    assert all(r.outcome.value in OUTCOMES for r in report.results)
    client_failures = [r.reason for r in report.results if r.reason and r.reason.startswith("client_")]
    assert not client_failures, client_failures
    seen = Counter(r.outcome.value for r in report.results)
    assert seen["MET"] > 0 and seen["DROPPED"] > 0, seen  # loose deadlines met, impossible ones shed
    assert report.summary()["requests"] == len(rows)

    # The server counted exactly the same requests, outcomes and exits.
    b, a = _counts(before), _counts(after)
    assert a["received"] - b["received"] == len(rows)
    for o in OUTCOMES:
        assert a[o] - b[o] == seen[o], (o, a[o] - b[o], seen[o])
    for model in models:
        exits = Counter(r.exit for r in report.results if r.request.model == model and r.outcome.completed)
        for exit, n in exits.items():
            counted = (metric_sum(after, "edgeserving_exits_total", model=model, exit=exit)
                       - metric_sum(before, "edgeserving_exits_total", model=model, exit=exit))
            assert counted == n, (model, exit, counted, n)


def test_propagated_deadlines_reach_the_worker_and_an_expired_one_is_refused(cluster):
    import time

    import httpx

    url = cluster.url("replay")
    models = [m["name"] for m in httpx.get(f"{url}/v1/models").json()["models"]]
    rows = [TraceRow(0.02 * i, models[i % len(models)], 2000.0, f"p{i}", input_seed=i) for i in range(12)]
    before = scrape(url)
    report = replay_http(rows, url, judge="server", propagate_deadlines=True)
    assert [r.outcome.value for r in report.results] == ["MET"] * len(rows)
    # Sent 10 s ago (by the shared clock of one machine) with a 500 ms deadline: lost on the way.
    shape = httpx.get(f"{url}/v1/models").json()["models"][0]["input_shape"]
    resp = httpx.post(f"{url}/v1/infer", json={"model": models[0], "inputs": np.zeros(shape).tolist(),
                                               "deadline_ms": 500},
                      headers={"X-Request-Sent-At": f"{time.time() - 10.0:.6f}"})
    after = scrape(url)
    body = resp.json()
    assert resp.status_code == 503 and body["outcome"] == "REJECTED", body
    assert body["reason"].startswith("deadline_expired: sent 10")
    transits = (metric_sum(after, "edgeserving_request_transit_seconds_count")
                - metric_sum(before, "edgeserving_request_transit_seconds_count"))
    assert transits == len(rows) + 1
    expired = (metric_sum(after, "edgeserving_requests_total", reason="deadline_expired")
               - metric_sum(before, "edgeserving_requests_total", reason="deadline_expired"))
    assert expired == 1


def test_calls_of_several_samples_account_each_sample_as_one_request(cluster):
    import httpx

    url = cluster.url("replay")
    models = [m["name"] for m in httpx.get(f"{url}/v1/models").json()["models"]]
    rows = [TraceRow(0.05 * i, models[i % len(models)], 2000.0, f"c{i}", input_seed=i) for i in range(6)]
    before = scrape(url)
    report = replay_http(rows, url, judge="server", samples_per_call=3)
    after = scrape(url)
    assert [r.request.id for r in report.results] == [f"c{i}.{k}" for i in range(6) for k in range(3)]
    assert [r.outcome.value for r in report.results] == ["MET"] * 18, [r.reason for r in report.results]
    assert all(r.exit and r.batch_size >= 1 and r.slot_ms > 0 for r in report.results)
    assert report.summary()["requests"] == 18 and report.to_json()["replay"]["trace_rows"] == 18
    b, a = _counts(before), _counts(after)
    assert a["received"] - b["received"] == 18 and a["MET"] - b["MET"] == 18
    # The three samples of a call share its round trip (the client has no sample's answer before the call's).
    for i in range(6):
        assert len({r.latency_ms for r in report.results[3 * i:3 * i + 3]}) == 1
