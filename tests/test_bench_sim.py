"""``edgeserving bench sim``: capacity and noise definitions, target rules, and a small real sweep."""

import csv
import json

import pytest

from bench.sim_report import Point, aggregate, check_targets
from bench.sim_suites import capacity_rps, noise_for_p99_ratio, seed_weights
from scheduler.cli import main
from scheduler.paths import seed_profile_path
from scheduler.profile import Profile
from tests.core_helpers import TWO_MODELS

SEED = seed_profile_path()
needs_seed = pytest.mark.skipif(not SEED.exists(), reason=f"seed profile not found at {SEED}")


def test_capacity_is_full_accuracy_full_batches_at_the_mean():
    # A: most accurate exit e2, 10 ms per batch of 4 -> 2.5 ms/request; B: e2, 14/4 = 3.5 ms/request.
    # Mix 1:1 -> 3 ms per request on average -> 333.3 requests/s.
    assert capacity_rps(TWO_MODELS, {"A": 1, "B": 1}, 4) == pytest.approx(1000 / 3)
    assert capacity_rps(TWO_MODELS, {"A": 3, "B": 1}, 4) == pytest.approx(1000 / (0.75 * 2.5 + 0.25 * 3.5))


@needs_seed
def test_seed_capacity_and_hard_noise():
    seed = Profile.load(SEED)
    # layer3 is the most accurate exit of every model; per request at batch 10: 0.630, 1.248, 1.891 ms.
    per_request = {m: seed.latency_ms(m, "layer3", 10, "mean") / 10 for m in seed.model_names}
    expected = 1000 / ((3 * per_request["resnet50"] + 2 * per_request["resnet101"] + per_request["resnet152"]) / 6)
    assert capacity_rps(seed, dict(seed_weights(seed)), 10) == pytest.approx(expected)
    assert noise_for_p99_ratio(seed) == pytest.approx(0.3 / 0.13, rel=1e-3)  # p99 = 1.13 x mean everywhere


def point(policy: str, requests: int, violations: int, accuracy: float, target: int) -> Point:
    p = Point("s", "poisson", 1.0, "50 ms", 1.0, policy, target)
    p.requests, p.violations, p.completed, p.accuracy_sum = requests, violations, requests, accuracy * requests
    return p


@pytest.mark.parametrize(("target", "ref", "ours", "holds"), [
    (1, (1000, 10, 0.80), (1000, 1, 0.80), True),  # 1% -> 0.1%: exactly 0.1x
    (1, (1000, 10, 0.80), (1000, 2, 0.81), False),
    (1, (1000, 10, 0.80), (1000, 0, 0.79), False),  # accuracy below the reference
    (1, (1000, 0, 0.80), (1000, 1, 0.85), False),  # the reference is at zero: ours must be too
    (1, (100000, 50, 0.80), (100000, 40, 0.80), True),  # reference under 0.1%: no violation rule
    (2, (1000, 40, 0.80), (1000, 10, 0.796), True),
    (2, (1000, 40, 0.80), (1000, 11, 0.80), False),
    (2, (1000, 40, 0.80), (1000, 5, 0.794), False),
    (3, (1000, 100, 0.60), (1000, 100, 0.61), True),
    (3, (1000, 100, 0.60), (1000, 90, 0.60), False),  # effective accuracy must be higher
])
def test_target_rules(target, ref, ours, holds):
    verdicts = check_targets([point("ref", *ref, target), point("us", *ours, target)], "ref", "us")
    assert len(verdicts) == 1 and verdicts[0].holds is holds


def test_aggregate_pools_seeds():
    rows = [{"suite": "s", "process": "poisson", "load": 1.0, "slo": "50 ms", "noise": 1.0, "policy": "p",
             "target": 1, "requests": n, "MET": met, "LATE": n - met, "REJECTED": 0, "DROPPED": 0, "FAILED": 0,
             "violation_ratio": (n - met) / n, "mean_accuracy": acc, "p95_ms": p95}
            for n, met, acc, p95 in [(100, 90, 0.8, 10.0), (300, 300, 0.6, 20.0)]]
    (p,) = aggregate(rows)
    assert p.seeds == 2 and p.violation_ratio == pytest.approx(10 / 400)
    assert p.mean_accuracy == pytest.approx((0.8 * 100 + 0.6 * 300) / 400)
    assert p.p95_ms == pytest.approx(15.0)


@needs_seed
def test_a_small_sweep_writes_csv_table_plots_and_verdicts(tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(["bench", "sim", "--quick", "--suites", "seed", "--seconds", "1", "--seeds", "1",
                 "--workers", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "seed: target 1" in printed
    with (out / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 2 * 3  # 3 loads x 2 SLOs x 3 policies x 1 seed
    assert {r["policy"] for r in rows} == {"edgeserving", "lookahead", "edf_exit"}
    assert all(int(r["requests"]) > 0 and json.loads(r["exits"]) for r in rows)
    md = (out / "sim.md").read_text()
    assert "## Targets (issue 7)" in md and "| 1 | seed |" in md
    assert (out / "seed.png").stat().st_size > 1000 and (out / "exit_mix.png").exists()


@needs_seed
def test_ablation_mode_runs_every_variant(tmp_path):
    out = tmp_path / "abl"
    assert main(["bench", "sim", "--ablation", "--quick", "--seconds", "0.5", "--seeds", "1", "--no-plots",
                 "--out", str(out)]) == 0
    with (out / "runs.csv").open() as fh:
        policies = {r["policy"] for r in csv.DictReader(fh)}
    assert {"lookahead", "lookahead-lookahead", "lookahead-budget", "lookahead-shed", "edgeserving"} <= policies
    assert "## Ablation" in (out / "sim.md").read_text()


@needs_seed
def test_unknown_suite_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "sim", "--suites", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown suite(s) ['nope']" in capsys.readouterr().err


@pytest.mark.slow
def test_confidence_mode_runs_the_demo_zoo_for_real(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "conf"
    assert main(["bench", "sim", "--confidence", "--seconds", "0.4", "--json", "--out", str(out)]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["confidence_exits"] for r in runs] == [False, True]
    assert runs[0]["left_before_cap"] == 0.0 and runs[1]["left_before_cap"] > 0.0
    assert all(0.5 < r["measured_accuracy"] <= 1.0 for r in runs)
    assert (out / "confidence.md").exists()
