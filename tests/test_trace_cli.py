"""``edgeserving trace gen|convert|stats`` end to end through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.cli import main
from workloads.trace import read_trace

FIXTURES = Path(__file__).parent / "fixtures"


def test_gen_with_per_model_rates(tmp_path, capsys):
    out = tmp_path / "g.csv"
    code = main(["trace", "gen", "--process", "gamma", "--rates", "resnet50=40,resnet101=20", "--cv", "2",
                 "--deadlines", "20:0.3,50:0.5,200:0.2", "--seconds", "30", "--seed", "3", "--out", str(out),
                 "--json"])
    assert code == 0
    stats = json.loads(capsys.readouterr().out)
    rows = read_trace(out)
    assert stats["requests"] == len(rows) > 0
    assert set(stats["per_model"]) == {"resnet50", "resnet101"}
    assert {r.deadline_ms for r in rows} == {20.0, 50.0, 200.0}


def test_gen_total_rate_with_ratio_is_reproducible(tmp_path):
    args = ["trace", "gen", "--process", "mmpp", "--rate", "60", "--ratio", "resnet50:3,resnet101:2,resnet152:1",
            "--burst-factor", "3", "--seconds", "20", "--seed", "1"]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    rows = read_trace(tmp_path / "a.csv")
    assert {r.model for r in rows} == {"resnet50", "resnet101", "resnet152"}


def test_gen_checks_models_against_a_profile(tmp_path, capsys):
    from scheduler.paths import seed_profile_path

    if not seed_profile_path().exists():
        pytest.skip(f"seed profile not at {seed_profile_path()}")
    code = main(["trace", "gen", "--rates", "resnet18=10", "--seconds", "5", "--profile", str(seed_profile_path()),
                 "--out", str(tmp_path / "x.csv")])
    assert code == 2
    assert "unknown model 'resnet18'" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--rate", "60"], "--rate needs --ratio"),
    (["--rates", "a=5", "--ratio", "a:1"], "leave it out"),
    (["--rates", "a=5", "--cv", "2"], "do not apply to process 'poisson'"),
    (["--rates", "a=5", "--deadlines", "20:0.5,50:0.4"], "sum to 0.9"),
])
def test_gen_errors(tmp_path, capsys, extra, message):
    code = main(["trace", "gen", *extra, "--seconds", "5", "--out", str(tmp_path / "x.csv")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_convert_azure_llm(tmp_path, capsys):
    out = tmp_path / "llm.csv"
    code = main(["trace", "convert", "--format", "azure-llm", str(FIXTURES / "azure_llm_small.csv"),
                 "--models", "resnet50,resnet101,resnet152", "--deadlines", "50", "--speedup", "5", "--seed", "0",
                 "--out", str(out)])
    assert code == 0
    rows = read_trace(out)
    assert len(rows) == 24
    assert rows[-1].arrival_s == pytest.approx(115.5 / 5, abs=1e-6)
    assert "wrote" in capsys.readouterr().out


def test_convert_azure_functions_prints_the_mapping(tmp_path, capsys):
    out = tmp_path / "fn.csv"
    code = main(["trace", "convert", "--format", "azure-functions", str(FIXTURES / "azure_functions_2019_small.csv"),
                 "--models", "resnet50,resnet101", "--seconds", "120", "--rate", "30", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "resnet50 <- function" in text and "resnet101 <- function" in text
    rows = read_trace(out)
    assert {r.model for r in rows} == {"resnet50", "resnet101"}


def test_convert_rejects_weights_for_functions(tmp_path, capsys):
    code = main(["trace", "convert", "--format", "azure-functions", str(FIXTURES / "azure_functions_2019_small.csv"),
                 "--models", "resnet50:2,resnet101", "--out", str(tmp_path / "x.csv")])
    assert code == 2
    assert "azure-llm only" in capsys.readouterr().err


def test_stats(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,model,deadline_ms\n0,a,50\n1,a,50\n2,b,20\n4,a,50\n")
    assert main(["trace", "stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["requests"] == 4 and stats["rate_rps"] == 1.0
    assert stats["per_model"]["a"]["requests"] == 3
    assert stats["deadline_share"] == {"20": 0.25, "50": 0.75}
