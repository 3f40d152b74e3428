"""Clocks. Nothing under ``scheduler/`` reads wall time except ``RealClock`` and ``unix_now``."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on this clock (monotonic, arbitrary origin)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass on this clock."""
        ...


class RealClock:
    """Monotonic wall time, for live serving."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def unix_now() -> float:
    """Seconds since the Unix epoch. Only to compare with a client's own send time (deadline propagation,
    the one clock two processes share); durations use a monotonic ``Clock``."""
    return time.time()


class VirtualClock:
    """Simulated time: it moves only when a driver or a simulated slot advances it."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s

    def now(self) -> float:
        return self._now_s

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"cannot sleep a negative time ({seconds} s)"
        self._now_s += seconds

    def advance_to(self, t_s: float) -> None:
        """Jump forward to ``t_s``; never backwards."""
        if t_s > self._now_s:
            self._now_s = t_s
