"""``edgeserving bench sim --preemption``: the quick path on a tiny workload, benefit and cost side by side."""

import json
from collections import defaultdict

import numpy as np
import pytest

from bench.sim_preemption import VARIANTS
from bench.sim_suites import build_requests, preemption_workloads
from scheduler.cli import main
from scheduler.paths import seed_profile_path
from scheduler.profile import Profile

SEED = seed_profile_path()


@pytest.mark.skipif(not SEED.exists(), reason=f"seed profile not found at {SEED}")
def test_quick_preemption_run_reports_benefit_and_cost(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "pre"
    assert main(["bench", "sim", "--preemption", "--quick", "--seconds", "1", "--seeds", "1", "--workers", "2",
                 "--preemption-repeats", "3", "--json", "--out", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)

    # Benefit: every variant ran on every workload point, on the same trace, and answered each of its
    # requests exactly once (the simulator asserts no request ends twice; the counts close the other way).
    workloads = preemption_workloads(Profile.load(SEED), 10, 1.0, quick=True)
    trace_seed = np.random.SeedSequence(0).spawn(2)[0]
    expected = {(w.suite, w.slo_label, w.load): len(build_requests(w, Profile.load(SEED),
                                                                     np.random.default_rng(trace_seed)))
                for w in workloads}
    runs = data["runs"]
    assert len(runs) == len(workloads) * len(VARIANTS)
    by_point = defaultdict(set)
    for r in runs:
        n = expected[(r["suite"], r["slo"], r["load"])]
        assert r["requests"] == n > 0
        assert sum(r[o] for o in ("MET", "LATE", "REJECTED", "DROPPED", "FAILED")) == n and r["FAILED"] == 0
        by_point[(r["suite"], r["slo"], r["load"])].add(r["policy"])
        preemptive = r["policy"].endswith(("+preempt", "+never-stop"))
        assert (r["preempted_slots"] is not None) is preemptive
    assert all(p == {v.label for v in VARIANTS} for p in by_point.values())
    stopped = defaultdict(int)
    for r in runs:
        stopped[r["policy"]] += r["preempted_slots"] or 0
    assert stopped["lookahead+never-stop"] == 0  # asked at every boundary, never stops
    assert stopped["lookahead-reserve+preempt"] > 0  # without the reserve, the 10 ms class gets slots stopped

    # Cost: a row per demo model and batch size with real, positive times; the question timed both ways.
    overhead = data["overhead"]
    assert {(r["model"], r["batch"]) for r in overhead} == {(m, b) for m in {r["model"] for r in overhead}
                                                             for b in (1, 8)}
    assert len({r["model"] for r in overhead}) == 3
    assert all(r["run_ms"] > 0 and r["preemptible_ms"] > 0 and r["ratio"] > 0 and r["questions"] >= 1
               for r in overhead)
    assert {(q["depth_per_model"], q["news"]) for q in data["questions"]} == {(10, True), (10, False), (100, True),
                                                                               (100, False)}
    assert all(q["median_us"] > 0 for q in data["questions"])

    md = (out / "preemption.md").read_text()
    assert "- command: `edgeserving bench sim --preemption --quick --seeds 1 --seconds 1" in md
    assert "## Benefit (simulator)" in md and "| gamma-cv4 | 10/50/200 ms | 0.8x cap | lookahead+preempt |" in md
    assert "## Cost: the policy's question" in md and (out / "runs.csv").exists()
