"""``round_robin``: models take turns (profile order, skipping empty queues), final exit."""

from __future__ import annotations

from scheduler.policies.base import Policy, Queues
from scheduler.profile import Profile
from scheduler.types import Plan, SlotResult


class RoundRobinPolicy(Policy):
    name = "round_robin"

    def __init__(self, bmax: int = 10, quantile: str = "p95") -> None:
        super().__init__(bmax, quantile)
        self._last_model: str | None = None  # advanced in observe(), so plan() stays side-effect free

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        names = list(queues)
        start = names.index(self._last_model) + 1 if self._last_model in names else 0
        for k in range(len(names)):
            q = queues[names[(start + k) % len(names)]]
            if q:
                batch = q.head(self.bmax)
                rows = self.table(profile).rows[q.model]
                return Plan.run(q.model, profile.model(q.model).exits[-1], batch, rows[-1][len(batch)])
        return None

    def observe(self, plan: Plan, slot: SlotResult) -> None:
        self._last_model = plan.model
