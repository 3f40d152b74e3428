"""Exit-boundary preemption: executors that stop a batch at an exit, the engine asking the policy between
stages, the simulator delivering mid-slot arrivals, and ``lookahead``'s rule for when to stop.

Profiles are deterministic (every quantile = the mean), so slot and stage times are exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.clock import VirtualClock
from scheduler.engine import Engine, EngineListener
from scheduler.executor import ProfileExecutor
from scheduler.policies.edgeserving import EdgeServingPolicy
from scheduler.policies.lookahead import LookaheadPolicy
from scheduler.profile import Profile
from scheduler.results import write_results
from scheduler.simulator import simulate
from scheduler.types import Outcome, Plan, Request, SlotResult
from tests.core_helpers import TWO_MODELS, queues, req

NOW = 1.0

# Three exits, so a slot to e3 has two boundaries to stop at (e1 after 2 ms, e2 after 5 ms at batch 2).
THREE = Profile.from_latencies("three-exits", {
    "A": {"e1": {1: 1.0, 2: 2.0}, "e2": {1: 3.0, 2: 5.0}, "e3": {1: 6.0, 2: 10.0}},
}, accuracy={"A": {"e1": 0.5, "e2": 0.7, "e3": 0.9}})


def exact(**options) -> LookaheadPolicy:
    """``lookahead`` on exact slot times, no reserve or budget, preemption on unless asked otherwise."""
    base = {"bmax": 4, "quantile": "mean", "adaptive": False, "reserve": False, "budget": False, "preempt": True}
    return LookaheadPolicy(**{**base, **options})


class StopAt(EdgeServingPolicy):
    """The reference policy, made preemptive: it stops every slot at ``exit`` (None: never) and logs
    each question with the clock and the queued request ids."""

    def __init__(self, exit: str | None, **kw) -> None:
        super().__init__(**kw)
        self.exit = exit
        self.asked: list[tuple[float, str, frozenset[str]]] = []

    @property
    def preemptive(self) -> bool:
        return True

    def preempt(self, now_s, plan, exit_done, queues, profile) -> bool:
        self.asked.append((now_s, exit_done, frozenset(r.id for q in queues.values() for r in q)))
        return exit_done == self.exit


class Slots(EngineListener):
    def __init__(self) -> None:
        self.slots: list[SlotResult] = []

    def slot_done(self, plan, slot, decision_ms) -> None:
        self.slots.append(slot)


# -- the profile executor -------------------------------------------------------------------------


def test_profile_executor_stops_at_the_boundary_in_proportion_to_the_profile():
    clock = VirtualClock(NOW)
    ex = ProfileExecutor(THREE, clock, np.random.default_rng(0))
    plan = Plan.run("A", "e3", (req("a", "A", NOW, 50), req("b", "A", NOW, 50)), 10.0)
    seen = []

    def stop(exit_done: str) -> bool:
        seen.append((exit_done, round((clock.now() - NOW) * 1000.0, 9)))
        return exit_done == "e2"

    slot = ex.run_preemptible(plan, stop)
    # Boundaries at mean(e1)/mean(e3) and mean(e2)/mean(e3) of the drawn 10 ms: 2 ms and 5 ms.
    assert seen == [("e1", 2.0), ("e2", 5.0)]
    assert slot == SlotResult(slot_ms=5.0, exits=("e2", "e2"), preempted=True)
    assert clock.now() == NOW + 0.005


def test_profile_executor_never_stopped_matches_run_exactly():
    noisy = Profile.from_dict({**THREE.to_dict(), "models": {"A": {**THREE.to_dict()["models"]["A"], "latency_ms": {
        e: {b: {"mean": q["mean"], "p50": q["mean"] * 0.9, "p90": q["mean"] * 1.1, "p95": q["mean"] * 1.2,
                "p99": q["mean"] * 1.5} for b, q in per_b.items()}
        for e, per_b in THREE.to_dict()["models"]["A"]["latency_ms"].items()}}}})
    plan = Plan.run("A", "e3", (req("a", "A", NOW, 50),), 6.0)
    for seed in range(5):
        c1, c2 = VirtualClock(NOW), VirtualClock(NOW)
        plain = ProfileExecutor(noisy, c1, np.random.default_rng(seed)).run(plan)
        staged = ProfileExecutor(noisy, c2, np.random.default_rng(seed)).run_preemptible(plan, lambda e: False)
        assert staged == plain and not staged.preempted
        assert c1.now() == c2.now()  # the very same float: results cannot drift by a rounding


# -- the engine ----------------------------------------------------------------------------------


def test_engine_never_preempting_when_the_policy_says_no_gives_identical_results(tmp_path):
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(0.002, 400))
    trace = [Request(str(i), "AB"[i % 3 == 0], float(t[i]), float(t[i]) + 0.02) for i in range(400)]
    policy = StopAt(None, bmax=4, quantile="mean")
    plain = simulate(trace, TWO_MODELS, EdgeServingPolicy(bmax=4, quantile="mean"), seed=1)
    asked = simulate(trace, TWO_MODELS, policy, seed=1)
    assert policy.asked, "the stage-by-stage path was not exercised"
    write_results(tmp_path / "plain.csv", plain)
    write_results(tmp_path / "asked.csv", asked)
    assert (tmp_path / "plain.csv").read_bytes() == (tmp_path / "asked.csv").read_bytes()


def test_engine_answers_a_stopped_batch_from_the_exit_reached():
    clock = VirtualClock(NOW)
    slots = Slots()
    policy = StopAt("e1", bmax=2, quantile="mean")
    engine = Engine(THREE, policy, ProfileExecutor(THREE, clock, np.random.default_rng(0)), clock, listeners=[slots])
    for r in (req("a", "A", NOW, 50), req("b", "A", NOW, 50)):
        engine.submit(r)
    step = engine.step()
    assert step.plan.exit == "e3"  # the reference planned the deepest exit; the slot stopped after e1
    assert [(r.exit, r.outcome, r.slot_ms) for r in step.results] == [("e1", Outcome.MET, 2.0)] * 2
    assert clock.now() == NOW + 0.002 and slots.slots[0].preempted


def test_engine_without_a_preemptible_executor_runs_whole_slots():
    class WholeOnly:
        def __init__(self, inner: ProfileExecutor) -> None:
            self.inner = inner

        def run(self, plan: Plan) -> SlotResult:
            return self.inner.run(plan)

    clock = VirtualClock(NOW)
    policy = StopAt("e1", bmax=2, quantile="mean")
    engine = Engine(THREE, policy, WholeOnly(ProfileExecutor(THREE, clock, np.random.default_rng(0))), clock)
    engine.submit(req("a", "A", NOW, 50))
    assert not engine.preemptive
    assert [r.exit for r in engine.step().results] == ["e3"] and policy.asked == []


# -- the simulator ---------------------------------------------------------------------------------


def test_simulator_delivers_mid_slot_arrivals_before_each_question_deterministically(tmp_path):
    rng = np.random.default_rng(5)
    t = np.cumsum(rng.exponential(0.0015, 300))
    trace = [Request(str(i), "A", float(t[i]), float(t[i]) + 0.05) for i in range(300)]
    arrival = {r.id: r.arrival_s for r in trace}
    runs = []
    for _ in range(2):
        policy = StopAt(None, bmax=2, quantile="mean")
        results = simulate(trace, THREE, policy, seed=9)
        runs.append((policy.asked, results))
        done_at = {r.request.id: r.finish_s for r in results}
        for now_s, _, queued in policy.asked:
            # Everything queued has arrived by the question, and every arrival up to it that has not
            # yet been answered (nor is in the running batch) is queued: none is held back to the end of the slot.
            assert all(arrival[i] <= now_s for i in queued)
            waiting = {i for i, a in arrival.items() if a <= now_s and done_at[i] > now_s}
            assert queued <= waiting and len(waiting - queued) <= 2  # at most the running batch of Bmax = 2
    assert sum(1 for _, _, q in runs[0][0] if q) > 50  # arrivals really landed mid-slot
    assert runs[0][0] == runs[1][0]
    write_results(tmp_path / "a.csv", runs[0][1])
    write_results(tmp_path / "b.csv", runs[1][1])
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# -- lookahead's rule ------------------------------------------------------------------------------


def running(policy: LookaheadPolicy, *batch: Request) -> Plan:
    """Let ``policy`` plan ``batch`` at NOW (so it knows when the slot was decided) and return the plan."""
    plan = policy.plan(NOW, queues(TWO_MODELS, *batch), TWO_MODELS)
    assert plan.requests == batch
    return plan


def test_lookahead_stops_when_an_arrival_would_miss_and_the_save_outweighs_the_loss():
    policy = exact()
    a = (req("a0", "A", NOW, 100), req("a1", "A", NOW, 100))
    plan = running(policy, *a)
    assert (plan.exit, plan.predicted_ms) == ("e2", 6.0)  # the boundary after e1 is at 3 ms
    at_s = NOW + 0.003
    # B arrived 1 ms into the slot with 6 ms to go. Running on to e2 ends at 6 ms, B alone at e1 (3 ms)
    # then ends at 9 ms > 7; stopping now ends B at 6 ms. Saved: 1 x B's e1 accuracy (0.5); lost: 2 x
    # (0.8 - 0.6) = 0.4.
    urgent = Request("b", "B", NOW + 0.001, NOW + 0.007)
    assert policy.preempt(at_s, plan, "e1", queues(TWO_MODELS, urgent), TWO_MODELS)
    # With 10 ms to go B makes it either way: no stop.
    relaxed = Request("b", "B", NOW + 0.001, NOW + 0.010)
    assert not policy.preempt(at_s, plan, "e1", queues(TWO_MODELS, relaxed), TWO_MODELS)
    # A request queued before the decision is no news: the plan's look-ahead already weighed it.
    old = Request("b", "B", NOW - 0.001, NOW + 0.007)
    assert not policy.preempt(at_s, plan, "e1", queues(TWO_MODELS, old), TWO_MODELS)
    # Off by default.
    assert not exact(preempt=False).preempt(at_s, plan, "e1", queues(TWO_MODELS, urgent), TWO_MODELS)


def test_lookahead_weighs_the_accuracy_the_stopped_batch_loses():
    policy = exact()
    a = tuple(req(f"a{i}", "A", NOW, 100) for i in range(3))
    plan = running(policy, *a)
    assert (plan.exit, plan.predicted_ms) == ("e2", 8.0)
    # Boundary after e1 at 4 ms. B arrived with 7 ms to go: stopping saves it (4 + 3 <= 8), running on
    # dooms it (8 + 3 > 8), but the batch would lose 3 x 0.2 = 0.6 for B's 0.5: no stop.
    urgent = Request("b", "B", NOW + 0.001, NOW + 0.008)
    assert not policy.preempt(NOW + 0.004, plan, "e1", queues(TWO_MODELS, urgent), TWO_MODELS)
    two = (urgent, Request("b2", "B", NOW + 0.002, NOW + 0.009))  # two saved: 1.0 > 0.6
    assert policy.preempt(NOW + 0.004, plan, "e1", queues(TWO_MODELS, *two), TWO_MODELS)


def test_lookahead_never_stops_below_the_accuracy_floor():
    # The state in which the first test stops after e1, but A's floor (0.7) rules e1 out as an answer.
    policy = exact(floors={"A": 0.7})
    plan = running(policy, req("a0", "A", NOW, 100), req("a1", "A", NOW, 100))
    urgent = Request("b", "B", NOW + 0.001, NOW + 0.007)
    assert not policy.preempt(NOW + 0.003, plan, "e1", queues(TWO_MODELS, urgent), TWO_MODELS)
    free = exact()
    assert free.preempt(NOW + 0.003, running(free, *plan.requests), "e1", queues(TWO_MODELS, urgent), TWO_MODELS)


def test_lookahead_end_to_end_saves_the_late_arrival_and_keeps_the_correction_clean():
    trace = [req("a0", "A", NOW, 100), req("a1", "A", NOW, 100), Request("b", "B", NOW + 0.001, NOW + 0.007)]
    policy = exact(adaptive=True)
    out = {r.request.id: r for r in simulate(trace, TWO_MODELS, policy, seed=0)}
    assert [(out[i].exit, out[i].outcome) for i in ("a0", "a1")] == [("e1", Outcome.MET)] * 2
    assert out["a0"].finish_s == pytest.approx(NOW + 0.003)  # stopped after e1 of a 6 ms slot
    assert out["b"].outcome is Outcome.MET and out["b"].finish_s == pytest.approx(NOW + 0.006)
    assert policy.stats()["preemption"] == {"slots": 1, "accuracy_lost": pytest.approx(0.4)}
    # The stopped slot is no sample of e2's latency: only B's whole slot reached the correction.
    assert policy.correction.observations == 1
    # Without preemption the same trace leaves B no way to make it.
    plain = {r.request.id: r for r in simulate(trace, TWO_MODELS, exact(preempt=False), seed=0)}
    assert plain["a0"].exit == "e2" and plain["b"].outcome is not Outcome.MET


# -- the torch executor ----------------------------------------------------------------------------


def _cnn():
    import torch

    from models.families import build
    from models.train import init_model

    net = init_model(lambda: build("cnn1d", (1, 40), 10, {"channels": [8, 8, 16], "exits": ["stage1", "stage2"]}), 0)
    gen = torch.Generator().manual_seed(0)
    reqs = tuple(Request(f"r{i}", "cnn", 0.0, 1.0, payload=torch.randn(1, 40, generator=gen)) for i in range(6))
    return net.eval(), reqs


def test_torch_executor_stopped_batch_answers_from_the_exit_reached():
    import torch

    from models.executor import TorchExecutor

    net, reqs = _cnn()
    clock = VirtualClock()
    ex = TorchExecutor({"cnn": net}, "cpu", clock)
    x = torch.stack([r.payload for r in reqs])
    plan = Plan.run("cnn", "final", reqs, 1.0)
    asked = []

    def stop_at(exit: str):
        def ask(exit_done: str) -> bool:
            asked.append((exit_done, clock.now()))
            return exit_done == exit
        return ask

    for k, exit in enumerate(("stage1", "stage2")):
        asked.clear()
        start = clock.now()
        slot = ex.run_preemptible(plan, stop_at(exit))
        with torch.inference_mode():
            probs = torch.softmax(net(x, exit=k), -1)  # head k's answer to the same inputs
        assert slot.preempted and slot.exits == (exit,) * 6
        assert list(slot.predictions) == probs.argmax(-1).tolist()
        assert slot.confidences == pytest.approx(probs.max(-1).values.tolist(), abs=1e-6)
        assert [e for e, _ in asked] == ["stage1", "stage2"][: k + 1]
        assert all(t > start for _, t in asked)  # the stages' measured time had passed before each question
        assert clock.now() - start == pytest.approx(slot.slot_ms / 1000.0)
    whole = ex.run(plan)
    never = ex.run_preemptible(plan, lambda e: False)
    assert not never.preempted and never.exits == whole.exits == ("final",) * 6
    assert never.predictions == whole.predictions


def test_torch_executor_preemption_with_confidence_exits():
    import torch

    from models.executor import ConfidenceExit, TorchExecutor

    net, reqs = _cnn()
    x = torch.stack([r.payload for r in reqs])
    with torch.inference_mode():
        logits = [net(x, exit=k) for k in range(3)]
    conf0 = torch.softmax(logits[0], -1).max(-1).values
    median = float(conf0.median())
    ex = TorchExecutor({"cnn": net}, "cpu", confidence={"cnn": ConfidenceExit((median, 2.0))})
    slot = ex.run_preemptible(Plan.run("cnn", "final", reqs, 1.0), lambda e: e == "stage2")
    # The confident half left at stage1; the stop answered the rest from stage2's head.
    for i, e in enumerate(slot.exits):
        k = 0 if conf0[i] >= median else 1
        assert e == ("stage1", "stage2")[k]
        assert slot.predictions[i] == int(logits[k][i].argmax())
    assert slot.preempted and set(slot.exits) == {"stage1", "stage2"}
