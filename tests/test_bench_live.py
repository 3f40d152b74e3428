"""``bench live`` / ``bench fidelity`` / the demo: target logic, reports and fidelity views on hand-made
results, then one bounded run of the live harness (edgeserving and plain Ray Serve on one cluster)."""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np
import pytest

from bench import fidelity_metrics as fm
from bench import live_report as lr
from bench.plain_batched import Batching
from scheduler.paths import seed_profile_path
from scheduler.profile import Profile
from scheduler.summary import summarize
from scheduler.types import Outcome, Request, RequestResult

# The emulated device serves the seed workload's GPU profile from ../shared.
needs_seed_profile = pytest.mark.skipif(not seed_profile_path().exists(),
                                        reason=f"the seed profile is not at {seed_profile_path()}")

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


def test_segment_line_counts_the_segments_where_the_best_policy_missed_fewer():
    from bench.live import pooled
    from workloads.replay import ReplayReport, SendLag

    def report(bad_per_segment: list[int]) -> ReplayReport:  # 4 requests per segment, ``bad`` of them LATE
        reps = [ReplayReport("live", "u", "p", PROFILE,
                             [_result(i, Outcome.LATE if i < bad else Outcome.MET, 5.0) for i in range(4)], 4,
                             lag=SendLag.of(np.array([1.0]), 10.0), send_lag_ms=np.array([1.0]))
                for bad in bad_per_segment]
        return pooled(reps, "x")

    ref, best, plain = report([2, 1, 0]), report([1, 1, 1]), report([0, 0, 0])
    assert lr.segment_violations(ref.results) == {"0": 50.0, "1": 25.0, "2": 0.0}
    line = lr.segment_line(["ref", "best", "plain"], [ref, best, plain])
    assert line == ("violation % per segment (ref / best / plain): 50/25/0, 25/25/0, 0/25/0; best below ref in 1 "
                    "of 3 segments, above in 1")


def test_transit_is_counted_from_the_workers_metrics_between_two_scrapes():
    expired = "edgeserving_requests_total{model=m,outcome=REJECTED,reason=deadline_expired}"
    before = {"edgeserving_request_transit_seconds_count": 2.0, "edgeserving_request_transit_seconds_sum": 0.004,
              expired: 1.0}
    after = {"edgeserving_request_transit_seconds_count": 6.0, "edgeserving_request_transit_seconds_sum": 0.016,
             expired: 3.0, "edgeserving_requests_total{model=m,outcome=MET,reason=}": 4.0}
    t = lr.transit(before, after)
    assert t == {"calls": 4, "mean_ms": pytest.approx(3.0), "expired": 2}
    assert "4 calls, mean 3.00 ms from the client's send" in lr.transit_line("lookahead", t)
    assert "2 refused as expired" in lr.transit_line("lookahead", t)
    assert "no call carried its send time" in lr.transit_line("lookahead", lr.transit(before, before))


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


def test_load_calibration_steps_through_multiples_of_the_traces_rate_with_its_mix():
    from bench.fidelity import CALIBRATION_RATES, load_calibration_rows
    from workloads.trace import TraceRow

    rows = [TraceRow(i * 0.01, "a" if i % 3 else "b", 40.0 if i % 2 else 100.0, f"r{i}") for i in range(3000)]
    cal = load_calibration_rows(rows, 40.0, seed=0, kind="steps")  # the trace runs at 100 req/s; 10 s per step
    arrivals = [r.arrival_s for r in cal]
    assert arrivals == sorted(arrivals) and len({r.request_id for r in cal}) == len(cal)
    per_step = np.histogram(arrivals, bins=len(CALIBRATION_RATES), range=(0.0, 40.0))[0] / 10.0
    assert per_step == pytest.approx([100.0 * f for f in CALIBRATION_RATES], rel=0.1)
    assert {r.deadline_ms for r in cal} == {40.0, 100.0} and {r.model for r in cal} == {"a", "b"}


def test_calibration_at_load_lasts_as_long_as_the_trace_unless_given():
    from bench.fidelity import QUICK_CALIBRATION_S, calibration_seconds
    from workloads.trace import TraceRow

    rows = [TraceRow(i * 0.5, "a", 40.0, f"r{i}") for i in range(121)]  # the last arrival at 60 s
    assert calibration_seconds(rows, None) == 60.0
    assert calibration_seconds(rows, 20.0) == 20.0
    assert calibration_seconds(rows, None, quick=True) == QUICK_CALIBRATION_S
    assert calibration_seconds(rows[:3], None) == QUICK_CALIBRATION_S  # a one-second trace: not a blink
    with pytest.raises(ValueError, match="calibrate-s"):
        calibration_seconds(rows, 0.0)


def test_load_calibration_in_bursts_keeps_the_traces_mean_rate_and_mix_with_the_bundled_burst_shape():
    from bench import live_workload as lw
    from bench.fidelity import load_calibration_rows
    from workloads.trace import TraceRow

    rows = [TraceRow(i * 0.05, "a" if i % 3 else "b", 40.0 if i % 2 else 100.0, f"r{i}") for i in range(1200)]
    cal = load_calibration_rows(rows, 600.0, seed=0)  # the trace runs at 20 req/s
    arrivals = np.asarray([r.arrival_s for r in cal])
    assert list(arrivals) == sorted(arrivals) and len({r.request_id for r in cal}) == len(cal)
    assert len(cal) / 600.0 == pytest.approx(20.0, rel=0.15)
    per_s = np.histogram(arrivals, bins=600, range=(0.0, 600.0))[0]
    # Bursts: about ON_FRACTION of the seconds run near BURST_FACTOR x the mean, far above a Poisson's spread.
    assert np.mean(per_s >= 0.7 * lw.BURST_FACTOR * 20.0) == pytest.approx(lw.ON_FRACTION, abs=0.1)
    assert {r.deadline_ms for r in cal} == {40.0, 100.0} and {r.model for r in cal} == {"a", "b"}
    assert sum(r.model == "a" for r in cal) / len(cal) == pytest.approx(2 / 3, abs=0.05)
    with pytest.raises(ValueError, match="calibration must be one of bursts, steps"):
        load_calibration_rows(rows, 10.0, seed=0, kind="waves")


def test_overhead_is_drawn_at_each_requests_local_rate():
    assert list(fm.local_rates_rps([0.0, 0.1, 0.2, 0.8, 0.9], window_s=0.5)) == [2.0, 4.0, 6.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="sorted"):
        fm.local_rates_rps([1.0, 0.0])
    # Calibration: 1 ms outside the worker at 10 req/s, 20 ms at 100 req/s.
    by_rate = fm.RateOverhead([10.0] * 50 + [100.0] * 50, [1.0] * 50 + [20.0] * 50, bins=2)
    drawn = by_rate.draw([5.0, 12.0, 90.0, 400.0], np.random.default_rng(0))
    assert list(drawn) == [1.0, 1.0, 20.0, 20.0]  # beyond the calibrated range: the outermost bins
    # From a replay: latency 5 ms - queue 1 ms - slot 4 ms = 0 ms outside; a dropped request gives no sample.
    replay = [_result(i, Outcome.MET, 5.0) for i in range(20)] + [_result(20, Outcome.DROPPED, None)]
    from_replay = fm.outside_by_rate(replay)
    assert sum(len(b) for b in from_replay.bins) == 20
    assert from_replay.correlations is not None  # the replay's worker times came with it
    assert np.concatenate(from_replay.bins) == pytest.approx(np.zeros(20), abs=1e-9)



def test_calibration_and_trace_are_cut_into_the_same_number_of_rebased_windows():
    from bench.fidelity_runs import windows
    from workloads.trace import TraceRow

    rows = [TraceRow(t, "a", 40.0, str(i)) for i, t in enumerate([0.0, 1.0, 2.5, 5.0, 9.9, 10.0])]
    parts = windows(rows, 2)  # two windows of 5 s: [0, 5) and [5, 10]
    assert [[r.request_id for r in p] for p in parts] == [["0", "1", "2"], ["3", "4", "5"]]
    assert [r.arrival_s for r in parts[1]] == pytest.approx([0.0, 4.9, 5.0])  # re-based, the last kept
    assert windows(rows, 1) == [rows]
    with pytest.raises(ValueError, match="at least one window"):
        windows(rows, 0)


def test_coupled_overhead_follows_the_worker_time_as_much_as_the_calibration_did():
    rng = np.random.default_rng(3)
    worker = rng.uniform(1.0, 10.0, 400)
    # Calibration: outside the worker = the worker's time, exactly (rank correlation 1, capped at 0.99) ...
    tied = fm.RateOverhead(np.full(400, 50.0), worker, bins=1, worker_ms=worker)
    assert tied.correlations == [pytest.approx(0.99)]
    sim_worker = np.linspace(0.0, 1.0, 200)
    drawn = tied.draw_coupled(np.full(200, 50.0), sim_worker, np.random.default_rng(0))
    assert set(drawn) <= set(worker)  # always the bin's own samples
    assert np.corrcoef(sim_worker, drawn)[0, 1] > 0.9  # the longer in the worker, the longer outside
    assert np.mean(drawn[:50]) < np.mean(drawn[-50:]) - 4.0
    # ... or unrelated to it: coupled draws are then independent draws of the same samples.
    loose = fm.RateOverhead(np.full(400, 50.0), rng.permutation(worker), bins=1, worker_ms=worker)
    assert abs(loose.correlations[0]) < 0.15
    free = loose.draw_coupled(np.full(4000, 50.0), np.linspace(0.0, 1.0, 4000), np.random.default_rng(1))
    assert abs(np.corrcoef(np.linspace(0.0, 1.0, 4000), free)[0, 1]) < 0.1
    assert np.percentile(free, 95) == pytest.approx(np.percentile(worker, 95), rel=0.1)
    # Each request stays in its own rate's bin, and a request without a worker time ranks last.
    two = fm.RateOverhead([10.0] * 50 + [100.0] * 50, [1.0] * 50 + [20.0] * 50, bins=2, worker_ms=np.arange(100.0))
    assert list(two.draw_coupled([5.0, 400.0, 90.0], [1.0, np.nan, 2.0], np.random.default_rng(0))) == [1.0, 20.0, 20.0]
    with pytest.raises(ValueError, match="worker times"):
        fm.RateOverhead([10.0], [1.0]).draw_coupled([10.0], [1.0], np.random.default_rng(0))


def test_quantile_map_sends_a_simulated_time_to_the_measured_time_at_its_quantile():
    qmap = fm.QuantileMap(simulated_ms=[1.0, 2.0, 3.0, 4.0], measured_ms=[10.0, 20.0, 30.0, 40.0])
    out = qmap([0.5, 2.0, 4.0, 9.0, float("nan")])
    assert out[0] == 10.0 and out[2] == 40.0 and out[3] == 40.0  # below and beyond the fit: its ends
    assert out[1] == pytest.approx(np.quantile([10.0, 20.0, 30.0, 40.0], 0.5))
    assert np.isnan(out[4])  # a request that did not complete has no time in the worker
    assert list(qmap([1.0, 2.0, 3.0, 4.0])) == sorted(qmap([1.0, 2.0, 3.0, 4.0]))  # ranks kept
    with pytest.raises(ValueError):
        fm.QuantileMap([], [1.0])


def test_repeated_rows_are_independent_copies_one_after_another():
    from bench.fidelity_runs import repeated
    from workloads.trace import TraceRow

    rows = [TraceRow(t, "a", 40.0, str(i)) for i, t in enumerate([0.0, 1.5, 3.0])]
    copies = repeated(rows, 3, gap_s=10.0)
    assert [r.request_id for r in copies] == [f"{k}:{i}" for k in range(3) for i in range(3)]
    assert [r.arrival_s for r in copies] == pytest.approx([0.0, 1.5, 3.0, 13.0, 14.5, 16.0, 26.0, 27.5, 29.0])
    assert repeated(rows, 1) == rows
    with pytest.raises(ValueError, match="at least one copy"):
        repeated(rows, 0)


def test_engine_gaps_come_from_the_histogram_buckets_between_two_scrapes():
    from bench.engine_gaps import GAP_METRIC, GappedExecutor, gap_draws
    from scheduler.clock import VirtualClock
    from scheduler.executor import ProfileExecutor
    from scheduler.types import Plan
    from tests.core_helpers import TWO_MODELS, req

    def scrape(le_counts):  # cumulative, as Prometheus exposes them
        return {f'{GAP_METRIC}_bucket{{le={le}}}': c for le, c in le_counts.items()}

    before = scrape({"0.001": 5.0, "0.002": 5.0, "+Inf": 5.0})
    after = scrape({"0.001": 5.0, "0.002": 15.0, "+Inf": 15.0})  # 10 new gaps, all between 1 and 2 ms
    draws = gap_draws(before, after)
    assert draws is not None and draws.n == 10 and draws.mean_ms() == pytest.approx(1.5)
    rng = np.random.default_rng(0)
    assert all(1.0 <= draws.draw(rng) <= 2.0 for _ in range(100))
    assert gap_draws(after, after) is None  # nothing recorded in between

    clock = VirtualClock(0.0)
    ex = GappedExecutor(ProfileExecutor(TWO_MODELS, clock, rng), clock, rng, draws)
    plan = Plan(model="A", exit="e1", requests=(req("a", "A", 0.0, 50),), predicted_ms=2.0)
    slot = ex.run(plan)
    assert 0.003 <= clock.now() <= 0.004  # a 1-2 ms gap, then the 2 ms slot
    assert slot.slot_ms == pytest.approx(2.0)  # the gap is not slot time


def test_frontend_queue_backs_up_only_beyond_its_capacity():
    assert list(fm.frontend_waits([0.0, 0.1, 0.2], service_ms=10.0, servers=1)) == [0.0, 0.0, 0.0]
    waits = fm.frontend_waits([0.0] * 4, service_ms=10.0, servers=2)  # 4 at once on 2 servers
    assert list(waits) == pytest.approx([0.0, 0.0, 10.0, 10.0])
    late = fm.shifted([_result(0, Outcome.MET, 6.0), _result(1, Outcome.DROPPED, None)], [5.0, 5.0])
    assert late[0].latency_ms == pytest.approx(11.0) and late[0].outcome is Outcome.LATE
    assert late[1].outcome is Outcome.DROPPED


# -- one bounded run of the harness: edgeserving and plain Ray Serve on one cluster -----------------------

# -- the emulated device (bench live --emulate), without Ray ----------------------------------------------

@needs_seed_profile
def test_emulation_dilates_the_profile_the_deadlines_and_the_capacity():
    from bench.live_emulated import Emulation
    from bench.sim_suites import capacity_rps
    from scheduler.paths import seed_profile_path

    plain, emu = Emulation.load(None, 1.0), Emulation.load(None, 20.0)
    assert emu.source == str(seed_profile_path()) and emu.bmax == 10
    assert emu.weights == {"resnet50": 3.0, "resnet101": 2.0, "resnet152": 1.0}
    for q in ("mean", "p99"):
        assert emu.profile.latency_ms("resnet152", "final", 10, q) == pytest.approx(
            20 * plain.profile.latency_ms("resnet152", "final", 10, q))
    assert emu.capacity_rps() == pytest.approx(plain.capacity_rps() / 20)
    assert plain.capacity_rps() == pytest.approx(capacity_rps(plain.profile, plain.weights, 10))
    rows = emu.rows(0.5, 400.0, [20.0, 50.0], "poisson", np.random.default_rng(0))
    assert {r.deadline_ms for r in rows} == {400.0, 1000.0}
    assert len(rows) / 400.0 == pytest.approx(0.5 * emu.capacity_rps(), rel=0.05)
    share = sum(r.model == "resnet50" for r in rows) / len(rows)
    assert share == pytest.approx(0.5, abs=0.03)  # 3 of 3:2:1
    with pytest.raises(ValueError, match="dilation"):
        Emulation.load(None, 0.0)


@needs_seed_profile
def test_emulated_worker_args_are_a_valid_profile_executor_config(tmp_path):
    from bench.live_emulated import Emulation
    from scheduler.serving import deploy
    from scheduler.serving.config import parse_config

    emu = Emulation.load(None, 40.0)
    path = emu.write_profile(tmp_path)
    base = deploy.worker_app(deploy.load_serve_config())["args"]
    cfg = parse_config({**base, **emu.worker_args(path, 2000.0)})
    assert cfg.executor == "profile" and cfg.profile_path == path and cfg.bmax == 10
    assert set(cfg.models) == {"resnet50", "resnet101", "resnet152"}
    assert Profile.load(path).latency_ms("resnet50", "final", 1, "mean") == pytest.approx(40 * 3.036)


def test_plain_batching_is_dilated_and_capped_at_the_profiles_batches():
    from bench.live_emulated import dilated_batching

    assert dilated_batching("10:5", 40.0, 10) == Batching(10, 0.2)
    with pytest.raises(ValueError, match="exceed"):
        dilated_batching("16:10", 40.0, 10)
    with pytest.raises(ValueError, match="1 s"):
        dilated_batching("10:25", 50.0, 10)


def test_issue_six_is_judged_at_the_first_load_where_plain_violates_five_percent():
    from bench.live_emulated import first_applicable

    ours = _summary("ours", 0.0, 10.0)
    verdicts = [(load, lr.plain_target(_summary("plain", v, 100.0), ours))
                for load, v in ((0.6, 0.01), (0.9, 0.08), (1.2, 0.5))]
    load, v = first_applicable(verdicts)
    assert load == 0.9 and v.applies and v.met
    assert first_applicable(verdicts[:1]) is None


def test_emulated_device_runs_one_slot_at_a_time(tmp_path):
    import asyncio
    import time

    from bench.emulated_device import EmulatedDevice
    from tests.conftest import write_profile

    path = write_profile(tmp_path / "p.json", {"a": {"final": {1: 30.0, 2: 40.0}}, "b": {"final": {1: 50.0}}})
    device = EmulatedDevice(str(path), seed=0)

    async def both():
        t0 = time.perf_counter()
        out = await asyncio.gather(device.run("a", "final", 2), device.run("b", "final", 1))
        return out, (time.perf_counter() - t0) * 1000.0

    (a, b), wall_ms = asyncio.run(both())
    assert a["drawn_ms"] == 40.0 and b["drawn_ms"] == 50.0  # deterministic profile: every draw is the mean
    assert wall_ms >= 90.0 and b["wait_ms"] >= a["slot_ms"] - 1.0  # b waited for a's whole slot
    first, second = device.history()
    assert first[3] <= second[2]  # (model, batch, start_s, end_s): the second started after the first ended


# -- one bounded run of the harness: edgeserving and plain Ray Serve on one cluster -----------------------

@pytest.fixture(scope="module")
def harness():
    from bench.live_harness import LiveHarness

    with LiveHarness(gpus=3) as h:
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
    assert lr.transit({}, m)["calls"] == 0  # the harness does not propagate deadlines unless told
    harness.replay(dataclasses.replace(edge, propagate_deadlines=True), rows[:5])
    t = lr.transit(m, harness.scrape(edge))
    assert t["calls"] == 5 and t["mean_ms"] > 0 and t["expired"] == 0
    check_accounting(edge.url)
    harness.set_plain_batching(Batching(1, 0.0))  # retuned in place: batches of one from now on
    again = harness.replay(plain, rows[:8])
    assert all(r.batch_size == 1 for r in again.results)
    _, table = lr.comparison_rows([pooled([r], r.policy).summary() for r in reports.values()])
    assert [row[0] for row in table] == ["edgeserving", "plain Ray Serve"]


@pytest.mark.serve
def test_calls_of_several_samples_reach_edgeserving_and_plain_ray_serve_alike(harness):
    from bench.live_workload import generate_rows

    rows = generate_rows(10.0, 1.0, seed=5)[:6]
    edge = harness.deploy_edgeserving("edgeserving", "edgeserving")
    plain = harness.deploy_plain(Batching(8, 0.001))
    harness.samples_per_call = 4
    try:
        reports = {t.label: harness.replay(t, rows) for t in (edge, plain)}
    finally:
        harness.samples_per_call = 1
    for label, rep in reports.items():
        assert [r.request.id for r in rep.results] == [f"{r.request_id}.{k}" for r in rows for k in range(4)], label
        assert all(r.outcome in (Outcome.MET, Outcome.LATE) and r.batch_size >= 1 for r in rep.results), label
    # Plain Ray Serve batches the samples of a call like any other items (@serve.batch, up to 8).
    assert max(r.batch_size for r in reports["plain Ray Serve"].results) >= 2
    finals = {m: reports["plain Ray Serve"].profile.model(m).exits[-1] for m in {r.model for r in rows}}
    assert all(r.exit == finals[r.request.model] for r in reports["plain Ray Serve"].results)


@pytest.mark.serve
def test_fidelity_replays_calibration_and_trace_in_alternating_windows_and_counts_each_side(harness):
    from bench.fidelity import load_calibration_rows
    from bench.fidelity_runs import measure
    from bench.live_harness import metric_total
    from bench.live_workload import generate_rows

    rows = generate_rows(20.0, 2.0, seed=4)  # ~40 requests
    cal = load_calibration_rows(rows, 2.0, seed=1)
    edge = harness.deploy_edgeserving("edgeserving", "edgeserving")
    m = measure(harness, edge, cal, rows, 2, repeats=2)
    assert len(m.calibration) == 2 * len(cal) and len(m.live.results) == 2 * len(rows)
    assert len({r.request.id for r in m.calibration}) == 2 * len(cal)  # ids unique over the repeats
    assert [len(rep.results) for rep in m.live_repeats] == [len(rows), len(rows)]
    assert metric_total(m.cal_metrics, "edgeserving_requests_received_total") == 2 * len(cal)
    assert metric_total(m.live_metrics, "edgeserving_requests_received_total") == 2 * len(rows)
    assert metric_total(m.cal_metrics, "edgeserving_request_handling_seconds_count") == 2 * len(cal)
    assert len(m.rates_rps) == len(m.outside_ms) > 0 and m.cal_cpu_s > 0 and m.cal_wall_s > 0


@pytest.mark.serve
@needs_seed_profile
def test_emulated_mode_answers_every_request_once_and_plain_shares_one_device(harness, tmp_path):
    import argparse
    import asyncio
    import json

    import httpx
    import ray

    from bench import live_emulated as le
    from bench.live import deploy_all, replay_all
    from tests.conftest import check_accounting
    from workloads.inputs import infer_body

    emu = le.Emulation.load(None, 20.0)  # slots 60-400 ms, deadlines 1 s
    harness.override_worker_args(emu.worker_args(emu.write_profile(tmp_path), 1000.0))
    try:
        grid = [le.dilated_batching("4:2", emu.dilation, emu.bmax)]
        targets = deploy_all(harness, "edgeserving", "lookahead", grid[0])
        rows = emu.rows(0.3, 2.0, [50.0], "poisson", np.random.default_rng(7))  # ~30 requests
        replays = replay_all(harness, targets, grid, rows, 1, [], None, grace_ms=20_000.0)
        for key, (rep,) in replays.runs.items():
            assert [r.request.id for r in rep.results] == [r.request_id for r in rows], key
            assert all(r.outcome in (Outcome.MET, Outcome.LATE) for r in rep.results), key  # light load
        for key in ("reference", "best"):
            check_accounting(targets[key].url)  # the worker: requests in = outcomes, nothing left
            assert replays.predictions[key]["slots"] > 0
        plain = replays.runs[f"plain {grid[0].label()}"][0].results
        assert all(r.exit == "final" and 1 <= r.batch_size <= 4 for r in plain)

        # The plain models never hold the device at the same time ...
        slots = sorted(ray.get(harness.device.history.remote()), key=lambda s: s[2])
        assert len({s[0] for s in slots}) == 3 and len(slots) >= 5
        assert all(later[2] >= earlier[3] - 1e-4 for earlier, later in itertools.pairwise(slots))

        # ... so two models' batches sent together take at least both slots.
        async def two_at_once():
            async with httpx.AsyncClient(base_url=targets["plain"].url, timeout=30.0) as client:
                sends = []
                for i, model in enumerate(("resnet50", "resnet152")):
                    row = dataclasses.replace(rows[0], model=model, request_id=f"pair{i}")
                    sends.append(client.post(targets["plain"].paths[model], content=infer_body(row, i, [8]),
                                             headers={"content-type": "application/json"}))
                t0 = time.perf_counter()
                answers = await asyncio.gather(*sends)
                return [a.json() for a in answers], (time.perf_counter() - t0) * 1000.0

        answers, wall_ms = asyncio.run(two_at_once())
        assert all(a["outcome"] == "MET" and a["batch_size"] == 1 for a in answers)
        assert wall_ms >= sum(a["slot_ms"] for a in answers)
        # The later one waited for the earlier one's slot, less the time between their arrivals at the device
        # (up to 7 ms of a 61 ms slot on a loaded box, seen in a clean-clone run): half a slot is a sure bound.
        assert max(a["device_wait_ms"] for a in answers) >= 0.5 * min(a["slot_ms"] for a in answers)
        assert all(0 <= a["device_call_ms"] < 100 for a in answers)  # the actor call's own cost

        args = argparse.Namespace(process="poisson", trace_seed=7, segment_s=None, ingress="proxy",
                                  propagate_deadlines=False, samples_per_call=1)
        section = le._section(emu, 0.3, rows, replays, grid, "edgeserving", "lookahead", tmp_path, 1)
        result = le._report(emu, [section], [0.3], 2.0, [50.0], args, tmp_path, 1.0)
        (load,) = json.loads((tmp_path / "live.json").read_text())["loads"]
        assert [c["policy"] for c in load["configurations"]] == [
            "edgeserving", "lookahead", f"plain Ray Serve {grid[0].label()}"]
        assert result["capacity_rps"] == pytest.approx(emu.capacity_rps())
        assert result["ingress"] == "proxy" and result["propagate_deadlines"] is False
        assert result["samples_per_call"] == 1
        assert (tmp_path / "live-load0.3.png").stat().st_size > 10_000
        assert "issue 6" in (tmp_path / "live.md").read_text()
    finally:
        harness.override_worker_args({})


def _ab_args(**kw):
    import argparse

    from bench import live_ab

    p = argparse.ArgumentParser()
    live_ab.add_arguments(p)
    return p.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in kw.items()])


def test_live_ab_settings_are_checked_against_the_config_before_ray_starts():
    from bench.live_ab import settings
    from scheduler.serving.config import ConfigError

    chosen = settings(_ab_args(a="gil_switch_interval_ms=null", b="gil_switch_interval_ms=0.5",
                               policy="lookahead:latency_target=0.5"))
    assert list(chosen.values()) == [
        {"policy": "lookahead", "policy_options": {"latency_target": 0.5}, "gil_switch_interval_ms": v}
        for v in (None, 0.5)]
    for a, b, message in (("gil_switch_interval_ms=0", "torch_threads=2", "gil_switch_interval_ms"),
                          ("no_such_key=1", "torch_threads=2", "no_such_key: unknown key"),
                          ("torch_threads=2", "torch_threads=2", "the same setting"),
                          ("torch_threads", "torch_threads=2", "is not key=value"),
                          ("ingress=haproxy", "ingress=direct", "ingress must be one of proxy, direct"),
                          ("propagate_deadlines=yes", "propagate_deadlines=true", "must be true or false")):
        with pytest.raises((ValueError, ConfigError), match=message):
            settings(_ab_args(a=a, b=b))
    # The path to the worker is a setting of its own: it is not a worker arg, and the two may differ by it alone.
    assert list(settings(_ab_args(a="ingress=proxy", b="ingress=direct")).values()) == [
        {"ingress": "proxy"}, {"ingress": "direct"}]
    # So is whether the client sends its send time (deadline propagation).
    assert list(settings(_ab_args(a="propagate_deadlines=false", b="propagate_deadlines=true")).values()) == [
        {"propagate_deadlines": False}, {"propagate_deadlines": True}]
