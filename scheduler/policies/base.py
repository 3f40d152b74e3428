"""What every scheduling policy is, and small helpers they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scheduler.profile import MAX_BATCH, LatencyTable, Profile
from scheduler.queues import RequestQueue
from scheduler.types import Plan, Request, SlotResult

Queues = Mapping[str, RequestQueue]


class Policy:
    """A scheduling policy: given the queues at ``now_s``, decide the next slot.

    ``plan`` must not change the queues: the engine applies the returned plan. ``bmax`` bounds
    every batch; ``quantile`` is the profile quantile the policy predicts slot times with.
    """

    name = "policy"

    def __init__(self, bmax: int = 10, quantile: str = "p95") -> None:
        if not 1 <= bmax <= MAX_BATCH:
            raise ValueError(f"bmax must be between 1 and {MAX_BATCH}, got {bmax}")
        self.bmax = bmax
        self.quantile = quantile
        self.label = self.name  # what summaries call it: the spec when made from one with options (make_policy)
        self._table_for: tuple[int, LatencyTable] | None = None

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        raise NotImplementedError

    def admit(self, now_s: float, request: Request, queues: Queues, profile: Profile) -> str | None:
        """A reason to refuse ``request`` at admission, or None to queue it."""
        return None

    def displace(self, now_s: float, request: Request, queues: Queues, profile: Profile) -> Request | None:
        """Asked when ``request``'s queue is at its bound: a request queued there to drop so that ``request``
        takes its place, or None to refuse ``request`` (``queue_full``). Must not change the queues."""
        return None

    def observe(self, plan: Plan, slot: SlotResult) -> None:
        """Called by the engine after each slot it ran (for stateful or learning policies)."""

    @property
    def preemptive(self) -> bool:
        """True when slots should run stage by stage, with ``preempt`` asked between stages (the engine
        does so only when its executor can stop at an exit boundary)."""
        return False

    def preempt(self, now_s: float, plan: Plan, exit_done: str, queues: Queues, profile: Profile) -> bool:
        """Asked between two stages of the running ``plan`` (``exit_done``: the exit just reached, short of
        the plan's exit), under the engine's lock: stop the batch here and answer it from this exit?"""
        return False

    def table(self, profile: Profile) -> LatencyTable:
        """Latency table at this policy's quantile, cached per profile object."""
        cached = self._table_for
        if cached is None or cached[0] != id(profile):
            cached = self._table_for = (id(profile), profile.table(self.quantile))
        return cached[1]


def deepest_feasible_exit(rows: Sequence[Sequence[float]], batch: int, slack_ms: float) -> int | None:
    """Index of the deepest exit whose latency at ``batch`` fits in ``slack_ms``, or None."""
    for e in range(len(rows) - 1, -1, -1):
        if rows[e][batch] <= slack_ms:
            return e
    return None


def longest_queue(queues: Queues) -> RequestQueue | None:
    """The longest non-empty queue; ties go to the first in profile order."""
    best = None
    for q in queues.values():
        if q and (best is None or len(q) > len(best)):
            best = q
    return best
