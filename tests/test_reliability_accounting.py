"""Accounting across crashes, without Ray: a worker process that dies holding requests.

Requests in = sum of outcomes must hold even when a worker is killed: the next scrape (or the next
worker to start in the metrics directory) finds the dead process, counts what it received minus
the outcomes it recorded, and records that many FAILED/worker_lost outcomes, once. And the bounds
that keep a worker's memory flat: the ledger holds at most the queued and running requests.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from scheduler.serving.metrics import WORKER_LOST, account_lost_requests, lost_requests, render_directory
from tests.conftest import SYNTHETIC_MODELS


def _worker(directory: str, received: int, answered: int, ready, hold) -> None:
    from scheduler.serving.metrics import ServingMetrics
    from scheduler.types import Outcome, Request, RequestResult

    m = ServingMetrics(Path(directory), "w", bmax=4)
    m.record_received(received)
    for i in range(answered):
        m.record_result(RequestResult(Request(f"r{i}", "a", 0.0, 1.0), Outcome.MET, finish_s=0.5, exit="e1",
                                      batch_size=1), ["a"])
    ready.set()
    hold.wait(60)
    os._exit(0)  # no shutdown path: the process simply vanishes, like a killed replica


def totals(directory: Path) -> dict[str, float]:
    out = {"received": 0.0, "outcomes": 0.0, "lost": 0.0, "inflight": 0.0}
    for family in text_string_to_metric_families(render_directory(directory).decode()):
        for s in family.samples:
            if s.name == "edgeserving_requests_received_total":
                out["received"] += s.value
            elif s.name == "edgeserving_requests_total":
                out["outcomes"] += s.value
                out["lost"] += s.value if s.labels.get("reason") == WORKER_LOST else 0.0
            elif s.name == "edgeserving_inflight_requests":
                out["inflight"] += s.value
    return out


def run_worker(directory: Path, received: int, answered: int, die: bool = True):
    ctx = mp.get_context("spawn")
    ready, hold = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_worker, args=(str(directory), received, answered, ready, hold))
    p.start()
    assert ready.wait(60)
    if die:
        p.kill()
        p.join(30)
    return p, hold


def test_a_killed_worker_s_open_requests_end_failed_worker_lost_once(tmp_path: Path):
    survivor, hold = run_worker(tmp_path, received=4, answered=4, die=False)
    try:
        victim, _ = run_worker(tmp_path, received=7, answered=2)
        assert lost_requests(tmp_path, victim.pid) == 5
        first = totals(tmp_path)  # this scrape reaps the victim
        assert first["received"] == first["outcomes"] == 11 and first["lost"] == 5
        assert totals(tmp_path) == first  # idempotent: the next scrape adds nothing
        assert account_lost_requests(tmp_path, victim.pid) == 0
        assert (tmp_path / f"counter_lost-{victim.pid}.db").exists()
    finally:
        hold.set()
        survivor.join(30)


def test_a_reaper_s_own_worker_lost_records_are_not_counted_against_it(tmp_path: Path):
    """Worker B reaps dead worker A (recording A's losses in B's own file), then dies itself: B's
    losses are what B received and never answered, not A's."""
    a, _ = run_worker(tmp_path, received=3, answered=1)
    b, _ = run_worker(tmp_path, received=5, answered=5, die=False)  # its start-up reaps A
    assert (tmp_path / f"counter_lost-{a.pid}.db").exists()
    b.kill()  # (never set the event a killed process waited on: set() would wait for it to wake)
    b.join(30)
    t = totals(tmp_path)
    assert t["received"] == t["outcomes"] == 8 and t["lost"] == 2
    assert not (tmp_path / f"counter_lost-{b.pid}.db").exists()  # B had nothing open


def test_the_ledger_holds_only_queued_and_running_requests(tmp_path: Path, synthetic_profile: Path,
                                                          isolated_metrics):
    """However many calls arrive at once, open requests stay within the queue bound per model plus the
    running slot (plus what that slot's plan dropped): refused calls are closed at once."""
    from scheduler.serving.config import parse_config
    from scheduler.serving.validation import InferCall
    from scheduler.serving.worker import WorkerCore

    bound, bmax = 5, 4
    core = WorkerCore(parse_config({"executor": "profile", "profile": str(synthetic_profile), "bmax": bmax,
                                    "queue_bound": bound, "models": SYNTHETIC_MODELS}), tmp_path / "m", "w")
    peak = {"ledger": 0, "queued": 0}

    async def flood():
        now = core.clock.now()
        calls = [core.infer(InferCall("slow", np.zeros((1, 4), np.float32), 60_000.0, str(i), False), now)
                 for i in range(200)]
        tasks = [asyncio.ensure_future(c) for c in calls]
        while not all(t.done() for t in tasks):
            peak["ledger"] = max(peak["ledger"], len(core.ledger))
            peak["queued"] = max(peak["queued"], sum(core.engine.queue_depths().values()))
            await asyncio.sleep(0.005)
        return [r for t in tasks for r in t.result()]

    try:
        results = asyncio.run(flood())
    finally:
        core.shutdown()
    assert len(results) == 200 and sum(r.reason == "queue_full" for r in results) >= 200 - bound - bmax
    assert peak["queued"] <= bound
    assert peak["ledger"] <= bound + bmax
    assert core.ledger.opened == core.ledger.closed == 200
