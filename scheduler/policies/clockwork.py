"""``clockwork``: earliest deadline first across models, final exit, with early shedding.

A request that could not meet its deadline even running alone now is dropped. The model holding
the earliest deadline runs; its batch grows in deadline order while the predicted finish of the
whole batch still meets the earliest deadline in it (as Clockwork's "largest batch that still
meets the SLO").
"""

from __future__ import annotations

from scheduler.policies.base import Policy, Queues
from scheduler.policies.edf import deadline_order
from scheduler.profile import Profile
from scheduler.types import Plan, Request


class ClockworkPolicy(Policy):
    name = "clockwork"

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        rows = self.table(profile).rows
        drop: list[Request] = []
        best = None  # (earliest deadline, model, requests by deadline)
        for q in queues.values():
            if not q:
                continue
            final = rows[q.model][-1]
            feasible = q.deadline_s >= now_s + final[1] / 1000.0
            if not feasible.all():
                drop.extend(r for r, ok in zip(q, feasible) if not ok)
            if feasible.any():
                ordered = deadline_order(q, feasible)
                if best is None or ordered[0].deadline_s < best[0]:
                    best = (ordered[0].deadline_s, q.model, ordered)
        if best is None:
            return Plan.idle(float("inf"), drop=tuple(drop))
        first_deadline_s, model, ordered = best
        final = rows[model][-1]
        size = 1
        for k in range(min(len(ordered), self.bmax), 1, -1):
            if now_s + final[k] / 1000.0 <= first_deadline_s:
                size = k
                break
        exit = profile.model(model).exits[-1]
        return Plan.run(model, exit, tuple(ordered[:size]), final[size], drop=tuple(drop))
