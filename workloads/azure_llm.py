"""Convert the Azure LLM inference trace 2023 (``TIMESTAMP,ContextTokens,GeneratedTokens``) to our trace format.

Arrival times are the timestamps, in seconds since the file's first record; the window, speed-up
and target rate follow ``workloads.shaping``.

Model assignment rule (``assign="context"``, the default): requests are bucketed by their number
of context tokens, the longest prompts going to the last model listed. With models
``M1:w1,...,Mk:wk`` (weights default to 1), the bucket edges are the empirical quantiles of the
window's context lengths at the cumulative shares ``(w1 + ... + wi) / W``; a request goes to the
first model whose edge is >= its context length. So ``resnet50,resnet101,resnet152`` sends the
shortest third of prompts to resnet50 and the longest third to resnet152. Requests with equal
lengths always share a model, so shares are exact only up to ties.
With ``assign="random"`` each request draws its model independently with probabilities
``wi / W`` from the seeded generator.

Deadlines are drawn per request from the deadline mix (seeded); ``input_seed`` is the request's
index in the output.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from workloads.mix import DeadlineMix
from workloads.shaping import shape_times, speedup_factor, window_length_s, window_mask
from workloads.trace import TraceError, TraceRow

HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
ASSIGN_RULES = ("context", "random")

_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?$")


@dataclass(frozen=True, slots=True)
class LlmTrace:
    times_s: np.ndarray  # seconds since the first record, sorted
    context_tokens: np.ndarray
    generated_tokens: np.ndarray


def read_azure_llm(path: str | Path) -> LlmTrace:
    """Read and validate the CSV; errors name the file, the line and the column."""
    path = Path(path)
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the Azure LLM trace: {exc.strerror or exc}") from exc
    stamps: list[datetime] = []
    fractions: list[float] = []
    context: list[int] = []
    generated: list[int] = []
    with fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if tuple(header) != HEADER:
            raise TraceError(f"{path}: line 1: header is {header}; an Azure LLM trace has {list(HEADER)}")
        for line_no, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(HEADER):
                raise TraceError(f"{path}: line {line_no}: expected {len(HEADER)} fields, got {len(fields)}")
            stamp, fraction = _timestamp(path, line_no, fields[0])
            stamps.append(stamp)
            fractions.append(fraction)
            context.append(_count(path, line_no, "ContextTokens", fields[1]))
            generated.append(_count(path, line_no, "GeneratedTokens", fields[2]))
    if not stamps:
        raise TraceError(f"{path}: no records after the header")
    t0 = stamps[0]
    times = np.array([(s - t0).total_seconds() for s in stamps]) + (np.asarray(fractions) - fractions[0])
    order = np.argsort(times, kind="stable")  # public traces are not guaranteed sorted
    times = times[order] - times[order[0]]
    return LlmTrace(times, np.asarray(context)[order], np.asarray(generated)[order])


def convert_azure_llm(path: str | Path, models: Sequence[str] | Mapping[str, float],
                      deadline_mix: DeadlineMix | float | Sequence[tuple[float, float]],
                      rng: np.random.Generator, rate_rps: float | None = None, speedup: float = 1.0,
                      start_s: float = 0.0, seconds: float | None = None, assign: str = "context",
                      ) -> list[TraceRow]:
    """Our trace from the Azure LLM trace at ``path`` (see the module docstring for the rules).

    ``models`` is a list (equal weights) or {model: weight}; ``rate_rps`` (target mean rate) and
    ``speedup`` both rescale time, so give at most one of them.
    """
    weights = _weights(models)
    if assign not in ASSIGN_RULES:
        raise ValueError(f"unknown assignment rule {assign!r}; choose one of {', '.join(ASSIGN_RULES)}")
    mix = DeadlineMix.of(deadline_mix)
    trace = read_azure_llm(path)
    keep = window_mask(trace.times_s, start_s, seconds)
    times = trace.times_s[keep]
    tokens = trace.context_tokens[keep]
    length_s = window_length_s(start_s, seconds, float(trace.times_s[-1]))
    factor = speedup_factor(len(times), length_s, None if speedup == 1.0 else speedup, rate_rps)
    names = list(weights)
    share = np.asarray(list(weights.values())) / sum(weights.values())
    if assign == "context":
        which = assign_by_context(tokens, share)
    else:
        which = rng.choice(len(names), size=len(times), p=share)
    out_t = shape_times(times, start_s, factor)
    deadlines = mix.draw(len(out_t), rng)
    return [TraceRow(float(out_t[k]), names[which[k]], float(deadlines[k]), str(k), input_seed=k)
            for k in range(len(out_t))]


def assign_by_context(tokens: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Model index per request: context-length buckets with edges at the cumulative shares' quantiles."""
    if len(tokens) == 0:
        return np.empty(0, dtype=int)
    edges = np.quantile(tokens, np.cumsum(share)[:-1], method="inverted_cdf")
    return np.searchsorted(edges, tokens, side="left")


def _weights(models: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    weights = dict(models) if isinstance(models, Mapping) else {m: 1.0 for m in models}
    if not weights:
        raise ValueError("no models: give at least one model to map requests to")
    if not isinstance(models, Mapping) and len(weights) != len(models):
        raise ValueError(f"models {list(models)} name a model twice")
    for m, w in weights.items():
        if not w > 0:
            raise ValueError(f"weight of model {m!r} is {w!r}; weights must be > 0")
    return weights


def _timestamp(path: Path, line_no: int, text: str) -> tuple[datetime, float]:
    m = _TIMESTAMP.match(text.strip())
    if m is None:
        raise TraceError(f"{path}: line {line_no}, column TIMESTAMP: {text!r} is not a timestamp "
                         f"like 2023-11-16 18:15:46.6805900")
    try:
        stamp = datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise TraceError(f"{path}: line {line_no}, column TIMESTAMP: {text!r}: {exc}") from None
    return stamp, float(m.group(3)) if m.group(3) else 0.0


def _count(path: Path, line_no: int, column: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise TraceError(f"{path}: line {line_no}, column {column}: not an integer: {text!r}") from None
    if value < 0:
        raise TraceError(f"{path}: line {line_no}, column {column}: negative token count {value}")
    return value
