"""Online latency correction: following a shifted device, the learned margin, the prediction error."""

import numpy as np
import pytest

from bench.sim_suites import scaled_profile as scaled
from scheduler.correction import LatencyCorrection, profile_tail_margin
from scheduler.executor import ProfileExecutor, SlotTimeSampler
from scheduler.policies.lookahead import LookaheadPolicy
from scheduler.profile import Profile
from scheduler.simulator import simulate
from scheduler.summary import summarize
from scheduler.types import Request, SlotResult
from tests.core_helpers import TWO_MODELS, queues

NOISY = Profile.from_dict({**TWO_MODELS.to_dict(), "models": {
    m: {**spec, "latency_ms": {e: {b: {"mean": q["mean"], "p50": q["mean"] * 0.97, "p90": q["mean"] * 1.05,
                                       "p95": q["mean"] * 1.1, "p99": q["mean"] * 1.3}
                                   for b, q in per_batch.items()} for e, per_batch in spec["latency_ms"].items()}}
    for m, spec in TWO_MODELS.to_dict()["models"].items()}})


def feed(c: LatencyCorrection, device: Profile, keys, n: int, rng: np.random.Generator) -> None:
    sampler = SlotTimeSampler(device)
    for _ in range(n):
        model, e, b = keys[int(rng.integers(len(keys)))]
        exit = device.model(model).exits[e]
        c.observe(model, e, b, sampler.draw_ms(model, exit, b, float(rng.random())))


def test_converges_on_a_shifted_device_including_keys_never_seen():
    c = LatencyCorrection(NOISY)
    rng = np.random.default_rng(0)
    feed(c, scaled(NOISY, 1.5), [("A", 0, 1), ("A", 1, 2), ("B", 0, 3)], 600, rng)
    for key in [("A", 0, 1), ("A", 1, 2), ("B", 0, 3)]:
        assert c.expected_ms(*key) == pytest.approx(1.5 * NOISY.table("mean").rows[key[0]][key[1]][key[2]], rel=0.03)
    # (B, e2, 4) never ran: it borrows the device-wide shift.
    assert c.scale("B", 1, 4) == pytest.approx(1.5, rel=0.03)


def test_sliding_window_follows_the_device_back():
    c = LatencyCorrection(TWO_MODELS, window=32, global_window=64)
    for _ in range(64):
        c.observe("A", 0, 1, 4.0)  # profiled 2 ms: a 2x slower device
    assert c.scale("A", 0, 1) == pytest.approx(2.0)
    for _ in range(64):
        c.observe("A", 0, 1, 2.0)  # recovered (warm-up over, throttling gone)
    assert c.scale("A", 0, 1) == pytest.approx(1.0)


def test_margin_covers_the_observed_spread_and_starts_from_the_profile_tail():
    c = LatencyCorrection(NOISY, margin_quantile=0.999)
    assert c.margin() == pytest.approx(profile_tail_margin(NOISY))  # p99 1.3 + (1.3 - 1.1) / 4 = 1.35
    assert c.margin() == pytest.approx(1.35)
    feed(c, NOISY, [("A", 0, 1), ("B", 1, 2)], 3000, np.random.default_rng(1))
    assert 1.25 < c.margin() <= 1.36  # the sampler's spread tops out at 1.35 x the mean
    quiet = LatencyCorrection(TWO_MODELS)  # every quantile equals the mean: exact predictions
    feed(quiet, TWO_MODELS, [("A", 0, 1)], 100, np.random.default_rng(2))
    assert quiet.margin() == pytest.approx(1.0)


def test_margin_ignores_interference_beyond_its_cap():
    # 2% of slots hit by a 20x stall (the OS descheduling the worker): the 0.999-quantile is the stall.
    c = LatencyCorrection(NOISY, margin_quantile=0.999)
    rng = np.random.default_rng(3)
    for _ in range(1000):
        c.observe("A", 0, 1, NOISY.table("mean").rows["A"][0][1] * (20.0 if rng.random() < 0.02 else 1.0))
    assert c.max_margin == pytest.approx(1.5 * 1.35)
    assert c.margin() == pytest.approx(c.max_margin)  # planned against, the stall would be 20x
    assert c.error_stats()["max_margin"] == c.max_margin
    with pytest.raises(ValueError, match="max_margin"):
        LatencyCorrection(TWO_MODELS, max_margin=0.5)


def test_prediction_error_is_measured_minus_planned():
    c = LatencyCorrection(TWO_MODELS)
    for planned, measured in [(2.0, 3.0), (2.0, 1.0), (4.0, 5.0)]:
        c.observe("A", 0, 1, measured, planned)
    stats = c.error_stats()
    assert stats["slots"] == 3
    assert stats["mean_error_ms"] == pytest.approx(1 / 3)
    assert stats["mean_abs_error_ms"] == pytest.approx(1.0)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="margin_quantile"):
        LatencyCorrection(TWO_MODELS, margin_quantile=0.0)
    with pytest.raises(ValueError, match="window"):
        LatencyCorrection(TWO_MODELS, window=0)


def test_policy_with_correction_keeps_deadlines_on_a_slower_device():
    # The profile says the device is 1.6x faster than it is. A static policy plans with the profile and
    # misses; the adaptive one learns the real slot times within its first slots.
    device = scaled(NOISY, 1.6)
    rng = np.random.default_rng(3)
    requests, t = [], 0.0
    for i in range(3000):
        t += float(rng.exponential(1 / 250))
        model = "A" if rng.random() < 0.6 else "B"
        requests.append(Request(str(i), model, t, t + 0.040))

    def run(policy):
        results = simulate(requests, NOISY, policy, seed=0,
                           executor_factory=lambda clock, g: ProfileExecutor(device, clock, g))
        return summarize(results, NOISY, policy.name), policy

    static, _ = run(LookaheadPolicy(bmax=4, adaptive=False, quantile="p99"))
    adaptive, policy = run(LookaheadPolicy(bmax=4))
    assert adaptive["violation_ratio"] < 0.25 * static["violation_ratio"]
    c = policy.correction
    assert c is not None and c.scale("A", 0, 4) == pytest.approx(1.6, rel=0.05)
    assert policy.stats()["prediction"]["slots"] > 0


def test_slots_cut_short_by_confidence_exits_do_not_lower_the_plan():
    # With confidence exits the plan's exit is a cap: samples that leave earlier make the slot shorter,
    # which says nothing about the cap's own latency (the upper bound the policy must plan with).
    policy = LookaheadPolicy(bmax=4)
    qs = queues(TWO_MODELS, Request("a", "A", 0.0, 1.0))
    plan = policy.plan(0.0, qs, TWO_MODELS)
    assert plan.exit == "e2"
    for _ in range(100):
        policy.observe(plan, SlotResult(slot_ms=1.0, exits=("e1",)))  # left at e1: a 4 ms cap took 1 ms
    assert policy.correction.scale("A", 1, 1) == pytest.approx(1.0)
    assert policy.stats()["confidence_exits"]["slots"] == 100
    for _ in range(100):
        policy.observe(plan, SlotResult(slot_ms=8.0, exits=("e2",)))  # reached the cap: 2x the profile
    assert policy.correction.scale("A", 1, 1) == pytest.approx(2.0, rel=0.05)
