"""Slack-aware request routing across worker replicas (a Ray Serve ``RequestRouter``).

Each replica reports routing stats (``WorkerCore.routing_stats``): its queued work in profiled
time (``backlog_ms``), the tightest queued slack, the profiled cost of one more request and the
reference deadline. The router predicts, for every replica, the slack a new request would leave:

    backlog  = max(backlog_ms - time since the stats arrived, 0) + sent_since * request_cost_ms
    slack    = min(ref_deadline_ms - backlog,  min_slack_ms - sent_since * request_cost_ms)

and tries replicas in order of decreasing slack (draining replicas last). ``sent_since`` counts
what this router sent to the replica since its last report, so a burst between two reports
spreads instead of piling onto the replica that looked emptiest; a request counts as sent to its
first choice as soon as it is ranked, since a burst's requests are all ranked before the first
leaves. When any candidate's stats are missing or stale (their sequence number has not moved for
``stale_after_s``), it falls back to Ray's default power-of-two-choices routing.

Plug it in with ``request_router_config.request_router_class:
scheduler.serving.router:SlackAwareRouter`` (``ray_config.yaml`` does).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, RunningReplica

DEFAULT_STALE_AFTER_S = 2.0
DEFAULT_HORIZON_MS = 1000.0  # reference deadline when no model has a default one


@dataclass(slots=True)
class _Track:
    seq: Any
    seen_s: float  # router time when this report was first seen
    backlog_ms: float
    min_slack_ms: float | None
    cost_ms: float
    ref_deadline_ms: float
    draining: bool
    sent: int = 0  # requests this router sent to the replica since seen_s


class SlackRanker:
    """The routing decision, free of Ray: feed it stats and sends, ask it for an order."""

    def __init__(self, rng: np.random.Generator, stale_after_s: float = DEFAULT_STALE_AFTER_S,
                 horizon_ms: float = DEFAULT_HORIZON_MS) -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s}")
        self.rng = rng
        self.stale_after_s = stale_after_s
        self.horizon_ms = horizon_ms
        self._tracks: dict[Hashable, _Track] = {}

    def observe(self, replica: Hashable, stats: Mapping[str, Any] | None, now_s: float) -> None:
        """Record ``replica``'s latest reported stats (a no-op when they did not change)."""
        if not stats or "seq" not in stats:
            return
        track = self._tracks.get(replica)
        if track is not None and track.seq == stats["seq"]:
            return
        ref = stats.get("ref_deadline_ms")
        self._tracks[replica] = _Track(
            seq=stats["seq"], seen_s=now_s, backlog_ms=float(stats.get("backlog_ms") or 0.0),
            min_slack_ms=None if stats.get("min_slack_ms") is None else float(stats["min_slack_ms"]),
            cost_ms=float(stats.get("request_cost_ms") or 0.0),
            ref_deadline_ms=float(ref) if ref is not None else self.horizon_ms,
            draining=bool(stats.get("draining", False)))

    def routed(self, replica: Hashable) -> None:
        track = self._tracks.get(replica)
        if track is not None:
            track.sent += 1

    def slack_ms(self, replica: Hashable, now_s: float) -> float:
        """Predicted slack of a new request sent to ``replica`` now (higher is better)."""
        t = self._tracks[replica]
        drained_ms = max(now_s - t.seen_s, 0.0) * 1000.0
        added_ms = t.sent * t.cost_ms
        backlog_ms = max(t.backlog_ms - drained_ms, 0.0) + added_ms
        queued_ms = math.inf if t.min_slack_ms is None else t.min_slack_ms - added_ms
        return min(t.ref_deadline_ms - backlog_ms, queued_ms)

    def fresh(self, replica: Hashable, now_s: float) -> bool:
        t = self._tracks.get(replica)
        return t is not None and now_s - t.seen_s <= self.stale_after_s

    def rank(self, replicas: Sequence[Hashable], now_s: float) -> list[Hashable] | None:
        """Replicas best first, or None when any of them lacks fresh stats (fall back)."""
        if not replicas or not all(self.fresh(r, now_s) for r in replicas):
            return None
        ties = self.rng.permutation(len(replicas))  # equal slack: spread, do not always pick the first
        keyed = [(self._tracks[r].draining, -self.slack_ms(r, now_s), int(ties[i]), i) for i, r in enumerate(replicas)]
        return [replicas[k[-1]] for k in sorted(keyed)]

    def __len__(self) -> int:
        return len(self._tracks)

    def forget_except(self, replicas: Sequence[Hashable]) -> None:
        keep = set(replicas)
        for r in [r for r in self._tracks if r not in keep]:
            del self._tracks[r]


class SlackAwareRouter(PowerOfTwoChoicesRequestRouter):
    """Ranks replicas by predicted slack; Ray's default power-of-two choices when stats are stale."""

    def initialize_state(self, stale_after_s: float = DEFAULT_STALE_AFTER_S,
                         horizon_ms: float = DEFAULT_HORIZON_MS, **kwargs: Any) -> None:
        super().initialize_state(**kwargs)
        self.ranker = SlackRanker(np.random.default_rng(), stale_after_s, horizon_ms)
        self.fallbacks = 0  # decisions handed to the default router

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        ranker = self._ranker()
        multiplexed = pending_request is not None and pending_request.metadata.multiplexed_model_id
        now_s = self._get_curr_time_s()
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        for rid, r in by_id.items():
            ranker.observe(rid, r.routing_stats, now_s)
        order = None if multiplexed else ranker.rank(list(by_id), now_s)
        if order is None:
            self.fallbacks += 1
            return await super().choose_replicas(candidate_replicas, pending_request)
        if len(ranker) > 2 * len(by_id):
            ranker.forget_except(list(by_id))
        if pending_request is not None:
            # Every candidate is in the ranking, so a failed pass should back off before the next.
            pending_request.routing_context.should_backoff = True
        # Count the request against its first choice now, not when it is sent: a burst's requests are all
        # ranked before the first of them leaves (Serve probes the replica between the two), and counted at
        # sending they would all see the same ranking and pile onto one replica. A request that ends up
        # elsewhere (its first choice full) overcounts that replica until its next report resets the count.
        ranker.routed(order[0])
        return [[by_id[rid]] for rid in order]

    def _ranker(self) -> SlackRanker:
        if not hasattr(self, "ranker"):  # initialize_state is always called by Serve; be safe in tests
            self.initialize_state()
        return self.ranker
