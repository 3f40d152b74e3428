"""`edgeserving simulate` and `bench overhead` as a user runs them."""

import csv
import json

import pytest

from scheduler.cli import main
from scheduler.paths import seed_profile_path
from scheduler.results import RESULT_COLUMNS

SEED = seed_profile_path()
needs_seed = pytest.mark.skipif(not SEED.exists(), reason=f"seed profile not found at {SEED}")


@needs_seed
def test_simulate_poisson_prints_the_summary_json_and_writes_results(tmp_path, capsys):
    out_csv = tmp_path / "results.csv"
    code = main(["simulate", "--profile", str(SEED), "--poisson", "resnet50=120,resnet101=80,resnet152=40@50ms",
                 "--seconds", "5", "--policy", "edgeserving", "--seed", "3", "--json", "--results", str(out_csv)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["policy"] == "edgeserving"
    assert sum(summary["outcomes"].values()) == summary["requests"] > 0
    assert set(summary["per_model"]) == {"resnet50", "resnet101", "resnet152"}
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == RESULT_COLUMNS and len(rows) == summary["requests"]
    assert sum(r["outcome"] == "MET" for r in rows) == summary["outcomes"]["MET"]


@needs_seed
def test_simulate_a_trace_file_prints_a_table(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,model,deadline_ms\n0.0,resnet50,50\n0.001,resnet152,20\n0.002,resnet50,5\n")
    assert main(["simulate", "--profile", str(SEED), "--trace", str(trace), "--policy", "clockwork"]) == 0
    out = capsys.readouterr().out
    assert "clockwork" in out and "violation %" in out


@needs_seed
def test_bad_inputs_give_one_clear_line_and_exit_2(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,model,deadline_ms\n0.5,resnet50,50\n0.1,resnet50,50\n")
    assert main(["simulate", "--profile", str(SEED), "--trace", str(trace)]) == 2
    assert "line 3, column arrival_s: times are not sorted" in capsys.readouterr().err
    trace.write_text("arrival_s,model,deadline_ms\n0.5,vgg,50\n")
    assert main(["simulate", "--profile", str(SEED), "--trace", str(trace)]) == 2
    assert "unknown model 'vgg'" in capsys.readouterr().err
    assert main(["simulate", "--profile", str(SEED), "--poisson", "resnet50=1@5ms", "--policy", "nope"]) == 2
    assert "known policies are" in capsys.readouterr().err
    assert main(["simulate", "--profile", str(tmp_path / "missing.json"), "--poisson", "resnet50=1@5ms"]) == 2
    assert "cannot read profile" in capsys.readouterr().err


@needs_seed
def test_bench_overhead_reports_every_policy_and_the_naive_loop(capsys):
    assert main(["bench", "overhead", "--profile", str(SEED), "--depths", "10", "--policies", "edgeserving",
                 "--sim-seconds", "1", "--loads", "40", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = {r["policy"] for r in report["decision"]}
    assert names == {"edgeserving", "naive-reference-loop"}
    assert all(r["median_us"] > 0 and r["calls"] >= 200 for r in report["decision"])
    assert report["simulator"][0]["requests"] > 0 and report["simulator"][0]["requests_per_s"] > 0
