"""``replay --simulate``: the same trace through the simulator, the same results schema."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from scheduler.cli import main
from scheduler.paths import seed_profile_path
from scheduler.policies import make_policy
from scheduler.profile import Profile
from scheduler.results import RESULT_COLUMNS
from scheduler.simulator import simulate
from workloads.generators import generate
from workloads.replay import bound_rows, replay_simulated
from workloads.trace import write_trace

pytestmark = pytest.mark.skipif(not seed_profile_path().exists(),
                                reason=f"the seed profile is not at {seed_profile_path()}")


@pytest.fixture(scope="module")
def profile() -> Profile:
    return Profile.load(seed_profile_path())


@pytest.fixture(scope="module")
def rows(profile):
    rates = dict(zip(profile.model_names, (90.0, 60.0, 30.0)))
    return generate("mmpp", rates, [(20, 0.3), (50, 0.5), (200, 0.2)], 10.0,
                    np.random.default_rng(0))


def test_matches_the_simulator_with_the_same_seed(profile, rows):
    report = replay_simulated(rows, profile, "edf_exit", seed=4)
    _, exec_seed = np.random.SeedSequence(4).spawn(2)
    direct = simulate([r.to_request() for r in rows], profile, make_policy("edf_exit"), seed=exec_seed)
    assert report.results == direct
    assert report.mode == "simulated" and report.policy == "edf_exit" and report.lag is None
    assert report.summary()["requests"] == len(rows)


def test_bounds(profile, rows):
    report = replay_simulated(rows, profile, "edgeserving", max_seconds=5.0, max_requests=100)
    assert [r.request.id for r in report.results] == [r.request_id for r in bound_rows(rows, 100, 5.0)]
    assert len(report.results) == 100 and report.trace_rows == len(rows)
    assert all(r.request.arrival_s < 5.0 for r in report.results)
    with pytest.raises(ValueError, match="max_requests must be >= 1"):
        bound_rows(rows, 0)


def test_cli_simulate_equals_simulate_command(tmp_path, capsys, rows):
    trace = tmp_path / "t.csv"
    write_trace(trace, rows)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["replay", str(trace), "--simulate", "--policy", "clockwork", "--seed", "2", "--results", str(a),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["simulate", "--trace", str(trace), "--policy", "clockwork", "--seed", "2", "--results", str(b),
                 "--json"]) == 0
    simulated = json.loads(capsys.readouterr().out)
    assert a.read_bytes() == b.read_bytes()
    assert {k: v for k, v in summary.items() if k != "replay"} == simulated
    assert summary["replay"] == {"mode": "simulated", "target": "simulator", "trace_rows": len(rows),
                                 "replayed": len(rows)}
    with a.open() as fh:
        lines = list(csv.reader(fh))
    assert tuple(lines[0]) == RESULT_COLUMNS and len(lines) == len(rows) + 1


def test_cli_unknown_model(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,model,deadline_ms\n0,resnet18,50\n")
    assert main(["replay", str(trace), "--simulate"]) == 2
    assert "unknown model 'resnet18'" in capsys.readouterr().err
