"""``edgeserving bench soak``: its numbers as pure functions, and one short real run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.soak_stats import (
    accounting,
    capacity_step,
    memory_drift,
    per_bin,
    recovery_s,
    server_counts,
    workload,
)
from scheduler.types import Outcome, Request, RequestResult
from tests.conftest import write_profile


def result(arrival_s: float, outcome: Outcome, reason: str | None = None, latency_ms: float = 10.0) -> RequestResult:
    req = Request(f"r{arrival_s}", "m", arrival_s, arrival_s + 0.05)
    done = outcome.completed
    return RequestResult(req, outcome, finish_s=arrival_s + latency_ms / 1000 if done else None,
                         exit="e1" if done else None, batch_size=1 if done else None, reason=reason)


def test_workload_splits_the_rate_and_keeps_each_model_s_deadline():
    rows = workload({"a": 20.0, "b": 50.0}, 100.0, 60.0, np.random.default_rng(0), start_s=5.0, tag="x-")
    assert 5800 < len(rows) < 6200 and all(5.0 <= r.arrival_s < 65.0 for r in rows)
    assert [r.arrival_s for r in rows] == sorted(r.arrival_s for r in rows)
    assert {r.model: r.deadline_ms for r in rows} == {"a": 20.0, "b": 50.0}
    assert abs(sum(r.model == "a" for r in rows) / len(rows) - 0.5) < 0.03
    assert len({r.request_id for r in rows}) == len(rows) and rows[0].request_id.startswith("x-")


def test_per_bin_counts_outcomes_and_violations_by_arrival_minute():
    results = [result(1, Outcome.MET), result(2, Outcome.LATE), result(61, Outcome.MET),
               result(62, Outcome.REJECTED, "queue_full"), result(63, Outcome.MET, latency_ms=30.0)]
    bins = per_bin(results, 60.0)
    assert [(b["start_s"], b["requests"], b["MET"], b["LATE"], b["REJECTED"]) for b in bins] == \
        [(0.0, 2, 1, 1, 0), (60.0, 3, 2, 0, 1)]
    assert bins[0]["violation_ratio"] == 0.5 and bins[1]["violation_ratio"] == pytest.approx(1 / 3)
    assert bins[1]["p99_latency_ms"] == pytest.approx(10 + 0.99 * 20)  # completed only: 10 and 30 ms


def test_memory_drift_compares_the_medians_of_the_first_and_last_minute():
    series = [(t, 100.0 + (50.0 if t == 30 else 0.0) + t / 60) for t in range(0, 600, 5)]  # one spike, slow creep
    d = memory_drift(series, 0.0, 600.0, 60.0)
    assert d is not None and d.reference_bytes == pytest.approx(100.5)  # the spike does not move the median
    assert d.final_bytes == pytest.approx(100 + 567.5 / 60) and d.max_bytes == 150.5
    assert d.ratio == pytest.approx((567.5 - 30) / 60 / 100.5)
    assert memory_drift(series, 700.0, 800.0, 60.0) is None


def test_accounting_agrees_only_when_every_count_matches():
    results = [result(0, Outcome.MET), result(1, Outcome.DROPPED, "deadline_unreachable")]
    before = {"MET": 5.0, "LATE": 0.0, "REJECTED": 1.0, "DROPPED": 0.0, "FAILED": 0.0, "received": 6.0,
              "inflight": 0.0, "queued": 0.0}
    after = {**before, "MET": 6.0, "DROPPED": 1.0, "received": 8.0}
    assert accounting(results, before, after)["ok"]
    assert not accounting(results, before, {**after, "MET": 7.0, "received": 9.0})["ok"]  # a request we never sent
    assert not accounting(results, before, {**after, "inflight": 1.0})["ok"]
    lost = [result(0, Outcome.MET), result(1, Outcome.FAILED, "client_timeout after 2000 ms")]
    assert not accounting(lost, before, {**after, "DROPPED": 0.0, "FAILED": 1.0})["ok"]  # no server answer


def test_server_counts_read_a_scrape():
    text = ("# TYPE edgeserving_requests_total counter\n"
            'edgeserving_requests_total{model="a",outcome="MET",reason=""} 3\n'
            'edgeserving_requests_total{model="a",outcome="REJECTED",reason="queue_full"} 2\n'
            "# TYPE edgeserving_requests_received_total counter\nedgeserving_requests_received_total 5\n"
            '# TYPE edgeserving_queue_depth gauge\nedgeserving_queue_depth{model="a"} 1\n')
    c = server_counts(text)
    assert (c["MET"], c["REJECTED"], c["received"], c["queued"], c["inflight"]) == (3, 2, 5, 1, 0)


def test_a_capacity_step_passes_on_met_share_throughput_and_answers():
    ok = [result(i * 0.1, Outcome.MET) for i in range(100)]
    assert capacity_step(10.0, 10.0, ok, 10.2, False, 0.95).passed
    assert not capacity_step(10.0, 10.0, ok, 10.2, True, 0.95).passed  # the replayer fell behind
    assert not capacity_step(10.0, 10.0, ok, 12.0, False, 0.95).passed  # answers lag the offer
    late = ok[:90] + [result(9.5, Outcome.LATE)] * 10
    assert not capacity_step(10.0, 10.0, late, 10.2, False, 0.95).passed


def test_recovery_is_the_start_of_the_first_bin_after_which_everything_is_met():
    results = [result(60.2, Outcome.DROPPED, "x"), result(61.5, Outcome.LATE), result(62.5, Outcome.MET),
               result(63.1, Outcome.MET), result(64.9, Outcome.MET)]
    assert recovery_s(results, 60.0) == 2.0
    assert recovery_s([*results, result(65.5, Outcome.LATE)], 60.0) is None


@pytest.mark.serve
@pytest.mark.slow
def test_bench_soak_runs_end_to_end(tmp_path: Path):
    """A short real soak (10 s at a given capacity) on a profile-executor worker: exit 0, the accounting
    check passes, the worker's memory and the per-bin table are reported."""
    from scheduler.serving import deploy

    profile = write_profile(tmp_path / "p.json", {"m": {"e1": {1: 5.0, 4: 8.0}, "e2": {1: 10.0, 4: 16.0}}})
    config = deploy.load_serve_config()
    deploy.worker_app(config)["args"] = {"executor": "profile", "profile": str(profile), "bmax": 4,
                                         "models": {"m": {"input_shape": [4], "num_classes": 3,
                                                          "default_deadline_ms": 200}}}
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "bench", "soak", "--config",
                           str(tmp_path / "serve.yaml"), "--minutes", str(10 / 60), "--capacity-rps", "25",
                           "--bin-s", "5", "--warmup-s", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    soak = report["soak"]
    assert soak["accounting"]["ok"] and soak["accounting"]["sent"] == soak["requests"] > 100
    assert len(soak["per_bin"]) == 2 and len(soak["memory"]) == 1
    assert next(iter(soak["memory"].values()))["reference_mib"] > 10
    assert soak["health"]["polls"] >= 5 and soak["health"]["failures"] == 0
    assert "accounting: PASS" in proc.stdout and (out.with_suffix(".csv")).exists()


@pytest.mark.serve
@pytest.mark.slow
def test_bench_soak_overload_on_the_emulated_device(tmp_path: Path):
    """``--emulate --overload`` serves the seed GPU profile (dilated) on the profile executor and bursts at a
    multiple of that device's own capacity: short here (2x for 6 s), still every request accounted."""
    from scheduler.paths import seed_profile_path

    if not seed_profile_path().exists():
        pytest.skip(f"the seed profile is not at {seed_profile_path()}")
    out = tmp_path / "overload.json"
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "bench", "soak", "--emulate", "--dilation", "80",
                           "--overload", "--factor", "2", "--overload-s", "6", "--recovery-s", "4",
                           "--warmup-s", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "x80" in report["emulated"] and set(report["models"]) == {"resnet50", "resnet101", "resnet152"}
    assert report["capacity"]["capacity_rps"] == pytest.approx(11.95, abs=0.05)  # the device's, not searched
    assert report["overload"]["accounting"]["ok"]
    assert (tmp_path / "profile-x80.json").exists()
