"""Descriptive statistics of a trace: counts, mean rates, inter-arrival CVs and deadline classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workloads.trace import TraceRow


def interarrival_cv(times_s: np.ndarray) -> float | None:
    """Coefficient of variation (std / mean) of the gaps between sorted arrival times."""
    gaps = np.diff(np.sort(np.asarray(times_s, dtype=float)))
    if len(gaps) < 2 or gaps.mean() <= 0:
        return None
    return float(gaps.std(ddof=1) / gaps.mean())


def trace_stats(rows: Sequence[TraceRow], duration_s: float | None = None) -> dict[str, Any]:
    """Summary of a trace. Rates are over ``duration_s`` (default: from 0 to the last arrival)."""
    times = np.asarray([r.arrival_s for r in rows], dtype=float)
    if duration_s is None:
        duration_s = float(times.max()) if len(times) else 0.0

    def rate(n: int) -> float | None:
        return n / duration_s if duration_s > 0 else None

    per_model: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(r.model for r in rows):
        t = np.asarray([r.arrival_s for r in rows if r.model == model])
        per_model[model] = {"requests": len(t), "rate_rps": rate(len(t)), "interarrival_cv": interarrival_cv(t)}
    deadlines: dict[str, int] = {}
    for r in rows:
        key = f"{r.deadline_ms:g}"
        deadlines[key] = deadlines.get(key, 0) + 1
    return {
        "requests": len(rows),
        "duration_s": duration_s,
        "rate_rps": rate(len(rows)),
        "interarrival_cv": interarrival_cv(times),
        "per_model": dict(sorted(per_model.items())),
        "deadline_share": {d: c / len(rows) for d, c in sorted(deadlines.items(), key=lambda kv: float(kv[0]))},
    }


def stats_table(stats: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for ``console.print_table``: one row per model and a total."""
    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    header = ["model", "requests", "mean rps", "inter-arrival CV"]
    rows = [[m, str(s["requests"]), fmt(s["rate_rps"], ".2f"), fmt(s["interarrival_cv"], ".2f")]
            for m, s in stats["per_model"].items()]
    rows.append(["all", str(stats["requests"]), fmt(stats["rate_rps"], ".2f"), fmt(stats["interarrival_cv"], ".2f")])
    return header, rows
