"""Helpers for earliest-deadline-first policies."""

from __future__ import annotations

import numpy as np

from scheduler.policies.base import Queues
from scheduler.queues import RequestQueue
from scheduler.types import Request


def deadline_order(q: RequestQueue, keep: np.ndarray | None = None) -> list[Request]:
    """The queue's requests by deadline (ties by arrival); only those where ``keep`` is True."""
    deadlines = q.deadline_s
    idx = np.argsort(deadlines, kind="stable")
    if keep is not None:
        idx = idx[keep[idx]]
    return [q[int(i)] for i in idx]


def earliest_queue(queues: Queues) -> RequestQueue | None:
    """The queue holding the earliest deadline; ties go to the first in profile order."""
    best, best_deadline = None, float("inf")
    for q in queues.values():
        if q:
            d = float(q.deadline_s.min())
            if d < best_deadline:
                best, best_deadline = q, d
    return best
