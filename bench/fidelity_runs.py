"""The live side of ``bench fidelity``: the calibration at load and the trace, replayed in alternating windows.

A shared machine drifts over minutes (other tenants, Ray's background, the kernel's placement of
threads on two cores): a calibration measured before the replay meets another machine than the replay
does, and on the 2-core box the slot times at load moved by tens of percent between the two
(BENCHMARKS.md, fidelity). So both are cut into the same number of windows and replayed alternately:
calibration window k, then trace window k, each an open-loop replay of its own. The calibration stays
separate traffic (its own seed and rates), measured at the times of the replay it is used to predict.

With ``repeats`` the whole alternation runs that many times: the same trace replayed minutes apart on
this box gave P95s 7-14% apart (direct ingress) and up to 38% apart (through the proxy; BENCHMARKS.md),
as much as the target's tolerance, so one replay is a noisy reference. The repeats are pooled and their
spread reported; the simulator runs the same number of copies (``repeated``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Measured:
    calibration: list  # results of the calibration at load, every window
    live: Any  # the trace's ReplayReport, windows pooled
    cal_metrics: dict[str, float] = field(default_factory=dict)  # worker metrics gained over the calibration
    live_metrics: dict[str, float] = field(default_factory=dict)  # ... and over the trace
    cal_cpu_s: float = 0.0  # CPU seconds of this run's processes during the calibration windows
    cal_wall_s: float = 0.0
    rates_rps: list[float] = field(default_factory=list)  # per calibration request with an outside time:
    outside_ms: list[float] = field(default_factory=list)  # its local arrival rate, its time outside
    worker_ms: list[float] = field(default_factory=list)  # and its time in the worker (queue + slot)
    live_repeats: list = field(default_factory=list)  # the trace's ReplayReport of each repeat, windows pooled


def windows(rows: list, n: int) -> list[list]:
    """``rows`` cut into ``n`` windows of equal length (by arrival time), each re-based to start at 0."""
    if n < 1:
        raise ValueError(f"need at least one window, got {n}")
    if n == 1 or not rows:
        return [list(rows)]
    width_s = max(rows[-1].arrival_s, 1e-9) / n  # the last arrival falls in the last window (clamped)
    out: list[list] = [[] for _ in range(n)]
    for r in rows:
        k = min(int(r.arrival_s // width_s), n - 1)
        out[k].append(dataclasses.replace(r, arrival_s=r.arrival_s - k * width_s))
    return out


def repeated(rows: list, n: int, gap_s: float = 10.0) -> list:
    """``n`` copies of ``rows`` one after another, ids prefixed with the copy (``k:``), each copy starting
    ``gap_s`` after the last arrival of the one before: ``n`` replays in one simulation, pooled, each
    meeting an engine that has long drained (no slot runs for seconds)."""
    if n < 1:
        raise ValueError(f"need at least one copy, got {n}")
    if n == 1 or not rows:
        return list(rows)
    span_s = rows[-1].arrival_s + gap_s
    return [dataclasses.replace(r, arrival_s=r.arrival_s + k * span_s, request_id=f"{k}:{r.request_id}")
            for k in range(n) for r in rows]


def measure(h: Any, target: Any, calibration_rows: list, rows: list, n_windows: int, repeats: int = 1) -> Measured:
    """Replay calibration window k then trace window k, for every k, ``repeats`` times; worker metrics and CPU
    per side. The live results pool every window of every repeat (``bench.live.pooled``)."""
    from bench import fidelity_metrics as fm
    from bench.live import pooled
    from bench.live_harness import cpu_snapshot

    if repeats < 1:
        raise ValueError(f"need at least one repeat, got {repeats}")
    cal_parts, live_parts = windows(calibration_rows, n_windows), windows(rows, n_windows)
    n = len(cal_parts)
    m = Measured(calibration=[], live=None)
    reports = []
    for k, (cal, part) in enumerate(zip(cal_parts * repeats, live_parts * repeats, strict=True)):
        rep = k // n
        what = f"{k % n + 1}/{n}" + (f", repeat {rep + 1}/{repeats}" if repeats > 1 else "")
        before, cpu0, t0 = h.scrape(target), cpu_snapshot(), time.perf_counter()
        at_load = h.replay(target, cal, judge="server", description=f"calibration at load {what}: {target.label}")
        m.cal_wall_s += time.perf_counter() - t0
        m.cal_cpu_s += sum(cpu_snapshot().values()) - sum(cpu0.values())
        after = h.scrape(target)
        _accumulate(m.cal_metrics, before, after)
        m.calibration += at_load.results if rep == 0 else [  # ids unique over the repeats, as ``repeated`` does
            dataclasses.replace(r, request=dataclasses.replace(r.request, id=f"{rep}:{r.request.id}"))
            for r in at_load.results]
        rates, outside, worker = fm.rate_samples(at_load.results)
        m.rates_rps += rates
        m.outside_ms += outside
        m.worker_ms += worker
        live = h.replay(target, part, judge="server", description=f"live {what}: {target.label}")
        _accumulate(m.live_metrics, after, h.scrape(target))
        reports.append(live)
    m.live = pooled(reports, target.label)
    m.live_repeats = [pooled(reports[i:i + n], target.label) for i in range(0, len(reports), n)]
    return m


def _accumulate(total: dict[str, float], before: dict[str, float], after: dict[str, float]) -> None:
    for key, value in after.items():
        total[key] = total.get(key, 0.0) + value - before.get(key, 0.0)
