"""Convert Azure Functions 2019 invocation counts to our trace format.

Input schema (``invocations_per_function_md.anon.dNN.csv``): ``HashOwner,HashApp,HashFunction,Trigger,1,...,1440``,
one row per function and one invocation count per minute of the day (minute ``m`` covers
``[60 (m - 1), 60 m)`` seconds; an empty cell counts as 0).

Model assignment rule: the N busiest functions inside the time window (most invocations in the
minutes the window touches; ties broken by ``HashOwner, HashApp, HashFunction`` ascending) map to
the N models in the order the models are listed: the busiest function to the first model. Each
minute's count ``c`` becomes ``c`` arrivals uniform within that minute (a Poisson process
conditioned on its count), drawn from the seeded generator. The window, speed-up and target rate
then follow ``workloads.shaping``; deadlines are drawn per request from the deadline mix.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workloads.generators import rows_from_times
from workloads.mix import DeadlineMix
from workloads.shaping import shape_times, speedup_factor, window_length_s, window_mask
from workloads.trace import TraceError, TraceRow

KEY_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Trigger")
MINUTE_S = 60.0


@dataclass(frozen=True, slots=True)
class FunctionCounts:
    owner: str
    app: str
    function: str
    trigger: str
    first_minute: int  # 0-based index of counts[0] in the day
    counts: np.ndarray  # invocations per minute, for the minutes the window touches

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def describe(self) -> str:
        return f"{self.function[:12]} ({self.trigger}, app {self.app[:8]}, {self.total} invocations)"


def busiest_functions(path: str | Path, n: int, start_s: float = 0.0, seconds: float | None = None,
                      ) -> tuple[list[FunctionCounts], float]:
    """The ``n`` busiest functions in the window, busiest first, and the trace's length in seconds.

    Only the minute columns the window touches are parsed (the real files have 1440 columns and
    tens of thousands of rows); those are validated, with the file, line and column in any error.
    """
    path = Path(path)
    if n < 1:
        raise ValueError("need at least one model to map functions to")
    window_mask(np.empty(0), start_s, seconds)  # validates start_s and seconds
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the Azure Functions trace: {exc.strerror or exc}") from exc
    with fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        minutes = _check_header(path, header)
        trace_s = minutes * MINUTE_S
        if start_s >= trace_s:
            raise ValueError(f"window start {start_s:g} s is past the trace's end ({trace_s:g} s, {minutes} minutes)")
        first = int(start_s // MINUTE_S)
        last = minutes if seconds is None else min(minutes, math.ceil((start_s + seconds) / MINUTE_S))
        top: list[tuple[int, tuple[str, str, str], list[str], list[int]]] = []
        for line_no, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise TraceError(f"{path}: line {line_no}: expected {len(header)} fields, got {len(fields)}")
            counts = [_count(path, line_no, header, fields, 4 + m) for m in range(first, last)]
            total = sum(counts)
            key = (fields[0], fields[1], fields[2])
            if total == 0:
                continue
            if len(top) < n or (-total, key) < (-top[-1][0], top[-1][1]):
                top.append((total, key, fields[:4], counts))
                top.sort(key=lambda item: (-item[0], item[1]))
                del top[n:]
    if len(top) < n:
        raise ValueError(f"{path}: only {len(top)} function(s) have invocations in the window; "
                         f"{n} model(s) need {n} busy functions (widen --seconds or list fewer models)")
    funcs = [FunctionCounts(k[0], k[1], k[2], k[3], first, np.asarray(c, dtype=np.int64)) for _, _, k, c in top]
    return funcs, trace_s


def convert_azure_functions(path: str | Path, models: Sequence[str],
                            deadline_mix: DeadlineMix | float | Sequence[tuple[float, float]],
                            rng: np.random.Generator, rate_rps: float | None = None, speedup: float = 1.0,
                            start_s: float = 0.0, seconds: float | None = None) -> list[TraceRow]:
    """Our trace from an Azure Functions 2019 invocation-count file (rules in the module docstring)."""
    models = _models(models)
    funcs, trace_s = busiest_functions(path, len(models), start_s, seconds)
    return functions_to_rows(funcs, models, deadline_mix, rng, trace_s, rate_rps, speedup, start_s, seconds)


def functions_to_rows(funcs: Sequence[FunctionCounts], models: Sequence[str],
                      deadline_mix: DeadlineMix | float | Sequence[tuple[float, float]],
                      rng: np.random.Generator, trace_s: float, rate_rps: float | None = None,
                      speedup: float = 1.0, start_s: float = 0.0, seconds: float | None = None,
                      ) -> list[TraceRow]:
    """Spread each function's per-minute counts uniformly in its minutes; ``funcs[i]`` feeds ``models[i]``."""
    assert len(funcs) == len(models), "one function per model"
    mix = DeadlineMix.of(deadline_mix)
    per_model = []
    for f in funcs:
        minute_starts = (f.first_minute + np.arange(len(f.counts))) * MINUTE_S
        t = np.repeat(minute_starts, f.counts) + rng.uniform(0.0, MINUTE_S, int(f.total))
        per_model.append(np.sort(t[window_mask(t, start_s, seconds)]))
    count = sum(len(t) for t in per_model)
    factor = speedup_factor(count, window_length_s(start_s, seconds, trace_s),
                            None if speedup == 1.0 else speedup, rate_rps)
    return rows_from_times(list(models), [shape_times(t, start_s, factor) for t in per_model], mix, rng)


def _models(models: Sequence[str]) -> list[str]:
    if isinstance(models, str) or not all(isinstance(m, str) for m in models):
        raise ValueError(f"models must be a list of names, got {models!r}")
    names = list(models)
    if not names:
        raise ValueError("no models: give at least one model to map functions to")
    if len(set(names)) != len(names):
        raise ValueError(f"models {names} name a model twice")
    return names


def _check_header(path: Path, header: list[str]) -> int:
    if tuple(header[:4]) != KEY_COLUMNS:
        raise TraceError(f"{path}: line 1: the header starts {header[:4]}; an Azure Functions 2019 trace "
                         f"starts {list(KEY_COLUMNS)} followed by minute columns 1..1440")
    minutes = header[4:]
    if not minutes:
        raise TraceError(f"{path}: line 1: no minute columns; expected 1..1440 after {list(KEY_COLUMNS)}")
    for i, name in enumerate(minutes, start=1):
        if name != str(i):
            raise TraceError(f"{path}: line 1, column {5 + i - 1}: minute column named {name!r}, expected "
                             f"'{i}' (minute columns run 1..1440 in order)")
    return len(minutes)


def _count(path: Path, line_no: int, header: list[str], fields: list[str], col: int) -> int:
    text = fields[col].strip()
    try:
        value = int(text) if text else 0
    except ValueError:
        raise TraceError(f"{path}: line {line_no}, column {header[col]}: not an integer count: {text!r}") from None
    if value < 0:
        raise TraceError(f"{path}: line {line_no}, column {header[col]}: negative count {value}")
    return value
