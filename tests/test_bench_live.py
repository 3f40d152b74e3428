"""``bench live`` / ``bench fidelity`` / the demo: target logic, reports and fidelity views on hand-made
results, then one bounded run of the live harness (edgeserving and plain Ray Serve on one cluster)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import fidelity_metrics as fm
from bench import live_report as lr
from bench.plain_batched import Batching
from scheduler.profile import Profile
from scheduler.summary import summarize
from scheduler.types import Outcome, Request, RequestResult

PROFILE = Profile.from_latencies("t", {"m": {"e1": {1: 2.0, 2: 3.0}, "final": {1: 4.0, 2: 6.0}}},
                                 {"m": {"e1": 0.8, "final": 0.9}})


def _summary(policy: str, violation: float, p95: float | None) -> dict:
    return {"policy": policy, "violation_ratio": violation, "p95_ms": p95}


# -- targets -----------------------------------------------------------------------------------------

def test_plain_target_applies_only_from_five_percent_violations():
    v = lr.plain_target(_summary("plain", 0.04, 100.0), _summary("ours", 0.0, 10.0))
    assert not v.applies and not v.met and "does not apply" in v.line()


@pytest.mark.parametrize(("ours_v", "ours_p95", "met"), [
    (0.025, 50.0, True),    # exactly a quarter of the violations and half the P95: met
    (0.026, 50.0, False),   # a hair over a quarter
    (0.010, 50.1, False),   # P95 over half
    (0.0, None, False),     # nothing completed: no P95, cannot claim the P95 half
])
def test_plain_target_needs_a_quarter_of_the_violations_and_half_the_p95(ours_v, ours_p95, met):
    v = lr.plain_target(_summary("plain", 0.10, 100.0), _summary("ours", ours_v, ours_p95))
    assert v.applies and v.met is met and ("MET" in v.line()) and (("NOT MET" in v.line()) is not met)


@pytest.mark.parametrize(("ours", "met"), [((0.05, 40.0), True), ((0.10, 40.0), False), ((0.05, 50.0), False)])
def test_reference_target_needs_both_below(ours, met):
    v = lr.reference_target(_summary("edgeserving", 0.10, 50.0), _summary("lookahead", *ours))
    assert v.applies and v.met is met


# -- reports -----------------------------------------------------------------------------------------

def _result(i: int, outcome: Outcome, latency_ms: float | None, exit: str | None = "final", slo_ms: float = 10.0,
            queue_ms: float | None = 1.0, slot_ms: float | None = 4.0, batch: int | None = 1) -> RequestResult:
    req = Request(f"r{i}", "m", i * 0.01, i * 0.01 + slo_ms / 1000.0)
    if latency_ms is None:
        return RequestResult(req, outcome, reason="x")
    return RequestResult(req, outcome, finish_s=req.arrival_s + latency_ms / 1000.0, exit=exit, batch_size=batch,
                         queue_ms=queue_ms, slot_ms=slot_ms)


def test_comparison_rows_show_every_configuration_with_its_exit_mix():
    results = [_result(0, Outcome.MET, 5.0, "e1"), _result(1, Outcome.LATE, 12.0), _result(2, Outcome.DROPPED, None)]
    header, rows = lr.comparison_rows([summarize(results, PROFILE, "ours")])
    row = dict(zip(header, rows[0]))
    assert row["configuration"] == "ours" and row["requests"] == "3" and row["not answered"] == "1"
    assert row["violation %"] == "66.67" and row["exit mix (completed)"] == "m[e1:50% final:50%]"
    assert "| configuration |" in lr.markdown(header, rows)


def test_pooled_repeats_keep_every_request_once():
    from bench.live import pooled
    from workloads.replay import ReplayReport, SendLag

    reps = [ReplayReport("live", "u", "p", PROFILE, [_result(i, Outcome.MET, 5.0)], 1,
                         lag=SendLag.of(np.array([1.0]), 10.0), send_lag_ms=np.array([1.0 + k]))
            for k, i in enumerate((0, 0))]
    p = pooled(reps, "ours")
    assert p.policy == "ours" and len(p.results) == 2 and len({r.request.id for r in p.results}) == 2
    assert p.summary()["requests"] == 2 and p.lag.max_ms == 2.0


def test_plot_is_written(tmp_path):
    from workloads.replay import ReplayReport

    reps = [ReplayReport("live", "u", name, PROFILE, [_result(i, Outcome.MET, 3.0 + i, "e1" if i % 2 else "final")
                                                      for i in range(20)], 20) for name in ("a", "b")]
    path = lr.write_plot(reps, tmp_path / "x.png", "t")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"


def test_batching_parses_and_names_bad_values():
    assert Batching.parse("8:2") == Batching(8, 0.002) and Batching(8, 0.002).label() == "B=8,wait=2ms"
    for bad in ("8", "0:1", "x:1", "4:5000"):
        with pytest.raises(ValueError, match="batch"):
            Batching.parse(bad)


# -- fidelity views ------------------------------------------------------------------------------------

def test_server_view_uses_the_workers_queue_plus_slot_time():
    r = _result(0, Outcome.MET, latency_ms=30.0, queue_ms=2.0, slot_ms=5.0)
    (s,) = fm.server_view([r])
    assert s.latency_ms == pytest.approx(7.0) and s.outcome is Outcome.MET


def test_client_view_rejudges_on_client_latency():
    late, met, dropped = fm.client_view([_result(0, Outcome.MET, 12.0), _result(1, Outcome.LATE, 9.0),
                                         _result(2, Outcome.DROPPED, None)])
    assert (late.outcome, met.outcome, dropped.outcome) == (Outcome.LATE, Outcome.MET, Outcome.DROPPED)


def test_overhead_is_added_from_the_samples_and_rejudged():
    sim = [_result(i, Outcome.MET, 6.0) for i in range(50)] + [_result(50, Outcome.DROPPED, None)]
    out = fm.with_overhead(sim, [1.0, 5.0], np.random.default_rng(0))
    added = {round(r.latency_ms - 6.0, 6) for r in out[:50]}
    assert added == {1.0, 5.0}  # both samples drawn, nothing else
    assert all((r.outcome is Outcome.MET) == (r.latency_ms <= 10.0) for r in out[:50])
    assert out[50].outcome is Outcome.DROPPED
    with pytest.raises(ValueError, match="overhead"):
        fm.with_overhead(sim, [], np.random.default_rng(0))
    assert list(fm.overhead_samples([{"client_ms": 9.0, "slot_ms": 4.0}])) == [5.0]


def test_gap_target_is_ten_percent_of_p95_and_two_points_of_violations():
    live = {"violation_ratio": 0.10, "p50_ms": 10.0, "p95_ms": 100.0}
    assert fm.Gap("client", live, {"violation_ratio": 0.115, "p50_ms": 9.0, "p95_ms": 109.0}).met
    assert not fm.Gap("client", live, {"violation_ratio": 0.125, "p50_ms": 9.0, "p95_ms": 100.0}).met
    assert not fm.Gap("client", live, {"violation_ratio": 0.10, "p50_ms": 9.0, "p95_ms": 89.0}).met
    gap = fm.Gap("client", live, {"violation_ratio": 0.10, "p50_ms": 12.0, "p95_ms": 100.0})
    assert gap.rel("p50_ms") == pytest.approx(0.2) and gap.row()[6] == "+20.0%"


def test_slots_are_counted_once_per_batch_and_compared_with_the_profile():
    batch = [_result(i, Outcome.MET, 9.0, slot_ms=9.0, batch=2) for i in range(2)]  # one slot of 2
    single = [_result(5, Outcome.MET, 3.0, exit="e1", slot_ms=3.0)]
    slots = fm.slots([*batch, *single, _result(9, Outcome.DROPPED, None)])
    assert sorted(slots) == [("m", "e1", 1, 3.0), ("m", "final", 2, 9.0)]
    header, rows, overall = fm.slot_rows(slots, PROFILE)
    by_exit = {r[1]: dict(zip(header, r)) for r in rows}
    assert by_exit["final"]["mean error"] == "+50.0%" and by_exit["e1"]["mean error"] == "+50.0%"
    assert overall["slots"] == 2 and overall["mean_rel_error"] == pytest.approx(0.5)


def test_segments_cut_the_trace_into_rebased_windows():
    from bench.live import segments
    from workloads.trace import TraceRow

    rows = [TraceRow(t, "m", 10.0, f"r{i}") for i, t in enumerate((0.5, 9.9, 10.0, 25.0))]
    parts = segments(rows, 10.0)
    assert [[r.request_id for r in p] for p in parts] == [["r0", "r1"], ["r2"], ["r3"]]
    assert [r.arrival_s for r in parts[2]] == [5.0] and parts[1][0].arrival_s == 0.0
    assert segments(rows, None) == [rows] and segments(rows, 0) == [rows]
    with pytest.raises(ValueError, match="segment"):
        segments(rows, -1.0)



def test_measured_slot_executor_scales_the_profile_mean_by_measured_ratios():
    from scheduler.clock import VirtualClock
    from scheduler.types import Plan

    slots = [("m", "final", 1, 8.0)] * 25 + [("m", "e1", 1, 2.0)]  # ratios 2.0 (x25) and 1.0
    ratios = fm.slot_ratios(slots, PROFILE)
    assert set(ratios["m"]) == {2.0, 1.0} and len(ratios["*"]) == 26
    clock = VirtualClock(0.0)
    ex = fm.MeasuredSlotExecutor(PROFILE, clock, np.random.default_rng(0), {"*": np.array([1.5])})
    reqs = tuple(Request(f"r{i}", "m", 0.0, 1.0) for i in range(2))
    out = ex.run(Plan(model="m", exit="final", requests=reqs, predicted_ms=6.0))
    assert out.slot_ms == pytest.approx(9.0) and clock.now() == pytest.approx(0.009) and out.exits == ("final",) * 2
    with pytest.raises(ValueError, match="no measured slots"):
        fm.slot_ratios([], PROFILE)
    assert list(fm.outside_worker_ms([_result(0, Outcome.MET, 20.0, queue_ms=3.0, slot_ms=5.0)])) == [12.0]


def test_load_calibration_keeps_the_traces_mean_rates_and_deadline_classes():
    from bench.fidelity import load_calibration_rows
    from workloads.trace import TraceRow

    rows = [TraceRow(i * 0.01, "a" if i % 3 else "b", 40.0 if i % 2 else 100.0, f"r{i}") for i in range(3000)]
    cal = load_calibration_rows(rows, 20.0, seed=0)
    rate = len(cal) / 20.0
    assert abs(rate - 100.0) < 8.0  # the trace's 100 req/s
    assert {r.deadline_ms for r in cal} == {40.0, 100.0} and {r.model for r in cal} == {"a", "b"}



def test_frontend_queue_backs_up_only_beyond_its_capacity():
    assert list(fm.frontend_waits([0.0, 0.1, 0.2], service_ms=10.0, servers=1)) == [0.0, 0.0, 0.0]
    waits = fm.frontend_waits([0.0] * 4, service_ms=10.0, servers=2)  # 4 at once on 2 servers
    assert list(waits) == pytest.approx([0.0, 0.0, 10.0, 10.0])
    late = fm.shifted([_result(0, Outcome.MET, 6.0), _result(1, Outcome.DROPPED, None)], [5.0, 5.0])
    assert late[0].latency_ms == pytest.approx(11.0) and late[0].outcome is Outcome.LATE
    assert late[1].outcome is Outcome.DROPPED


# -- one bounded run of the harness: edgeserving and plain Ray Serve on one cluster -----------------------

@pytest.fixture(scope="module")
def harness():
    from bench.live_harness import LiveHarness

    with LiveHarness(gpus=2) as h:
        yield h


@pytest.mark.serve
def test_harness_replays_the_same_trace_against_edgeserving_and_plain_ray_serve(harness):
    from bench.live import _add_cpu, pooled
    from bench.live_harness import cpu_snapshot, metric_total
    from bench.live_workload import generate_rows
    from tests.conftest import check_accounting

    rows = generate_rows(20.0, 1.5, seed=3)  # ~30 requests
    edge = harness.deploy_edgeserving("edgeserving", "edgeserving")
    plain = harness.deploy_plain(Batching(4, 0.001))
    before = cpu_snapshot()
    reports = {t.label: harness.replay(t, rows) for t in (edge, plain)}
    cpu: dict[str, float] = {}
    _add_cpu(cpu, before, cpu_snapshot(), plain)
    assert cpu["server"] > 0 and cpu["proxy"] > 0 and cpu["client"] > 0

    for label, rep in reports.items():
        assert [r.request.id for r in rep.results] == [r.request_id for r in rows], label
        assert all(r.outcome in (Outcome.MET, Outcome.LATE) for r in rep.results), label
    plain_report = reports["plain Ray Serve"]
    finals = {m: plain_report.profile.model(m).exits[-1] for m in plain_report.profile.model_names}
    plain_results = plain_report.results
    assert all(r.exit == finals[r.request.model] and 1 <= r.batch_size <= 4 for r in plain_results)
    # Client-side judging for both: MET exactly when the client latency is within the deadline.
    assert all((r.outcome is Outcome.MET) == (r.latency_ms <= r.request.slo_ms) for r in plain_results)

    m = harness.scrape(edge)
    assert metric_total(m, "edgeserving_requests_received_total") == len(rows)
    check_accounting(edge.url)
    harness.set_plain_batching(Batching(1, 0.0))  # retuned in place: batches of one from now on
    again = harness.replay(plain, rows[:8])
    assert all(r.batch_size == 1 for r in again.results)
    _, table = lr.comparison_rows([pooled([r], r.policy).summary() for r in reports.values()])
    assert [row[0] for row in table] == ["edgeserving", "plain Ray Serve"]
