"""Cutting a time window out of a public trace and rescaling its time axis.

Order of operations, shared by every converter:
1. window: keep arrivals with ``start_s <= t < start_s + seconds`` on the source trace's own time
   axis (seconds since its first record), before any scaling;
2. shift the window's start to 0;
3. scale time by one factor: ``--speedup X`` divides every time by X (same shape, X times the
   rate), or ``--rate R`` picks the factor that makes the window's mean rate R requests/s. The
   window's mean rate is its arrival count over its length (``seconds``, cut at the trace's end).
"""

from __future__ import annotations

import math

import numpy as np


def window_mask(times_s: np.ndarray, start_s: float, seconds: float | None) -> np.ndarray:
    """Which arrivals fall in ``[start_s, start_s + seconds)`` (to the end when ``seconds`` is None)."""
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"window start {start_s!r} s: expected a finite number >= 0")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"window length {seconds!r} s: expected a finite number > 0")
    end_s = math.inf if seconds is None else start_s + seconds
    return (times_s >= start_s) & (times_s < end_s)


def window_length_s(start_s: float, seconds: float | None, trace_end_s: float) -> float:
    """The window's length in source seconds: ``seconds``, cut at the trace's end."""
    end_s = trace_end_s if seconds is None else min(start_s + seconds, trace_end_s)
    return max(end_s - start_s, 0.0)


def speedup_factor(count: int, length_s: float, speedup: float | None, rate_rps: float | None) -> float:
    """The factor every (shifted) time is divided by: ``speedup``, or the one that gives ``rate_rps``."""
    if speedup is not None and rate_rps is not None:
        raise ValueError("give a speed-up factor or a target rate, not both (both rescale time)")
    if rate_rps is None:
        factor = 1.0 if speedup is None else speedup
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"speed-up {factor!r}: expected a finite number > 0")
        return factor
    if not (math.isfinite(rate_rps) and rate_rps > 0):
        raise ValueError(f"target rate {rate_rps!r}: expected a finite number > 0 requests/s")
    if count == 0 or length_s <= 0:
        raise ValueError("cannot reach a target rate: the selected window holds no arrivals "
                         "(check --start and --seconds against the trace's length)")
    return rate_rps / (count / length_s)


def shape_times(times_s: np.ndarray, start_s: float, factor: float) -> np.ndarray:
    """Window-relative, rescaled times."""
    return (np.asarray(times_s, dtype=float) - start_s) / factor
