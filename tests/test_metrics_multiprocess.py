"""The metrics mechanism without Ray: several worker processes, one scrape, exact totals.

Each worker process writes into the shared multiprocess directory; rendering that directory (what
/metrics does in whichever replica answers) sums every process, including one that died, and
drops the live gauges of dead processes.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from scheduler.serving.metrics import render_directory

EXPECTED_FAMILIES = {
    "edgeserving_requests_received", "edgeserving_requests", "edgeserving_request_latency_seconds",
    "edgeserving_deadline_slack_seconds", "edgeserving_deadline_lateness_seconds", "edgeserving_exits",
    "edgeserving_batch_size", "edgeserving_queue_depth", "edgeserving_inflight_requests", "edgeserving_workers",
    "edgeserving_slot_seconds", "edgeserving_slot_prediction_error_seconds", "edgeserving_failed_slots",
    "edgeserving_gpu_busy_seconds", "edgeserving_scheduler_decision_seconds", "edgeserving_engine_gap_seconds",
    "edgeserving_request_handling_seconds", "edgeserving_request_transit_seconds",
}


def _worker(directory: str, worker: str, n: int, queued: int, hold, done) -> None:
    from scheduler.serving.metrics import ServingMetrics
    from scheduler.types import Outcome, Plan, Request, RequestResult, SlotResult

    m = ServingMetrics(Path(directory), worker, bmax=4)
    for i in range(n):
        req = Request(f"{worker}-{i}", "a", 0.0, 0.050)
        m.record_received()
        outcome = Outcome.MET if i % 2 == 0 else Outcome.LATE
        m.record_result(RequestResult(req, outcome, finish_s=0.040 if i % 2 == 0 else 0.060, exit="e1",
                                      batch_size=2), ["a"])
    plan = Plan.run("a", "e1", (Request("x", "a", 0.0, 1.0),), predicted_ms=5.0)
    m.record_slot(plan, SlotResult(slot_ms=7.0, exits=("e1",)), decision_ms=0.02)
    m.record_slot(plan, None, decision_ms=0.02)  # a slot whose executor raised
    m.record_gap(0.3)
    m.record_gap(None)  # a slot after an idle spell: no gap
    m.record_handling(0.0004)
    m.record_transit(0.003)
    m.set_queue_depths({"a": queued})
    done.set()
    if hold is not None:
        hold.wait(30)


def parse(text: str) -> dict[str, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name + str(sorted(s.labels.items()))] = s.value
    return out


def family_names(text: str) -> set[str]:
    return {fam.name for fam in text_string_to_metric_families(text)}


def test_one_scrape_sums_every_worker_process_and_forgets_dead_gauges(tmp_path: Path):
    ctx = mp.get_context("spawn")
    hold, done_a, done_b = ctx.Event(), ctx.Event(), ctx.Event()
    crashed = ctx.Process(target=_worker, args=(str(tmp_path), "wa", 3, 5, None, done_a))
    alive = ctx.Process(target=_worker, args=(str(tmp_path), "wb", 4, 2, hold, done_b))
    crashed.start()
    alive.start()
    try:
        assert done_a.wait(60) and done_b.wait(60)
        crashed.join(30)
        text = render_directory(tmp_path).decode()
        m = parse(text)
        assert m["edgeserving_requests_received_total[]"] == 7
        assert m["edgeserving_requests_total[('model', 'a'), ('outcome', 'MET'), ('reason', '')]"] == 4
        assert m["edgeserving_requests_total[('model', 'a'), ('outcome', 'LATE'), ('reason', '')]"] == 3
        assert m["edgeserving_exits_total[('exit', 'e1'), ('model', 'a')]"] == 7
        assert m["edgeserving_gpu_busy_seconds_total[('worker', 'wa')]"] == 0.007
        assert m["edgeserving_slot_prediction_error_seconds_sum[('exit', 'e1'), ('model', 'a')]"] == 0.004
        # Live gauges: the exited worker no longer counts; the live one does.
        assert m["edgeserving_failed_slots_total[('model', 'a')]"] == 2
        assert m["edgeserving_scheduler_decision_seconds_count[]"] == 4
        assert m["edgeserving_workers[]"] == 1
        assert m["edgeserving_queue_depth[('model', 'a')]"] == 2
        assert family_names(text) == EXPECTED_FAMILIES
    finally:
        hold.set()
        alive.join(30)
        for p in (crashed, alive):
            if p.is_alive():
                p.kill()


def test_names_follow_prometheus_conventions(tmp_path: Path):
    ctx = mp.get_context("spawn")
    done = ctx.Event()
    p = ctx.Process(target=_worker, args=(str(tmp_path), "w", 1, 0, None, done))
    p.start()
    p.join(60)
    text = render_directory(tmp_path).decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if fam.type == "counter":
                assert s.name.endswith("_total"), s.name
            if "seconds" in fam.name:
                assert fam.name.endswith("_seconds"), fam.name
