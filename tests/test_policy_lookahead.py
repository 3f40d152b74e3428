"""The ``lookahead`` policy's capabilities, each pinned on a small hand-made state.

Profiles here are deterministic (every quantile = the mean) and the policy runs with
``adaptive=False, quantile="mean"``, so every predicted slot time is exact and hand-computable.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.engine import EngineListener
from scheduler.policies import make_policy
from scheduler.policies.exits import allowed_exits, pareto_exits
from scheduler.policies.lookahead import ACCURACY_FLOOR, DEADLINE_INFEASIBLE, LookaheadPolicy
from scheduler.profile import Profile
from scheduler.simulator import simulate
from scheduler.summary import summarize
from scheduler.types import Outcome, Request, SlotResult
from tests.core_helpers import TWO_MODELS, draw_requests, queues, req

NOW = 1.0

# A has a dominated exit: e3 is slower than e2 at every batch size and less accurate.
DOMINATED = Profile.from_latencies("dominated", {
    "A": {"e1": {1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0}, "e2": {1: 4.0, 2: 6.0, 3: 8.0, 4: 10.0},
          "e3": {1: 5.0, 2: 7.0, 3: 9.0, 4: 11.0}},
    "B": {"e1": {1: 3.0, 2: 4.0, 3: 5.0, 4: 6.0}, "e2": {1: 8.0, 2: 10.0, 3: 12.0, 4: 14.0}},
}, accuracy={"A": {"e1": 0.6, "e2": 0.8, "e3": 0.79}, "B": {"e1": 0.5, "e2": 0.9}})


# TWO_MODELS with a spread: p99 = 1.3 x the mean, so slot times vary and the margin is learned.
NOISY = Profile.from_dict({**TWO_MODELS.to_dict(), "models": {
    m: {**spec, "latency_ms": {e: {b: {"mean": q["mean"], "p50": q["mean"] * 0.97, "p90": q["mean"] * 1.05,
                                       "p95": q["mean"] * 1.1, "p99": q["mean"] * 1.3}
                                   for b, q in per_batch.items()} for e, per_batch in spec["latency_ms"].items()}}
    for m, spec in TWO_MODELS.to_dict()["models"].items()}})


def exact(**options) -> LookaheadPolicy:
    """The policy on exact slot times: no learned margin, no arrival reserve, no budget, unless asked."""
    base = {"bmax": 4, "quantile": "mean", "adaptive": False, "reserve": False, "budget": False}
    return LookaheadPolicy(**{**base, **options})


def test_registered_and_options_are_validated():
    assert isinstance(make_policy("lookahead"), LookaheadPolicy)
    with pytest.raises(ValueError, match="shed must be one of"):
        LookaheadPolicy(shed="sometimes")
    with pytest.raises(ValueError, match="accuracy floor of 'A' must be in"):
        LookaheadPolicy(floors={"A": 1.5})


def test_saves_the_head_of_another_queue():
    # A: four requests with 11 ms left; B: one with 12 ms left.
    # Running A's batch at its deep exit (10 ms) meets A's own deadlines but then B, even alone at
    # its shallowest exit (3 ms), would finish at 13 ms: doomed. A at e1 (5 ms) leaves B room.
    a = [req(f"a{i}", "A", NOW - 0.009 + 0.001 * i, 20) for i in range(4)]
    a = [Request(r.id, "A", r.arrival_s, NOW + 0.011) for r in a]
    b = Request("b", "B", NOW - 0.010, NOW + 0.012)
    qs = queues(TWO_MODELS, *a, b)
    plan = exact().plan(NOW, qs, TWO_MODELS)
    assert (plan.model, plan.exit, plan.batch_size, plan.predicted_ms) == ("A", "e1", 4, 5.0)
    b_alone_ms = TWO_MODELS.latency_ms("B", "e1", 1, "mean")
    assert NOW + (plan.predicted_ms + b_alone_ms) / 1000.0 <= b.deadline_s  # B's head is still saved
    # Without the look-ahead the same state dooms B: A runs at e2 (10 ms), B cannot finish by 12 ms.
    greedy = exact(lookahead=False).plan(NOW, qs, TWO_MODELS)
    assert (greedy.model, greedy.exit) == ("A", "e2")
    assert NOW + (greedy.predicted_ms + b_alone_ms) / 1000.0 > b.deadline_s


def test_reserve_keeps_room_for_a_fresh_arrival_of_another_model():
    # Only B is queued (30 ms left). A's recent requests carried 12 ms deadlines: with the reserve,
    # B's slot must leave an A request arriving now 2 ms (A alone at e1) before its 12 ms deadline,
    # so B's e2 (8 ms) fits but nothing longer would; without history there is nothing to reserve.
    policy = exact(reserve=True, bmax=4)
    b = [Request(f"b{i}", "B", NOW - 0.001, NOW + 0.030) for i in range(4)]  # e2 at batch 4 = 14 ms
    qs = queues(TWO_MODELS, *b)
    assert exact(reserve=True).plan(NOW, qs, TWO_MODELS).exit == "e2"
    from scheduler.types import Plan

    a_done = Plan.run("A", "e1", (Request("old", "A", 0.5, 0.512),), 2.0)
    policy.observe(a_done, SlotResult(2.0, ("e1",)))
    plan = policy.plan(NOW, qs, TWO_MODELS)
    # 12 ms - 2 ms for the fresh A request = 10 ms of room: e2 at batch 4 (14 ms) no longer fits.
    assert (plan.model, plan.exit, plan.predicted_ms) == ("B", "e1", 6.0)


def test_dominated_exit_is_never_chosen():
    assert pareto_exits([0.6, 0.8, 0.79], [[0, 2, 3], [0, 4, 6], [0, 5, 7]], 2) == (0, 1)
    assert allowed_exits(DOMINATED, 4) == {"A": (0, 1), "B": (0, 1)}
    roomy = req("a", "A", NOW - 0.001, 100)
    plan = exact().plan(NOW, queues(DOMINATED, roomy), DOMINATED)
    assert (plan.model, plan.exit) == ("A", "e2")  # the most accurate exit, not the deepest
    # Accuracy-blind, the deepest feasible exit is the dominated one.
    assert exact(accuracy_aware=False).plan(NOW, queues(DOMINATED, roomy), DOMINATED).exit == "e3"


def test_seed_profile_final_exits_are_dominated():
    from scheduler.paths import seed_profile_path

    path = seed_profile_path()
    if not path.exists():
        pytest.skip(f"seed profile not found at {path}")
    seed = Profile.load(path)
    for model, exits in allowed_exits(seed, 10).items():
        names = [seed.model(model).exits[e] for e in exits]
        assert "final" not in names and "layer3" in names


def test_most_accurate_exit_that_keeps_the_deadline():
    # 7 ms left: A alone at e2 (4 ms) fits; with batch 3 e2 takes 8 ms, so e1 (4 ms).
    one = [req("a", "A", NOW - 0.013, 20)]
    assert exact().plan(NOW, queues(TWO_MODELS, *one), TWO_MODELS).exit == "e2"
    three = [req(f"a{i}", "A", NOW - 0.013, 20) for i in range(3)]
    plan = exact().plan(NOW, queues(TWO_MODELS, *three), TWO_MODELS)
    assert (plan.exit, plan.batch_size, plan.predicted_ms) == ("e1", 3, 4.0)


# C has three exits on the Pareto front, so "one exit shallower" differs from "the shallowest".
THREE_EXITS = Profile.from_latencies("three-exits", {
    "C": {"e1": {1: 1.0, 2: 1.5}, "e2": {1: 2.0, 2: 3.0}, "e3": {1: 4.0, 2: 6.0}},
}, accuracy={"C": {"e1": 0.5, "e2": 0.7, "e3": 0.9}})


def test_latency_target_aims_each_batch_at_a_fraction_of_its_deadline():
    # C arrived 3 ms ago with a 40 ms deadline: 37 ms left, so the deepest exit e3 (4 ms) by default.
    qs = queues(THREE_EXITS, req("c", "C", NOW - 0.003, 40))
    exit_with = {t: exact(bmax=2, latency_target=t).plan(NOW, qs, THREE_EXITS).exit for t in (1.0, 0.25, 0.15, 0.05)}
    # target 0.25: ends by arrival + 10 ms, 7 ms from now: e3 still fits. 0.15: 3 ms from now: e2.
    # 0.05: the target (arrival + 2 ms) has passed: one exit shallower than e3, not the shallowest.
    assert exit_with == {1.0: "e3", 0.25: "e3", 0.15: "e2", 0.05: "e2"}
    with pytest.raises(ValueError, match="latency_target must be in"):
        LookaheadPolicy(latency_target=0.0)
    assert make_policy("lookahead:latency_target=0.5").latency_target == 0.5


def test_latency_target_lowers_p95_at_moderate_load_and_keeps_deadlines():
    rng = np.random.default_rng(7)
    reqs = []
    for m, rate in (("A", 250.0), ("B", 120.0)):
        t = np.cumsum(rng.exponential(1.0 / rate, int(rate * 20)))
        reqs += [req(f"{m}{i}", m, float(a), 60.0) for i, a in enumerate(t)]
    reqs.sort(key=lambda r: r.arrival_s)
    runs = {}
    for target in (1.0, 0.5):
        s = summarize(simulate(reqs, TWO_MODELS, LookaheadPolicy(bmax=4, latency_target=target), seed=1),
                      TWO_MODELS, "lookahead")
        runs[target] = (s["violation_ratio"], s["p95_ms"], s["mean_accuracy"])
    (late_1, p95_1, acc_1), (late_h, p95_h, acc_h) = runs[1.0], runs[0.5]
    assert late_h <= late_1 and p95_h < 0.8 * p95_1, runs
    assert acc_h < acc_1, runs  # the price: shallower exits


def test_mixed_deadlines_in_one_queue():
    # Arrival order: a 200 ms request, then an 8 ms one. The short one goes first and sets the exit.
    long_ = req("long", "A", NOW - 0.010, 200)
    short = req("short", "A", NOW - 0.005, 9)  # 4 ms left
    qs = queues(TWO_MODELS, long_, short)
    assert exact(bmax=1).plan(NOW, qs, TWO_MODELS).requests == (short,)
    both = exact().plan(NOW, qs, TWO_MODELS)
    assert both.requests == (short, long_)
    assert (both.exit, both.predicted_ms) == ("e1", 3.0)  # e2 at batch 2 (6 ms) would miss the 4 ms
    # In arrival order (edf_batches off) the long request would take the only seat.
    assert exact(bmax=1, edf_batches=False).plan(NOW, qs, TWO_MODELS).requests == (long_,)


def test_hopeless_request_is_dropped_early():
    hopeless = req("h", "A", NOW - 0.019, 20)  # 1 ms left; A alone at e1 takes 2 ms
    fine = req("f", "A", NOW - 0.001, 20)
    plan = exact(shed="drop").plan(NOW, queues(TWO_MODELS, hopeless, fine), TWO_MODELS)
    assert plan.drop == (hopeless,) and plan.requests == (fine,)
    # With shedding off it runs (late) with the rest.
    kept = exact(shed="off").plan(NOW, queues(TWO_MODELS, hopeless, fine), TWO_MODELS)
    assert kept.drop == () and hopeless in kept.requests


def test_hopeless_request_is_rejected_at_admission_when_configured():
    policy = exact(shed="reject")
    assert policy.admit(NOW, req("x", "A", NOW, 1.5), queues(TWO_MODELS), TWO_MODELS) == DEADLINE_INFEASIBLE
    assert policy.admit(NOW, req("y", "A", NOW, 4), queues(TWO_MODELS), TWO_MODELS) is None
    # Four queued A requests due in 4 ms come first: at least e1 x 4 (5 ms) + 2 ms before a new one.
    backlog = [Request(f"q{i}", "A", NOW, NOW + 0.004) for i in range(4)]
    assert policy.admit(NOW, req("z", "A", NOW, 5), queues(TWO_MODELS, *backlog), TWO_MODELS) == DEADLINE_INFEASIBLE
    assert exact(shed="drop").admit(NOW, req("x", "A", NOW, 1.5), queues(TWO_MODELS), TWO_MODELS) is None


def test_salvage_answers_late_requests_only_with_spare_time_and_drops_stale_ones():
    late = req("late", "B", NOW - 0.019, 20)  # 1 ms left, B alone needs 3 ms: hopeless
    policy = exact(shed="salvage", salvage_ms=100)
    alone = policy.plan(NOW, queues(TWO_MODELS, late), TWO_MODELS)
    assert alone.requests == (late,) and alone.drop == ()  # nothing else to do: answer it late
    # An A request that must start within 1 ms (5 ms left, e2 takes 4 ms) goes first.
    urgent = req("urgent", "A", NOW - 0.015, 20)
    assert policy.plan(NOW, queues(TWO_MODELS, late, urgent), TWO_MODELS).requests == (urgent,)
    # Over salvage_ms past its deadline it is dropped.
    stale = req("stale", "B", NOW - 0.150, 20)
    assert policy.plan(NOW, queues(TWO_MODELS, stale, urgent), TWO_MODELS).drop == (stale,)


def test_displace_offers_the_stalest_late_request_only_to_a_newcomer_that_can_still_make_it():
    stale, late = req("stale", "B", NOW - 0.030, 20), req("late", "B", NOW - 0.019, 20)  # hopeless: B alone 3 ms
    on_time = req("on_time", "B", NOW, 20)
    qs = queues(TWO_MODELS, late, stale, on_time)
    fresh, doomed = req("fresh", "B", NOW, 20), req("doomed", "B", NOW - 0.019, 20)
    assert exact(shed="salvage").displace(NOW, fresh, qs, TWO_MODELS) is stale
    assert exact(shed="salvage").displace(NOW, doomed, qs, TWO_MODELS) is None
    assert exact(shed="drop").displace(NOW, fresh, qs, TWO_MODELS) is None  # nothing is kept late to give up
    assert exact(shed="salvage").displace(NOW, fresh, queues(TWO_MODELS, on_time), TWO_MODELS) is None
    # Past capacity: behind the live backlog (four batches of B, 6 ms each at e1), fresh would miss too.
    backlog = [req(f"b{k}", "B", NOW, 19) for k in range(16)]
    assert exact(shed="salvage").displace(NOW, fresh, queues(TWO_MODELS, stale, *backlog), TWO_MODELS) is None


@pytest.mark.parametrize("n_alone", [0, 20])  # both sides of the small-queue path
def test_a_late_sample_of_a_partly_answered_call_is_dropped_not_salvaged(n_alone):
    policy = exact(shed="salvage")
    call = [Request(f"c{k}", "B", NOW, NOW + 0.020, call="c") for k in range(6)]  # one call of 6, Bmax 4
    first = policy.plan(NOW, queues(TWO_MODELS, *call), TWO_MODELS)
    assert first.requests == tuple(call[:4])
    policy.observe(first, SlotResult(first.predicted_ms, (first.exit,) * 4))
    # 19 ms on the last two can no longer make it. Salvaging them would hold back the answered four.
    later = NOW + 0.019
    other = [Request(f"d{k}", "B", NOW, NOW + 0.020, call="d") for k in range(2)]  # no sample ran yet
    alone = [req(f"a{k}", "B", NOW - 0.001 * k, 20) for k in range(n_alone)]
    plan = policy.plan(later, queues(TWO_MODELS, *call[4:], *other, *alone), TWO_MODELS)
    assert set(plan.drop) == set(call[4:])
    assert set(other) <= set(plan.requests)  # salvaged, the most recently due first
    assert not set(alone) & set(plan.drop)


@pytest.mark.parametrize("n_late", [6, 20])  # both sides of the small-queue path
def test_salvage_answers_the_most_recently_due_first_unless_asked_for_oldest(n_late):
    # Every request is hopeless (B alone needs 3 ms, each has at most 1 ms left), due k ms apart.
    late = [req(f"late{k}", "B", NOW - 0.019 - k / 1000.0, 20) for k in range(n_late)]
    newest = exact(shed="salvage").plan(NOW, queues(TWO_MODELS, *late), TWO_MODELS)
    assert [r.id for r in newest.requests] == ["late0", "late1", "late2", "late3"]  # Bmax 4, freshest first
    oldest = exact(shed="salvage", salvage_order="oldest").plan(NOW, queues(TWO_MODELS, *late), TWO_MODELS)
    assert [r.id for r in oldest.requests] == [f"late{k}" for k in range(n_late - 1, n_late - 5, -1)]
    assert newest.drop == oldest.drop == ()
    with pytest.raises(ValueError, match="salvage_order must be one of"):
        exact(salvage_order="lifo")


@pytest.mark.parametrize(("rate_rps", "expected"), [(0, ("late", "e2")), (720, ("late", "e1")),
                                                   (800, ("on_time", "e2"))])
def test_salvage_leaves_the_time_that_arrivals_at_load_will_need(rate_rps, expected):
    # A's arrivals at rate_rps cost 1.25 ms each (e1, full batches of 4): load 0, 0.9, 1.0.
    late, on_time = req("late", "B", NOW - 0.019, 20), req("on_time", "A", NOW, 40)  # on_time may start in 36 ms
    qs = queues(TWO_MODELS, late, on_time)

    def at_load(policy: LookaheadPolicy, rps: int) -> LookaheadPolicy:
        """``policy`` after admitting A's arrivals at ``rps`` over the last second (what its budget counts)."""
        for k in range(rps):
            policy.admit(NOW - 1.0 + k / rps, req(f"a{k}", "A", NOW - 1.0 + k / rps, 40), qs, TWO_MODELS)
        return policy

    plan = at_load(exact(shed="salvage", budget=True), rate_rps).plan(NOW, qs, TWO_MODELS)
    # A late slot of L ms at load u needs L / (1 - u) of room: e2 (8 ms) at 0, e1 (3 ms) at 0.9, none at 1.
    assert (plan.requests[0].id, plan.exit) == expected
    off = at_load(exact(shed="salvage", budget=True, salvage_load=False), 800)
    assert off.plan(NOW, qs, TWO_MODELS).requests == (late,)  # the room as the queue shows it


def test_after_a_burst_past_capacity_late_answers_do_not_crowd_out_traffic_at_80_percent():
    """The CI overload scenario, simulated: 5x capacity for 60 s, then 80% of it. Arrivals come a little late
    (up to ~0.1 s, as through an HTTP client), so the queue is seldom empty and "spare" time is rare."""
    from dataclasses import replace

    from scheduler.engine import AdmissionConfig

    slot = Profile.from_latencies("ov", {"m": {"e1": {1: 240.0, 2: 320.0}, "e2": {1: 480.0, 2: 640.0}}})
    capacity_rps = 2 / 0.320
    rng = np.random.default_rng(8)
    burst = np.cumsum(rng.exponential(1.0 / (5 * capacity_rps), int(5 * capacity_rps * 60)))
    calm = 60.0 + np.cumsum(rng.exponential(1.0 / (0.8 * capacity_rps), int(0.8 * capacity_rps * 12)))
    met = {}
    for on in (True, False):
        shares = []
        for seed in range(3):
            jitter = np.abs(np.random.default_rng(seed).normal(0.0, 0.05, burst.size + calm.size))
            reqs = sorted((replace(req(f"r{i}", "m", float(a), 2000.0), arrival_s=float(a + j))
                           for i, (a, j) in enumerate(zip(np.concatenate([burst, calm]), jitter))),
                          key=lambda r: r.arrival_s)
            results = simulate(reqs, slot, LookaheadPolicy(bmax=2, salvage_load=on), seed=seed,
                               admission=AdmissionConfig(queue_bound=32, reject_infeasible=True))
            settled = [r for r in results if r.request.arrival_s >= 63.0]
            shares.append(sum(r.outcome is Outcome.MET for r in settled) / len(settled))
        met[on] = shares
    print(f"\nMET from 3 s after the burst, per seed: salvage_load on {[round(x, 3) for x in met[True]]}, "
          f"off {[round(x, 3) for x in met[False]]}")
    assert min(met[True]) >= 0.95, met
    assert sum(met[False]) < sum(met[True]), met  # the room as the queue shows it is not spare at 80%


def test_accuracy_floor_limits_exits_and_rejects_with_a_reason():
    policy = exact(floors={"A": 0.7})  # A's e1 (0.6) is below the floor
    assert policy.admit(NOW, req("a", "A", NOW, 3), queues(TWO_MODELS), TWO_MODELS) == ACCURACY_FLOOR
    assert policy.admit(NOW, req("b", "A", NOW, 1), queues(TWO_MODELS), TWO_MODELS) == DEADLINE_INFEASIBLE
    assert policy.admit(NOW, req("c", "A", NOW, 5), queues(TWO_MODELS), TWO_MODELS) is None
    assert policy.admit(NOW, req("d", "B", NOW, 1), queues(TWO_MODELS), TWO_MODELS) is None  # B has no floor
    urgent = [req(f"u{i}", "A", NOW - 0.015, 20) for i in range(2)]  # 5 ms left: e1 fits, e2 (6 ms) does not
    plan = policy.plan(NOW, queues(TWO_MODELS, *urgent), TWO_MODELS)
    assert plan.exit == "e2" and plan.batch_size == 1  # one of them at the floor, never e1
    unreachable = exact(floors={"A": 0.95})
    assert unreachable.admit(NOW, req("e", "A", NOW, 100), queues(TWO_MODELS), TWO_MODELS) == ACCURACY_FLOOR


def test_budget_steps_the_least_efficient_model_down_first():
    from scheduler.policies.budget import ExitBudget

    expected = {m: TWO_MODELS.table("mean").rows[m] for m in TWO_MODELS.model_names}
    budget = ExitBudget(("A", "B"), {"A": (0, 1), "B": (0, 1)}, bmax=4, target_load=0.5, adapt=False,
                        burst_horizon_s=None)
    budget.set_costs(expected, {m: TWO_MODELS.model(m).accuracy for m in TWO_MODELS.model_names})
    for i in range(200):  # 200 requests/s each over one second
        budget.arrival("A", i / 200)
        budget.arrival("B", i / 200)
    budget.solve(1.0)
    # Per request at batch 4: A e1 1.25 -> e2 2.5 ms (+0.2 acc: 0.16/ms); B e1 1.5 -> e2 3.5 ms (+0.4: 0.2/ms).
    # Base load 200 x (1.25 + 1.5) = 550 ms/s leaves -50 of a 500 ms/s budget: nothing is affordable.
    assert (budget.cap("A"), budget.cap("B")) == (0, 0)
    assert budget.base_load() == pytest.approx(0.55)  # the same 550 ms per second, as the device's share
    budget.target_load = 1.0
    budget.solve(1.0)
    # 450 ms/s to spend: B's upgrade (400 ms/s, more accuracy per ms) first, then a part of A's (250).
    assert budget.cap("B") == 1
    assert budget.describe()["split"][:2] == ("A", 1)


class _Plans(EngineListener):
    def __init__(self) -> None:
        self.exits: list[tuple[str, str]] = []

    def slot_done(self, plan, slot, decision_ms) -> None:
        self.exits.append((plan.model, plan.exit))


@st.composite
def workloads(draw):
    rs = draw_requests(draw, 80, 0.006)
    options = {
        "bmax": draw(st.integers(1, 4)),
        "shed": draw(st.sampled_from(["drop", "salvage", "reject", "off"])),
        "lookahead": draw(st.booleans()),
        "reserve": draw(st.booleans()),
        "budget": draw(st.booleans()),
        "adaptive": draw(st.booleans()),
        "edf_batches": draw(st.booleans()),
        "floors": draw(st.sampled_from([None, {"A": 0.7}, {"B": 0.95}])),
    }
    return rs, options, draw(st.integers(0, 3))


@settings(max_examples=120, deadline=None)
@given(workloads())
def test_never_breaks_engine_invariants(case):
    requests, options, seed = case
    profile = NOISY
    policy = LookaheadPolicy(**options)
    plans = _Plans()
    results = simulate(requests, profile, policy, seed=seed, listeners=[plans])
    assert [r.request.id for r in results] == [r.id for r in requests]  # exactly one outcome each
    allowed = allowed_exits(profile, policy.bmax, options["floors"])
    for model, exit in plans.exits:
        assert profile.model(model).exit_index(exit) in allowed[model]  # no dominated / below-floor exit
    for r in results:
        assert r.outcome in Outcome
        if r.outcome.completed:
            assert r.batch_size <= policy.bmax
        if options["floors"] and r.request.model in options["floors"] and not allowed[r.request.model]:
            assert r.outcome is Outcome.REJECTED and r.reason == ACCURACY_FLOOR


def test_decisions_do_not_change_the_queues():
    a = [req(f"a{i}", "A", NOW - 0.001 * i, 20) for i in range(30)]
    qs = queues(TWO_MODELS, *a, req("late", "B", NOW - 0.05, 20))
    before = {m: list(q) for m, q in qs.items()}
    for shed in ("drop", "salvage", "reject", "off"):
        LookaheadPolicy(bmax=4, shed=shed).plan(NOW, qs, TWO_MODELS)
    assert {m: list(q) for m, q in qs.items()} == before
    assert np.all(np.diff([r.arrival_s for r in qs["A"]]) <= 0)


def test_edf_slack_pools_the_deviation_of_a_chain():
    from scheduler.policies.slack import EdfSlack

    # Model 0 waits with two batches (due at 10 and 20 ms, 3 ms each); model 1 leaves one (due 12 ms, 4 ms).
    edf = EdfSlack(0.0, [[(0.010, 3.0), (0.020, 3.0)], []], [[], [(0.012, 4.0)]], spread=0.0)
    # Candidate 1 runs: EDF order 10 (3), 12 (4), 20 (3) -> min(10-3, 12-7, 20-10) = 5 ms.
    assert edf.slack_ms(1) == pytest.approx(5.0)
    assert edf.slack_ms(0) == pytest.approx(float("inf"))  # model 0 runs: model 1 leaves nothing behind
    assert edf.slack_ms(-1) == pytest.approx(min(10 - 3, 20 - 6))
    # A 30% margin: the chain pays 0.3 x sqrt(sum of squares), not 0.3 x the sum.
    spread = EdfSlack(0.0, [[(0.010, 3.0), (0.020, 3.0)], []], [[], [(0.012, 4.0)]], spread=0.3)
    assert spread.slack_ms(1) == pytest.approx(min(10 - 3 - 0.3 * 3, 12 - 7 - 0.3 * 5, 20 - 10 - 0.3 * 34**0.5))
    assert spread.slack_ms(1, extra=(0.011, 1.0)) == pytest.approx(
        min(10 - 3 - 0.3 * 3, 11 - 4 - 0.3 * 10**0.5, 12 - 8 - 0.3 * 26**0.5, 20 - 11 - 0.3 * 35**0.5))
