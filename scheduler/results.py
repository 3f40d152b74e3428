"""The results CSV: one row per request, the same for live replay and simulation."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from scheduler.types import RequestResult

RESULT_COLUMNS = ("request_id", "model", "arrival_s", "deadline_ms", "outcome", "exit", "batch_size",
                  "latency_ms", "queue_ms", "slot_ms")


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


def result_row(r: RequestResult, origin_s: float = 0.0) -> list[str]:
    """One CSV row; ``arrival_s`` is written relative to ``origin_s`` (the trace's time zero)."""
    req = r.request
    return [req.id, req.model, _cell(req.arrival_s - origin_s), _cell(req.slo_ms), r.outcome.value,
            _cell(r.exit), _cell(r.batch_size), _cell(r.latency_ms), _cell(r.queue_ms), _cell(r.slot_ms)]


def write_results(path: str | Path, results: Iterable[RequestResult], origin_s: float = 0.0) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(RESULT_COLUMNS)
        for r in results:
            w.writerow(result_row(r, origin_s))
            n += 1
    return n
