"""Baseline policies on small hand-made states."""

import pytest

from scheduler.policies import POLICIES, make_policy
from scheduler.types import Outcome, RequestResult, SlotResult
from tests.core_helpers import TWO_MODELS, queues, req

NOW = 1.0


def test_registry_rejects_unknown_names_with_the_list():
    with pytest.raises(ValueError, match="unknown policy 'fastest'; known policies are edgeserving, all_final"):
        make_policy("fastest")
    assert {"edgeserving", "all_final", "all_early", "round_robin", "early_exit", "symphony", "clockwork",
            "edf_exit"} <= set(POLICIES)


def test_early_exit_takes_the_longest_queue_and_the_deepest_feasible_exit():
    # A: 3 requests, the oldest with 7 ms left; B: 2 requests. Longest is A; batch 3 at e2 takes
    # 8 ms > 7 ms, at e1 4 ms fits -> e1.
    a = [req("a1", "A", 0.987, 20), req("a2", "A", 0.990, 20), req("a3", "A", 0.995, 20)]
    b = [req("b1", "B", 0.999, 30), req("b2", "B", 0.999, 30)]
    plan = make_policy("early_exit", bmax=4, quantile="mean").plan(NOW, queues(TWO_MODELS, *a, *b), TWO_MODELS)
    assert (plan.model, plan.exit, plan.requests, plan.predicted_ms) == ("A", "e1", tuple(a), 4.0)
    # With 9 ms left, e2 (8 ms) fits.
    a[0] = req("a1", "A", 0.989, 20)
    plan = make_policy("early_exit", bmax=4, quantile="mean").plan(NOW, queues(TWO_MODELS, *a, *b), TWO_MODELS)
    assert (plan.model, plan.exit) == ("A", "e2")


def test_early_exit_falls_back_to_the_shallowest_exit():
    late = req("late", "B", 0.95, 30)  # 20 ms late
    plan = make_policy("early_exit", bmax=4, quantile="mean").plan(NOW, queues(TWO_MODELS, late), TWO_MODELS)
    assert (plan.model, plan.exit) == ("B", "e1")


def test_clockwork_sheds_the_hopeless_and_batches_by_earliest_deadline():
    # B's b0 has 5 ms left but B's final exit alone takes 8 ms: dropped.
    # Earliest feasible deadline: a1 (A, 6 ms left; final alone = 4 ms). Batch grows in deadline
    # order while the whole batch still meets a1's deadline: batch 2 at A's final is 6 ms <= 6 ms,
    # batch 3 is 8 ms > 6 ms -> batch {a1, a2}.
    b0 = req("b0", "B", 0.975, 30)
    b1 = req("b1", "B", 0.999, 30)
    a1, a2, a3 = req("a1", "A", 0.986, 20), req("a2", "A", 0.990, 20), req("a3", "A", 0.999, 20)
    qs = queues(TWO_MODELS, b0, b1, a1, a2, a3)
    plan = make_policy("clockwork", bmax=4, quantile="mean").plan(NOW, qs, TWO_MODELS)
    assert plan.drop == (b0,)
    assert (plan.model, plan.exit, plan.requests, plan.predicted_ms) == ("A", "e2", (a1, a2), 6.0)


def test_clockwork_orders_mixed_deadlines_within_a_queue():
    # Same model, arrival order a_long then a_short; the short deadline is earlier and goes first.
    a_long = req("long", "A", 0.990, 200)
    a_short = req("short", "A", 0.995, 10)
    plan = make_policy("clockwork", bmax=4, quantile="mean").plan(NOW, queues(TWO_MODELS, a_long, a_short), TWO_MODELS)
    assert plan.requests[0] is a_short


def test_edf_exit_picks_the_earliest_deadline_across_models():
    a = req("a", "A", 0.999, 50)  # 49 ms left
    b = req("b", "B", 0.995, 10)  # 5 ms left: B's e1 (3 ms) fits, e2 (8 ms) does not
    plan = make_policy("edf_exit", bmax=4, quantile="mean").plan(NOW, queues(TWO_MODELS, a, b), TWO_MODELS)
    assert (plan.model, plan.exit, plan.requests) == ("B", "e1", (b,))


def test_all_final_all_early_pick_the_longest_queue():
    a = [req(f"a{i}", "A", 0.99, 20) for i in range(2)]
    b = [req(f"b{i}", "B", 0.99, 20) for i in range(3)]
    qs = queues(TWO_MODELS, *a, *b)
    final = make_policy("all_final", bmax=2, quantile="mean").plan(NOW, qs, TWO_MODELS)
    early = make_policy("all_early", bmax=2, quantile="mean").plan(NOW, qs, TWO_MODELS)
    assert (final.model, final.exit, final.requests) == ("B", "e2", tuple(b[:2]))
    assert (early.model, early.exit, early.requests) == ("B", "e1", tuple(b[:2]))


def test_round_robin_alternates_after_each_slot():
    a, b = req("a", "A", 0.99, 20), req("b", "B", 0.99, 20)
    qs = queues(TWO_MODELS, a, b)
    policy = make_policy("round_robin", bmax=2, quantile="mean")
    first = policy.plan(NOW, qs, TWO_MODELS)
    assert first.model == "A"
    assert policy.plan(NOW, qs, TWO_MODELS).model == "A"  # plan() alone changes nothing
    policy.observe(first, SlotResult(1.0, ("e2",)))
    assert policy.plan(NOW, qs, TWO_MODELS).model == "B"


def test_symphony_waits_to_grow_the_batch_then_dispatches():
    # One A request with 50 ms left: batch 2 at final takes 6 ms, so it can wait until 44 ms
    # before its deadline: the policy idles until then.
    a = req("a", "A", 0.999, 51)
    policy = make_policy("symphony", bmax=4, quantile="mean")
    plan = policy.plan(NOW, queues(TWO_MODELS, a), TWO_MODELS)
    assert plan.requests == () and plan.idle_until_s == pytest.approx(a.deadline_s - 0.006)
    # At that moment it dispatches at the final exit.
    plan = policy.plan(a.deadline_s - 0.006, queues(TWO_MODELS, a), TWO_MODELS)
    assert (plan.model, plan.exit, plan.requests) == ("A", "e2", (a,))


def test_symphony_drops_requests_already_late():
    late = req("late", "A", 0.9, 20)
    plan = make_policy("symphony", bmax=4, quantile="mean").plan(NOW, queues(TWO_MODELS, late), TWO_MODELS)
    assert plan.drop == (late,) and plan.requests == ()


def test_plan_has_no_side_effects_on_the_queues():
    rs = [req(f"a{i}", "A", 0.99, 20) for i in range(5)] + [req("b", "B", 0.9, 5)]
    for name in POLICIES:
        qs = queues(TWO_MODELS, *rs)
        make_policy(name, bmax=3, quantile="mean").plan(NOW, qs, TWO_MODELS)
        assert [list(q) for q in qs.values()] == [rs[:5], rs[5:]], name


def test_outcome_completed_flag():
    r = req("x", "A", 0.0, 10)
    assert RequestResult(r, Outcome.LATE, finish_s=1.0).outcome.completed
    assert not RequestResult(r, Outcome.DROPPED).outcome.completed
