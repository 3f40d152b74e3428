"""``symphony``: deferred batching at the final exit.

A model's batch waits to grow while one more request would still let the batch meet its earliest
deadline; it is dispatched once waiting longer would break that (or once it reaches Bmax). Among
models that must dispatch, the one whose latest start time is earliest runs. Requests already past
their deadline are dropped. When no model must dispatch, the GPU idles until the first one must
(an arrival wakes it earlier).
"""

from __future__ import annotations

from scheduler.policies.base import Policy, Queues
from scheduler.policies.edf import deadline_order
from scheduler.profile import Profile
from scheduler.types import Plan, Request


class SymphonyPolicy(Policy):
    name = "symphony"

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        rows = self.table(profile).rows
        drop: list[Request] = []
        ready = None  # (latest start, model, batch) of the most urgent model that must go now
        wake_s = float("inf")
        for q in queues.values():
            if not q:
                continue
            alive = q.deadline_s >= now_s
            if not alive.all():
                drop.extend(r for r, ok in zip(q, alive) if not ok)
            if not alive.any():
                continue
            ordered = deadline_order(q, alive)
            b = min(len(ordered), self.bmax)
            final = rows[q.model][-1]
            earliest_s = ordered[0].deadline_s
            latest_start_s = earliest_s - final[b] / 1000.0
            grow_until_s = earliest_s - final[min(b + 1, self.bmax)] / 1000.0  # last moment to wait for one more
            if b == self.bmax or now_s >= grow_until_s:
                if ready is None or latest_start_s < ready[0]:
                    ready = (latest_start_s, q.model, tuple(ordered[:b]))
            else:
                wake_s = min(wake_s, grow_until_s)
        if ready is None:
            return Plan.idle(wake_s, drop=tuple(drop))
        _, model, batch = ready
        exit = profile.model(model).exits[-1]
        return Plan.run(model, exit, batch, rows[model][-1][len(batch)], drop=tuple(drop))
