"""The trace CSV format: ``arrival_s,model,deadline_ms`` plus optional ``request_id,input_seed,label``.

Rows are sorted by ``arrival_s`` (seconds from the trace's start); ``deadline_ms`` is relative to
the arrival. The reader validates everything and names the file, line and column of any error.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scheduler.types import Request

REQUIRED = ("arrival_s", "model", "deadline_ms")
OPTIONAL = ("request_id", "input_seed", "label")
COLUMNS = REQUIRED + OPTIONAL


class TraceError(ValueError):
    """A trace file is unreadable or breaks the format; the message names file, line and column."""


@dataclass(frozen=True, slots=True)
class TraceRow:
    arrival_s: float
    model: str
    deadline_ms: float
    request_id: str
    input_seed: int | None = None
    label: int | None = None

    def to_request(self, origin_s: float = 0.0) -> Request:
        """The engine's view of this row, with the trace's time origin at ``origin_s``."""
        arrival_s = origin_s + self.arrival_s
        return Request(self.request_id, self.model, arrival_s, arrival_s + self.deadline_ms / 1000.0,
                       label=self.label)


def read_trace(path: str | Path, models: Iterable[str] | None = None) -> list[TraceRow]:
    """Read and validate a trace. With ``models``, an unknown model name is an error too."""
    path = Path(path)
    known = set(models) if models is not None else None
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace: {exc.strerror or exc}") from exc
    rows: list[TraceRow] = []
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}: line 1: empty file; expected the header {','.join(REQUIRED)}")
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            raise TraceError(f"{path}: line 1: unknown column(s) {unknown}; allowed columns are {list(COLUMNS)}")
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise TraceError(f"{path}: line 1: missing required column(s) {missing}")
        if len(set(header)) != len(header):
            raise TraceError(f"{path}: line 1: duplicate column names in {header}")
        col = {name: i for i, name in enumerate(header)}
        previous_s = -math.inf
        seen_ids: dict[str, int] = {}
        for line_no, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise TraceError(f"{path}: line {line_no}: expected {len(header)} fields, got {len(fields)}")
            row = _parse_row(path, line_no, fields, col, known, len(rows))
            if row.arrival_s < previous_s:
                raise TraceError(f"{path}: line {line_no}, column arrival_s: times are not sorted "
                                 f"({row.arrival_s} after {previous_s})")
            previous_s = row.arrival_s
            if row.request_id in seen_ids:
                raise TraceError(f"{path}: line {line_no}, column request_id: id {row.request_id!r} repeats "
                                 f"line {seen_ids[row.request_id]}; ids must be unique")
            seen_ids[row.request_id] = line_no
            rows.append(row)
    return rows


def _parse_row(path: Path, line_no: int, fields: Sequence[str], col: dict[str, int],
               known: set[str] | None, index: int) -> TraceRow:
    def err(column: str, problem: str) -> TraceError:
        return TraceError(f"{path}: line {line_no}, column {column}: {problem}")

    def number(column: str) -> float:
        text = fields[col[column]].strip()
        try:
            value = float(text)
        except ValueError:
            raise err(column, f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise err(column, f"not a finite number: {text!r}")
        return value

    def integer(column: str) -> int | None:
        if column not in col or not fields[col[column]].strip():
            return None
        text = fields[col[column]].strip()
        try:
            return int(text)
        except ValueError:
            raise err(column, f"not an integer: {text!r}") from None

    arrival_s = number("arrival_s")
    if arrival_s < 0:
        raise err("arrival_s", f"negative arrival time {arrival_s}")
    model = fields[col["model"]].strip()
    if not model:
        raise err("model", "empty model name")
    if known is not None and model not in known:
        raise err("model", f"unknown model {model!r}; known models are {sorted(known)}")
    deadline_ms = number("deadline_ms")
    if deadline_ms <= 0:
        raise err("deadline_ms", f"deadline must be positive, got {deadline_ms}")
    request_id = fields[col["request_id"]].strip() if "request_id" in col else ""
    input_seed = integer("input_seed")
    if input_seed is not None and input_seed < 0:
        raise err("input_seed", f"seeds must be >= 0, got {input_seed}")
    return TraceRow(arrival_s, model, deadline_ms, request_id or str(index), input_seed, integer("label"))


def write_trace(path: str | Path, rows: Iterable[TraceRow]) -> int:
    """Write rows (sorted by arrival) with every column; returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([repr(r.arrival_s), r.model, repr(r.deadline_ms), r.request_id,
                        "" if r.input_seed is None else r.input_seed, "" if r.label is None else r.label])
            n += 1
    return n
