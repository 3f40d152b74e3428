"""``edf_exit``: earliest deadline first across models; a batch of up to Bmax in deadline order,
run to the deepest exit that meets all its deadlines, else the shallowest. Nothing is dropped."""

from __future__ import annotations

from scheduler.policies.base import Policy, Queues, deepest_feasible_exit
from scheduler.policies.edf import deadline_order, earliest_queue
from scheduler.profile import Profile
from scheduler.types import Plan


class EdfExitPolicy(Policy):
    name = "edf_exit"

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        q = earliest_queue(queues)
        if q is None:
            return None
        batch = tuple(deadline_order(q)[: self.bmax])
        rows = self.table(profile).rows[q.model]
        e = deepest_feasible_exit(rows, len(batch), (batch[0].deadline_s - now_s) * 1000.0)
        e = 0 if e is None else e
        return Plan.run(q.model, profile.model(q.model).exits[e], batch, rows[e][len(batch)])
