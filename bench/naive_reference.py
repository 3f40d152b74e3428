"""A literal port of the reference code's scoring: a Python loop over every queued request.

It exists only to be timed beside ``EdgeServingPolicy`` (``bench overhead``) and to cross-check
that policy's decisions in tests; it is not registered as a policy.
"""

from __future__ import annotations

import math

from scheduler.policies.base import Queues
from scheduler.profile import Profile

IDLE = ("idle", None, 0)


def naive_plan(now_s: float, queues: Queues, profile: Profile, bmax: int = 10,
               quantile: str = "p95") -> tuple[str, str | None, int]:
    """(model, exit, batch size) the reference would run, or ``IDLE``."""
    names = list(queues)

    def latency(model: str, exit: str, b: int) -> float:
        return profile.latency_ms(model, exit, max(b, 1), quantile)

    def pick_exit(model: str, batch: list, b_lat: int) -> str:
        exits = profile.model(model).exits
        if not batch:
            return exits[-1]
        for e in reversed(exits):
            if all((now_s - r.arrival_s) * 1000 + latency(model, e, b_lat) <= r.slo_ms for r in batch):
                return e
        return exits[0]

    best, best_score = None, None
    for m in names:
        batch = list(queues[m])[:bmax]
        tau = latency(m, pick_exit(m, batch, len(batch)), len(batch))
        in_batch = {id(r) for r in batch}
        score = 0.0
        for other in names:
            for r in queues[other]:
                if id(r) in in_batch:
                    continue
                x = ((now_s - r.arrival_s) * 1000 + tau) / r.slo_ms - 1.0
                score += min(math.exp(min(x, 700.0)), 10.0)
        if best_score is None or score < best_score:
            best, best_score = m, score
    batch = list(queues[best])[:bmax]
    if not batch:
        return IDLE
    return best, pick_exit(best, batch, bmax), len(batch)
