"""The reference policy's decisions, checked against scores computed by hand."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.naive_reference import IDLE, naive_plan
from scheduler.policies.edgeserving import IDLE_S, SMALL_QUEUE, EdgeServingPolicy
from scheduler.profile import Profile
from tests.core_helpers import TWO_MODELS, queues, req

NOW = 1.0


def phi(w_ms: float, tau_ms: float, slo_ms: float) -> float:
    return min(max(math.exp((w_ms + tau_ms) / slo_ms - 1), 0), 10)


def test_scores_and_decision_match_hand_computation():
    # A holds three requests (waits 10, 5, 2 ms; SLO 20 ms), B one (wait 15 ms; SLO 30 ms). Bmax = 2.
    a1, a2, a3 = req("a1", "A", 0.990, 20), req("a2", "A", 0.995, 20), req("a3", "A", 0.998, 20)
    b1 = req("b1", "B", 0.985, 30)
    qs = queues(TWO_MODELS, a1, a2, a3, b1)
    policy = EdgeServingPolicy(bmax=2, quantile="mean")
    sizes, taus, scores = policy.scores(NOW, qs, TWO_MODELS)
    # A's batch {a1, a2} has 10 ms of slack: e2 at batch 2 (6 ms) fits, so tau_A = 6.
    # B's batch {b1} has 15 ms of slack: e2 at batch 1 (8 ms) fits, so tau_B = 8.
    assert sizes == [2, 1] and taus == [6.0, 8.0]
    s_a = phi(2, 6, 20) + phi(15, 6, 30)  # a3 and b1 are outside A's batch
    s_b = phi(10, 8, 20) + phi(5, 8, 20) + phi(2, 8, 20)  # all of A's requests
    assert scores == pytest.approx([s_a, s_b], rel=1e-12)
    assert s_a == pytest.approx(math.exp(-0.6) + math.exp(-0.3))
    plan = policy.plan(NOW, qs, TWO_MODELS)
    assert (plan.model, plan.exit, plan.requests, plan.predicted_ms) == ("A", "e2", (a1, a2), 6.0)


def test_exit_is_recomputed_at_bmax_whatever_the_queue_holds():
    # One request with 5 ms of slack: e2 at batch 1 (4 ms) would fit, but the reference re-checks
    # the exit at batch Bmax = 2, where e2 takes 6 ms, so it runs the single request at e1.
    a1 = req("a1", "A", 0.985, 20)
    qs = queues(TWO_MODELS, a1)
    policy = EdgeServingPolicy(bmax=2, quantile="mean")
    _, taus, scores = policy.scores(NOW, qs, TWO_MODELS)
    assert taus == [4.0, 8.0]  # B is empty: deepest exit, batch clamped to 1
    assert scores == pytest.approx([0.0, phi(15, 8, 20)])
    plan = policy.plan(NOW, qs, TWO_MODELS)
    assert (plan.model, plan.exit, plan.requests, plan.predicted_ms) == ("A", "e1", (a1,), 2.0)


def test_late_requests_run_at_the_shallowest_exit_and_are_never_dropped():
    late = req("late", "B", 0.900, 30)  # its deadline passed 70 ms ago
    plan = EdgeServingPolicy(bmax=2, quantile="mean").plan(NOW, queues(TWO_MODELS, late), TWO_MODELS)
    assert (plan.model, plan.exit, plan.requests, plan.drop) == ("B", "e1", (late,), ())


def test_an_empty_winner_idles_half_a_millisecond():
    # B is slow (tau_B = 40 ms) and holds 100 requests with 1 s deadlines; only 2 fit its batch.
    # Running B pushes the other 98 further than A's 4 ms would push all 100, so the empty A wins.
    slow = Profile.from_latencies("slow-b", {"A": {"e1": {1: 2.0}, "e2": {1: 4.0}},
                                             "B": {"e1": {1: 20.0}, "e2": {1: 40.0}}})
    bs = [req(f"b{i}", "B", NOW, 1000) for i in range(100)]
    qs = queues(slow, *bs)
    policy = EdgeServingPolicy(bmax=2, quantile="mean")
    _, taus, scores = policy.scores(NOW, qs, slow)
    assert taus == [4.0, 40.0]
    assert scores == pytest.approx([100 * phi(0, 4, 1000), 98 * phi(0, 40, 1000)])
    assert scores[0] < scores[1]
    plan = policy.plan(NOW, qs, slow)
    assert plan.requests == () and plan.idle_until_s == pytest.approx(NOW + IDLE_S)


def test_ties_go_to_the_first_model_in_profile_order():
    same = Profile.from_latencies("same", {m: {"e1": {1: 1.0}, "e2": {1: 2.0}} for m in ("X", "Y")})
    x, y = req("x", "X", 0.99, 50), req("y", "Y", 0.99, 50)
    plan = EdgeServingPolicy(bmax=4, quantile="mean").plan(NOW, queues(same, x, y), same)
    assert plan.model == "X"


def test_very_late_requests_cap_phi_without_overflow():
    old = [req(f"o{i}", "A", 0.0, 1.0) for i in range(3)]  # 1 s late on a 1 ms SLO
    policy = EdgeServingPolicy(bmax=1, quantile="mean")
    _, _, scores = policy.scores(NOW, queues(TWO_MODELS, *old), TWO_MODELS)
    assert scores == [20.0, 30.0]


# -- agreement with a literal port of the reference's loop, on random states ----------------------

RANDOM_PROFILE = Profile.from_latencies("random", {
    "m0": {"l1": {b: 1.0 + 0.2 * b for b in range(1, 11)}, "l2": {b: 2.0 + 0.5 * b for b in range(1, 11)},
           "fin": {b: 3.5 + 0.8 * b for b in range(1, 11)}},
    "m1": {"l1": {b: 1.5 + 0.3 * b for b in range(1, 11)}, "fin": {b: 6.0 + 1.3 * b for b in range(1, 11)}},
    "m2": {"l1": {b: 2.0 + 0.2 * b for b in range(1, 11)}, "l2": {b: 7.0 + 0.9 * b for b in range(1, 11)},
           "fin": {b: 9.0 + 2.1 * b for b in range(1, 11)}},
})


@st.composite
def states(draw):
    n_per_model = [draw(st.integers(0, 3 * SMALL_QUEUE)) for _ in range(3)]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    rs = []
    for m, n in zip(RANDOM_PROFILE.model_names, n_per_model):
        ages = np.sort(rng.uniform(0, 0.08, n))[::-1]
        for i, age in enumerate(ages):
            slo = float(rng.choice([5.0, 20.0, 50.0, 200.0]))
            rs.append(req(f"{m}-{i}", m, NOW - float(age), slo))
    bmax = draw(st.integers(1, 10))
    return rs, bmax


@settings(max_examples=150, deadline=None)
@given(states())
def test_decisions_match_the_naive_reference_loop(state):
    rs, bmax = state
    qs = queues(RANDOM_PROFILE, *rs)
    policy = EdgeServingPolicy(bmax=bmax, quantile="p95")
    plan = policy.plan(NOW, qs, RANDOM_PROFILE)
    model, exit, size = naive_plan(NOW, qs, RANDOM_PROFILE, bmax=bmax, quantile="p95")
    if (model, exit, size) == IDLE:
        assert plan.requests == ()
        return
    _, _, scores = policy.scores(NOW, qs, RANDOM_PROFILE)
    if plan.model != model:  # only a floating-point tie may separate the two
        names = list(qs)
        assert scores[names.index(plan.model)] == pytest.approx(scores[names.index(model)], rel=1e-9)
        return
    assert (plan.exit, len(plan.requests)) == (exit, size)
