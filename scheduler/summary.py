"""Summaries of a run's results: the summary JSON of ARCHITECTURE.md and a readable table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scheduler.profile import Profile
from scheduler.types import Outcome, RequestResult


def summarize(results: Sequence[RequestResult], profile: Profile, policy: str) -> dict[str, Any]:
    """The summary object: outcomes, violation ratio, latency percentiles, accuracy and exits.

    ``violation_ratio`` counts every outcome but MET over all requests; latency percentiles cover
    completed (MET + LATE) requests; ``mean_accuracy`` averages the profiled accuracy of the exit
    each completed request used; ``effective_accuracy`` counts requests without an answer as 0.
    """
    summary = {"policy": policy, **_stats(results, profile)}
    summary["per_model"] = {
        m: _stats([r for r in results if r.request.model == m], profile)
        for m in profile.model_names if any(r.request.model == m for r in results)
    }
    return summary


def _stats(results: Sequence[RequestResult], profile: Profile) -> dict[str, Any]:
    outcomes = {o.value: 0 for o in Outcome}
    exits: dict[str, dict[str, int]] = {}
    latencies = []
    accuracy_sum = 0.0
    for r in results:
        outcomes[r.outcome.value] += 1
        if r.outcome.completed:
            latencies.append(r.latency_ms)
            accuracy_sum += profile.accuracy(r.request.model, r.exit)
            per_model = exits.setdefault(r.request.model, {})
            per_model[r.exit] = per_model.get(r.exit, 0) + 1
    n, done = len(results), len(latencies)
    lat = np.asarray(latencies)
    pct = (lambda q: float(np.percentile(lat, q))) if done else (lambda q: None)
    return {
        "requests": n,
        "outcomes": outcomes,
        "violation_ratio": (n - outcomes["MET"]) / n if n else 0.0,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_accuracy": accuracy_sum / done if done else None,
        "effective_accuracy": accuracy_sum / n if n else None,
        "exits": {m: dict(sorted(exits[m].items(), key=lambda kv: profile.model(m).exit_index(kv[0])))
                  for m in profile.model_names if m in exits},
    }


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def summary_rows(summaries: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, one row per summary."""
    header = ["policy", "requests", "MET", "LATE", "REJ", "DROP", "FAIL", "violation %",
              "p50 ms", "p95 ms", "p99 ms", "mean acc %", "eff acc %"]
    rows = []
    for s in summaries:
        o = s["outcomes"]
        acc = s["mean_accuracy"]
        eff = s["effective_accuracy"]
        rows.append([s["policy"], str(s["requests"]), str(o["MET"]), str(o["LATE"]), str(o["REJECTED"]),
                     str(o["DROPPED"]), str(o["FAILED"]), f"{100 * s['violation_ratio']:.2f}",
                     _fmt(s["p50_ms"], ".2f"), _fmt(s["p95_ms"], ".2f"), _fmt(s["p99_ms"], ".2f"),
                     _fmt(None if acc is None else 100 * acc, ".2f"),
                     _fmt(None if eff is None else 100 * eff, ".2f")])
    return header, rows


def exit_mix(summary: dict[str, Any]) -> str:
    """``model: exit share%, ...`` over completed requests, for tables."""
    parts = []
    for model, exits in summary["exits"].items():
        total = sum(exits.values())
        shares = " ".join(f"{e}:{100 * c / total:.0f}%" for e, c in exits.items())
        parts.append(f"{model}[{shares}]")
    return " ".join(parts)
