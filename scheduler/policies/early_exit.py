"""``early_exit``: the longest queue first, with the deepest exit that meets every deadline of
the batch at its real size, else the shallowest exit."""

from __future__ import annotations

from scheduler.policies.base import Policy, Queues, deepest_feasible_exit, longest_queue
from scheduler.profile import Profile
from scheduler.types import Plan


class EarlyExitPolicy(Policy):
    name = "early_exit"

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        q = longest_queue(queues)
        if q is None:
            return None
        batch = q.head(self.bmax)
        rows = self.table(profile).rows[q.model]
        slack_ms = (float(q.deadline_s[: len(batch)].min()) - now_s) * 1000.0
        e = deepest_feasible_exit(rows, len(batch), slack_ms)
        e = 0 if e is None else e
        return Plan.run(q.model, profile.model(q.model).exits[e], batch, rows[e][len(batch)])
