"""The look-ahead's feasibility test: how long may the next slot take without dooming queued work?

Each model contributes a list of pending batches as (deadline_s, duration_ms): ``waiting[j]`` if its
candidate batch does not run now, ``leftover[j]`` if it does. For a candidate ``i`` the rest of the
work is ``leftover[i]`` plus every other model's ``waiting``; run earliest-deadline-first after a
slot of ``S`` ms, it meets every deadline iff ``S <= slack_ms(i)``, with

    slack_ms(i) = min over the EDF order of (deadline_k - now - sum of durations up to k - spread x
                  sqrt(sum of squared durations up to k)).

The durations are expected times; ``spread`` (the safety margin minus one) adds a pooled deviation
instead of every item's own worst case, since independent slot-time errors partly cancel.
"""

from __future__ import annotations

import math

INF = float("inf")

Batches = list[tuple[float, float]]  # (deadline_s, duration_ms)


class EdfSlack:
    def __init__(self, now_s: float, waiting: list[Batches], leftover: list[Batches], spread: float) -> None:
        self.now_s = now_s
        self.spread = spread
        self.leftover = [sorted(x) for x in leftover]
        # One sort for every candidate: each pass skips its own model's entries.
        self.merged = sorted((d, dur, j) for j, w in enumerate(waiting) for d, dur in w)
        self._cache: dict[int, float] = {}

    def slack_ms(self, i: int, extra: tuple[float, float] | None = None) -> float:
        """The longest slot model ``i``'s batch may take (``i = -1``: a slot that serves no queued model);
        ``extra`` is one more (deadline_s, duration_ms) batch it leaves behind."""
        if extra is None:
            cached = self._cache.get(i)
            if cached is not None:
                return cached
        base_ms = self.now_s * 1000.0
        spread, sqrt = self.spread, math.sqrt
        left = self.leftover[i] if i >= 0 else []
        if extra is not None:
            left = sorted([*left, extra])
        k, n_left = 0, len(left)
        busy_ms = square_ms2 = 0.0
        slack_ms = INF
        for d_s, dur_ms, j in self.merged:
            if j == i:
                continue
            while k < n_left and left[k][0] <= d_s:
                ld_s, ldur_ms = left[k]
                busy_ms += ldur_ms
                square_ms2 += ldur_ms * ldur_ms
                room = ld_s * 1000.0 - base_ms - busy_ms - spread * sqrt(square_ms2)
                if room < slack_ms:
                    slack_ms = room
                k += 1
            busy_ms += dur_ms
            square_ms2 += dur_ms * dur_ms
            room = d_s * 1000.0 - base_ms - busy_ms - spread * sqrt(square_ms2)
            if room < slack_ms:
                slack_ms = room
        for ld_s, ldur_ms in left[k:]:
            busy_ms += ldur_ms
            square_ms2 += ldur_ms * ldur_ms
            room = ld_s * 1000.0 - base_ms - busy_ms - spread * sqrt(square_ms2)
            if room < slack_ms:
                slack_ms = room
        if extra is None:
            self._cache[i] = slack_ms
        return slack_ms
