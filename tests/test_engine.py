"""The engine applies plans: admission, drops, slots, failures and exactly one outcome per request."""

import numpy as np
import pytest

from scheduler.clock import VirtualClock
from scheduler.engine import DEADLINE_INFEASIBLE, DISPLACED, QUEUE_FULL, AdmissionConfig, Engine, EngineListener
from scheduler.executor import ProfileExecutor
from scheduler.policies import make_policy
from scheduler.types import Outcome, Plan, SlotResult
from tests.core_helpers import TWO_MODELS, req


class Record(EngineListener):
    def __init__(self):
        self.results, self.slots = [], []

    def request_done(self, result):
        self.results.append(result)

    def slot_done(self, plan, slot, decision_ms):
        self.slots.append((plan, slot, decision_ms))


def make_engine(policy="edgeserving", executor=None, admission=None, start_s=1.0, bmax=2, timer=None):
    clock = VirtualClock(start_s)
    rec = Record()
    executor = executor or ProfileExecutor(TWO_MODELS, clock, np.random.default_rng(0))
    engine = Engine(TWO_MODELS, make_policy(policy, bmax=bmax, quantile="mean"), executor, clock,
                    admission=admission, listeners=[rec], timer=timer)
    return engine, clock, rec


def test_a_slot_completes_its_batch_met_or_late_by_finish_time():
    engine, clock, rec = make_engine()
    ok = req("ok", "A", 1.0, 10)  # batch of 2 at e2 takes 6 ms: meets 10 ms
    tight = req("tight", "A", 1.0, 5.5)  # the reference picks e1 at Bmax (3 ms): meets too
    for r in (ok, tight):
        assert engine.submit(r) is None
    step = engine.step()
    assert step.plan.requests == (ok, tight)
    assert clock.now() == pytest.approx(1.0 + step.plan.predicted_ms / 1000)
    assert [r.outcome for r in step.results] == [Outcome.MET, Outcome.MET]
    assert all(r.batch_size == 2 and r.queue_ms == 0.0 for r in step.results)
    assert engine.pending() == 0 and rec.results == step.results


def test_late_is_decided_by_the_finish_time():
    engine, _, _ = make_engine(policy="all_final")
    r = req("r", "B", 1.0, 7.999)  # B's final exit alone takes 8 ms
    engine.submit(r)
    (result,) = engine.step().results
    assert result.outcome is Outcome.LATE and result.finish_s == pytest.approx(1.008)
    assert result.latency_ms == pytest.approx(8.0)


class Exploding:
    def run(self, plan):
        raise RuntimeError("bad tensor")


def test_a_failed_slot_fails_only_its_own_requests_and_the_engine_goes_on():
    engine, clock, rec = make_engine(policy="all_final", executor=Exploding())
    a, b = req("a", "A", 1.0, 50), req("b", "B", 1.0, 50)
    engine.submit(a)
    engine.submit(b)
    step = engine.step()
    assert [(r.request, r.outcome) for r in step.results] == [(a, Outcome.FAILED)]
    assert "RuntimeError: bad tensor" in step.results[0].reason
    assert engine.pending() == 1
    assert rec.slots[-1][1] is None  # listeners hear about the failed slot
    engine.executor = ProfileExecutor(TWO_MODELS, clock, np.random.default_rng(0))
    assert engine.step().results[0].outcome is Outcome.MET


def test_admission_queue_bound_and_infeasible_deadline():
    engine, _, rec = make_engine(admission=AdmissionConfig(queue_bound=2, reject_infeasible=True))
    assert engine.submit(req("a1", "A", 1.0, 50)) is None
    assert engine.submit(req("a2", "A", 1.0, 50)) is None
    full = engine.submit(req("a3", "A", 1.0, 50))
    assert full.outcome is Outcome.REJECTED and full.reason == QUEUE_FULL
    hopeless = engine.submit(req("b1", "B", 1.0, 2.0))  # B's shallowest exit alone takes 3 ms
    assert hopeless.outcome is Outcome.REJECTED and hopeless.reason == DEADLINE_INFEASIBLE
    assert engine.queue_depths() == {"A": 2, "B": 0}
    assert [r.request.id for r in rec.results] == ["a3", "b1"]


def test_a_full_queue_gives_a_salvaged_requests_place_to_one_that_can_still_make_it():
    engine, _, rec = make_engine(policy="lookahead", admission=AdmissionConfig(queue_bound=2))
    stale, late = req("stale", "B", 0.97, 30), req("late", "B", 0.98, 21)  # 0 and 1 ms left; B alone takes 3
    assert engine.submit(stale) is None and engine.submit(late) is None  # kept for spare time (salvage)
    assert engine.submit(req("fresh", "B", 1.0, 50)) is None  # the stalest gives up its place
    assert [(r.request, r.outcome, r.reason) for r in rec.results] == [(stale, Outcome.DROPPED, DISPLACED)]
    hopeless = engine.submit(req("hopeless", "B", 0.98, 21))  # no better than what it would displace
    assert hopeless.outcome is Outcome.REJECTED and hopeless.reason == QUEUE_FULL
    assert sorted(r.id for r in engine.queues["B"]) == ["fresh", "late"]
    # The reference policy keeps no salvage: a full queue refuses, as before.
    engine, _, rec = make_engine(policy="edgeserving", admission=AdmissionConfig(queue_bound=1))
    assert engine.submit(req("late", "B", 0.98, 21)) is None
    assert engine.submit(req("fresh", "B", 1.0, 50)).reason == QUEUE_FULL


def test_unknown_model_is_a_value_error():
    engine, _, _ = make_engine()
    with pytest.raises(ValueError, match=r"unknown model 'C'; this engine serves \['A', 'B'\]"):
        engine.submit(req("c", "C", 1.0, 5))


def test_drops_end_dropped_and_free_the_queue():
    engine, _, _ = make_engine(policy="clockwork")
    hopeless = req("h", "B", 0.99, 12)  # 2 ms left; B's final alone takes 8 ms
    engine.submit(hopeless)
    step = engine.step()
    assert [(r.request, r.outcome, r.reason) for r in step.results] == [
        (hopeless, Outcome.DROPPED, "deadline_unreachable")]
    assert engine.pending() == 0
    assert engine.step().plan is None


def test_fail_all_ends_every_queued_request():
    engine, _, rec = make_engine()
    for i in range(3):
        engine.submit(req(f"a{i}", "A", 1.0, 50))
    failed = engine.fail_all()
    assert [r.outcome for r in failed] == [Outcome.FAILED] * 3 and engine.pending() == 0
    assert len(rec.results) == 3


def test_invalid_plans_are_caught():
    class Greedy:
        name, bmax = "greedy", 1

        def plan(self, now_s, queues, profile):
            return Plan.run("A", "e1", tuple(queues["A"]), 1.0)

        def admit(self, *args):
            return None

        def observe(self, plan, slot):
            pass

    clock = VirtualClock(1.0)
    engine = Engine(TWO_MODELS, Greedy(), ProfileExecutor(TWO_MODELS, clock, np.random.default_rng(0)), clock)
    engine.submit(req("a", "A", 1.0, 5))
    engine.submit(req("b", "A", 1.0, 5))
    with pytest.raises(AssertionError, match="exceeds Bmax 1"):
        engine.step()


def test_decision_time_is_measured_with_the_injected_timer():
    ticks = iter([10.0, 10.000025])
    engine, _, rec = make_engine(timer=lambda: next(ticks))
    engine.submit(req("a", "A", 1.0, 50))
    engine.step()
    assert rec.slots[0][2] == pytest.approx(0.025)
    assert isinstance(rec.slots[0][1], SlotResult)


def test_the_device_idle_time_while_work_waits_is_measured_and_an_idle_spell_is_not_counted():
    engine, clock, _ = make_engine(bmax=1)
    for i in range(3):
        engine.submit(req(str(i), "A", 1.0, 500))
    clock.sleep(0.001)  # the engine thread wakes up
    assert engine.step().gap_ms == pytest.approx(1.0)  # from the first arrival on an idle engine
    clock.sleep(0.003)  # the loop's bookkeeping between two slots, with two requests waiting
    assert engine.step().gap_ms == pytest.approx(3.0)
    assert engine.step().gap_ms == pytest.approx(0.0)  # straight on
    assert engine.step().plan is None  # nothing queued: idle from here
    clock.sleep(1.0)  # no work: not a gap
    engine.submit(req("late", "A", clock.now(), 500))
    assert engine.step().gap_ms == pytest.approx(0.0)


def test_wait_for_arrival_returns_early_when_a_request_is_queued():
    import threading

    from scheduler.clock import RealClock

    clock = RealClock()
    engine = Engine(TWO_MODELS, make_policy("symphony", bmax=2), ProfileExecutor(TWO_MODELS, clock,
                    np.random.default_rng(0)), clock)
    threading.Timer(0.05, lambda: engine.submit(req("a", "A", clock.now(), 50))).start()
    start = clock.now()
    engine.wait_for_arrival(start + 30.0, max_wait_s=30.0)
    assert clock.now() - start < 10.0  # woken by the submit, not by the 30 s timeout
    assert engine.pending() == 1
