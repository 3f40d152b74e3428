"""The slack-aware request router: the ranking on a fake clock, its fallback to Ray's default, and
two real workers on logical GPUs under skewed load."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest

from scheduler.serving.router import SlackAwareRouter, SlackRanker
from tests.conftest import metric_sum, scrape, write_profile


def stats(seq: int, backlog_ms: float = 0.0, min_slack_ms: float | None = None, cost_ms: float = 10.0,
          ref_ms: float = 100.0, draining: bool = False) -> dict[str, Any]:
    return {"seq": seq, "queued": 0, "backlog_ms": backlog_ms, "min_slack_ms": min_slack_ms,
            "request_cost_ms": cost_ms, "ref_deadline_ms": ref_ms, "draining": draining}


def ranker(**kw) -> SlackRanker:
    return SlackRanker(np.random.default_rng(0), **kw)


def test_ranks_by_predicted_slack_and_lets_queued_work_drain():
    r = ranker()
    r.observe("a", stats(1, backlog_ms=500), now_s=0.0)
    r.observe("b", stats(1, backlog_ms=50), now_s=0.0)
    assert r.rank(["a", "b"], now_s=0.0) == ["b", "a"]
    assert r.slack_ms("a", 0.0) == -400 and r.slack_ms("b", 0.0) == 50
    assert r.slack_ms("a", 0.3) == pytest.approx(-100)  # 300 ms of its backlog ran meanwhile


def test_a_burst_between_two_reports_is_spread_by_what_was_sent():
    r = ranker()
    r.observe("a", stats(1), now_s=0.0)
    r.observe("b", stats(1), now_s=0.0)
    chosen = []
    for _ in range(10):
        best = r.rank(["a", "b"], now_s=0.0)[0]
        r.routed(best)
        chosen.append(best)
    assert chosen.count("a") == chosen.count("b") == 5


def test_tight_queued_deadlines_count_even_with_equal_backlog():
    r = ranker()
    r.observe("a", stats(1, backlog_ms=20, min_slack_ms=-5), now_s=0.0)  # a queued request already late
    r.observe("b", stats(1, backlog_ms=20, min_slack_ms=60), now_s=0.0)
    assert r.rank(["a", "b"], now_s=0.0) == ["b", "a"]


def test_draining_replicas_go_last():
    r = ranker()
    r.observe("a", stats(1, draining=True), now_s=0.0)
    r.observe("b", stats(1, backlog_ms=900), now_s=0.0)
    assert r.rank(["a", "b"], now_s=0.0) == ["b", "a"]


def test_missing_or_stale_stats_mean_fall_back():
    r = ranker(stale_after_s=1.0)
    r.observe("a", stats(1), now_s=0.0)
    assert r.rank(["a", "b"], now_s=0.0) is None  # b never reported
    r.observe("b", stats(1), now_s=0.0)
    assert r.rank(["a", "b"], now_s=0.5) is not None
    r.observe("a", stats(2), now_s=1.5)  # a keeps reporting, b's seq stopped moving
    r.observe("b", stats(1), now_s=1.5)
    assert r.rank(["a", "b"], now_s=1.5) is None
    with pytest.raises(ValueError, match="stale_after_s"):
        ranker(stale_after_s=0)


# -- the Ray Serve adapter with fake replicas ----------------------------------------------------------------

@dataclass
class FakeReplica:
    replica_id: Any
    routing_stats: dict
    node_id: str = "node"
    availability_zone: str | None = None
    multiplexed_model_ids: set = field(default_factory=set)
    max_ongoing_requests: int = 100

    async def get_queue_len(self, *, deadline_s: float) -> int:
        return 0


def test_router_ranks_fresh_stats_and_hands_stale_ones_to_the_default():
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID

    async def go():
        now = {"s": 0.0}
        dep = DeploymentID(name="Worker", app_name="app")
        router = SlackAwareRouter(deployment_id=dep, handle_source=DeploymentHandleSource.UNKNOWN,
                                  get_curr_time_s=lambda: now["s"])
        router.initialize_state(stale_after_s=1.0)
        reps = [FakeReplica(ReplicaID("busy", deployment_id=dep), stats(1, backlog_ms=800)),
                FakeReplica(ReplicaID("idle", deployment_id=dep), stats(1))]
        router.update_replicas(reps)
        ranked = await router.choose_replicas(reps, None)
        now["s"] = 5.0  # nobody reported since: stale
        fallback = await router.choose_replicas(reps, None)
        return ranked, fallback, router.fallbacks

    ranked, fallback, fallbacks = asyncio.run(go())
    assert [[r.replica_id.unique_id for r in rank] for rank in ranked] == [["idle"], ["busy"]]
    assert fallbacks == 1 and sorted(r.replica_id.unique_id for r in fallback[0]) == ["busy", "idle"]


def test_a_burst_ranked_before_any_request_leaves_is_spread():
    # Serve ranks every request of a burst (one routing task each) before the first is sent; the router
    # must count each ranking, or the whole burst piles onto whichever replica reported a little less work.
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID

    async def go():
        dep = DeploymentID(name="Worker", app_name="app")
        router = SlackAwareRouter(deployment_id=dep, handle_source=DeploymentHandleSource.UNKNOWN,
                                  get_curr_time_s=lambda: 0.0)
        router.initialize_state()
        reps = [FakeReplica(ReplicaID("a", deployment_id=dep), stats(1, backlog_ms=3.0)),
                FakeReplica(ReplicaID("b", deployment_id=dep), stats(1, backlog_ms=5.0))]
        router.update_replicas(reps)
        return [(await router.choose_replicas(reps, None))[0][0].replica_id.unique_id for _ in range(8)]

    firsts = asyncio.run(go())
    assert firsts.count("a") == firsts.count("b") == 4, firsts


# -- two real workers on two logical GPUs ----------------------------------------------------------------

SERVE_CLUSTER = {"gpus": 2, "apps": {}}  # filled in by the fixture below (the profile lives in a temp dir)
HEAVY_MS = {"fast": {"e1": {1: 2.0, 4: 3.0}, "e2": {1: 4.0, 4: 6.0}},
            "slow": {"e1": {1: 300.0, 4: 500.0}, "e2": {1: 600.0, 4: 1000.0}}}


@pytest.fixture(scope="module")
def two_workers(request, tmp_path_factory):
    profile = write_profile(tmp_path_factory.mktemp("router") / "heavy.json", HEAVY_MS)
    SERVE_CLUSTER["apps"] = {"edgeserving": {"replicas": 2, "args": {
        "executor": "profile", "profile": str(profile), "bmax": 4, "queue_bound": 64,
        "models": {"fast": {"input_shape": [2, 3], "num_classes": 10, "default_deadline_ms": 100},
                   "slow": {"input_shape": [4], "num_classes": 5, "default_deadline_ms": 30_000}}}}}
    return request.getfixturevalue("live_cluster")


def answer_from_every_worker(url: str, payload: dict, workers: int, timeout_s: float = 60.0) -> int:
    """Sends ``payload`` one call at a time until ``workers`` distinct workers have answered; returns the
    number of calls. The proxy learns replicas asynchronously after Serve reports the app RUNNING, so this
    makes "both workers are known to the proxy" a checked precondition of the burst below (the burst's
    own pile-up in CI was the router's, fixed in ``SlackAwareRouter.choose_replicas``)."""
    seen: set[str] = set()
    sent = 0
    deadline = time.monotonic() + timeout_s
    while len(seen) < workers:
        assert time.monotonic() < deadline, f"only {sorted(seen)} answered {sent} calls in {timeout_s} s"
        r = httpx.post(f"{url}/v1/infer", json=payload, timeout=30)
        sent += 1
        assert r.status_code == 200, r.text
        seen.add(r.headers["x-edgeserving-worker"])
    return sent


@pytest.mark.serve
def test_new_work_goes_to_the_less_loaded_worker(two_workers):
    url = two_workers.url("edgeserving")
    fast = {"model": "fast", "inputs": [[1, 2, 3], [4, 5, 6]]}
    warm_up = answer_from_every_worker(url, fast, workers=2)

    async def go():
        async with httpx.AsyncClient(timeout=60) as c:
            spread = await asyncio.gather(*(c.post(f"{url}/v1/infer", json=fast) for _ in range(8)))
            # Skew: one call carries 16 heavy samples (4 s of profiled work) to one worker.
            heavy = asyncio.create_task(c.post(f"{url}/v2/models/slow/infer", json={"inputs": [
                {"name": "x", "shape": [16, 4], "datatype": "FP32", "data": list(range(64))}]}))
            await asyncio.sleep(1.0)  # a few routing-stats periods: the router now sees the backlog
            burst = await asyncio.gather(*(c.post(f"{url}/v1/infer", json=fast) for _ in range(10)))
            return spread, await heavy, burst

    spread, heavy, burst = asyncio.run(go())
    worker = lambda r: r.headers["x-edgeserving-worker"]  # noqa: E731
    assert all(r.status_code == 200 for r in (*spread, heavy, *burst))
    assert len({worker(r) for r in spread}) == 2, "an idle pair of workers should share a burst"
    loaded = worker(heavy)
    assert [worker(r) for r in burst].count(loaded) == 0, (
        f"the burst should avoid the loaded worker {loaded}: {[worker(r) for r in burst]}")
    m = scrape(url)  # one scrape, whichever worker answers it: the totals of both
    assert metric_sum(m, "edgeserving_requests_total") == warm_up + 8 + 16 + 10
    assert metric_sum(m, "edgeserving_workers") == 2
    assert len([k for k in m if k.startswith("edgeserving_gpu_busy_seconds_total")]) == 2
