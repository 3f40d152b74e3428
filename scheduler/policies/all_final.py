"""``all_final``: the longest queue first, a batch of up to Bmax, always the final exit."""

from __future__ import annotations

from scheduler.policies.base import Policy, Queues, longest_queue
from scheduler.profile import Profile
from scheduler.types import Plan


class AllFinalPolicy(Policy):
    name = "all_final"
    exit_index = -1  # which exit every batch runs to

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        q = longest_queue(queues)
        if q is None:
            return None
        batch = q.head(self.bmax)
        rows = self.table(profile).rows[q.model]
        e = self.exit_index % len(rows)
        return Plan.run(q.model, profile.model(q.model).exits[e], batch, rows[e][len(batch)])
