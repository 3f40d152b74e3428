"""Simulator invariants (property tests over every policy), determinism and a golden run."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.engine import AdmissionConfig
from scheduler.executor import SlotTimeSampler
from scheduler.paths import seed_profile_path
from scheduler.policies import POLICIES, make_policy
from scheduler.profile import Profile
from scheduler.results import write_results
from scheduler.simulator import simulate
from scheduler.summary import summarize
from scheduler.types import Outcome, Request
from tests.core_helpers import TWO_MODELS, draw_requests

GOLDEN = Path(__file__).parent / "golden" / "seed_2000_edgeserving.json"
SEED = seed_profile_path()
needs_seed = pytest.mark.skipif(not SEED.exists(), reason=f"seed profile not found at {SEED}")

NOISY = Profile.from_dict({**TWO_MODELS.to_dict(), "models": {
    m: {**spec, "latency_ms": {e: {b: {"mean": q["mean"], "p50": q["mean"] * 0.97, "p90": q["mean"] * 1.05,
                                       "p95": q["mean"] * 1.1, "p99": q["mean"] * 1.3}
                                   for b, q in per_batch.items()} for e, per_batch in spec["latency_ms"].items()}}
    for m, spec in TWO_MODELS.to_dict()["models"].items()}})


@st.composite
def workloads(draw):
    rs = draw_requests(draw, 120, 0.01)
    policy = draw(st.sampled_from(sorted(POLICIES)))
    bmax = draw(st.integers(1, 6))
    bound = draw(st.sampled_from([None, 1, 5]))
    reject = draw(st.booleans())
    return rs, policy, bmax, AdmissionConfig(queue_bound=bound, reject_infeasible=reject)


@settings(max_examples=200, deadline=None)
@given(workloads(), st.integers(0, 2**31))
def test_every_request_gets_exactly_one_valid_outcome(workload, seed):
    rs, policy_name, bmax, admission = workload
    results = simulate(rs, NOISY, make_policy(policy_name, bmax=bmax), seed=seed, admission=admission)
    assert [r.request.id for r in results] == [r.id for r in rs]
    for r in results:
        assert isinstance(r.outcome, Outcome)
        if r.outcome.completed:
            assert r.exit in NOISY.model(r.request.model).exits
            assert 1 <= r.batch_size <= bmax
            assert (r.outcome is Outcome.MET) == (r.finish_s <= r.request.deadline_s)
            assert r.latency_ms >= 0 and r.queue_ms >= 0
        else:
            assert r.latency_ms is None and r.reason


def _seed_trace(n: int = 2000, lam: float = 200.0, slo_ms: float = 20.0, seed: int = 7) -> list[Request]:
    """Poisson 3:2:1 at total rate 6*lam, written out here so the golden run pins only the engine."""
    rng = np.random.default_rng(seed)
    names, weights = ["resnet50", "resnet101", "resnet152"], np.array([3, 2, 1]) / 6
    t, out = 0.0, []
    for i in range(n):
        t += float(rng.exponential(1.0 / (6 * lam)))
        model = names[int(rng.choice(3, p=weights))]
        out.append(Request(str(i), model, t, t + slo_ms / 1000.0))
    return out


@needs_seed
def test_golden_run_on_the_seed_profile_is_exactly_reproducible(tmp_path):
    profile = Profile.load(SEED)
    trace = _seed_trace()
    runs = [simulate(trace, profile, make_policy("edgeserving"), seed=11) for _ in range(2)]
    write_results(tmp_path / "a.csv", runs[0])
    write_results(tmp_path / "b.csv", runs[1])
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    summary = summarize(runs[0], profile, "edgeserving")
    golden = json.loads(GOLDEN.read_text())
    assert summary["outcomes"] == golden["outcomes"] and summary["exits"] == golden["exits"]
    for key in ("violation_ratio", "p50_ms", "p95_ms", "p99_ms", "mean_accuracy", "effective_accuracy"):
        assert summary[key] == pytest.approx(golden[key], rel=1e-9), key


def test_equal_quantiles_make_slot_times_exactly_the_mean():
    sampler = SlotTimeSampler(TWO_MODELS)
    assert {sampler.draw_ms("B", "e2", 3, u) for u in (0.0, 0.3, 0.5, 0.99, 0.999999)} == {12.0}


def test_sampled_slot_times_follow_the_profiled_quantiles():
    sampler = SlotTimeSampler(NOISY)
    rng = np.random.default_rng(0)
    draws = np.array([sampler.draw_ms("A", "e2", 2, float(u)) for u in rng.random(200_000)])
    mean = 6.0
    assert np.mean(draws) == pytest.approx(mean, rel=0.005)  # the floor is chosen to keep the mean
    for q, ratio in ((50, 0.97), (90, 1.05), (95, 1.1), (99, 1.3)):
        assert np.percentile(draws, q) == pytest.approx(mean * ratio, rel=0.01)


def test_noise_scales_the_spread_around_the_mean():
    wide = SlotTimeSampler(NOISY, noise=2.0)
    assert wide.draw_ms("A", "e2", 2, 0.99) == pytest.approx(6.0 + 2 * (6.0 * 1.3 - 6.0))


def test_different_seeds_differ_and_equal_seeds_agree():
    trace = [Request(str(i), "AB"[i % 2], i * 0.004, i * 0.004 + 0.02) for i in range(300)]

    def latencies(seed):
        return [r.latency_ms for r in simulate(trace, NOISY, make_policy("edgeserving"), seed=seed)]

    assert latencies(1) == latencies(1)
    assert latencies(1) != latencies(2)
