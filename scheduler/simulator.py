"""Discrete-event simulation: the live engine and policies on a virtual clock.

Two event sources drive it: arrivals (from the trace, in order) and slot completions (each
``Engine.step()`` advances the virtual clock by the slot's drawn time). Arrivals at or before the
current time are admitted before the next decision, so ties always break the same way and a
seeded run is reproducible to the last request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from scheduler.clock import VirtualClock
from scheduler.engine import AdmissionConfig, Engine, EngineListener
from scheduler.executor import Executor, ProfileExecutor
from scheduler.policies.base import Policy
from scheduler.profile import Profile
from scheduler.types import Request, RequestResult

STRANDED = "stranded_at_end"  # the policy idled forever with requests queued and nothing left to arrive


class _Collect(EngineListener):
    def __init__(self) -> None:
        self.by_id: dict[str, RequestResult] = {}

    def request_done(self, result: RequestResult) -> None:
        assert result.request.id not in self.by_id, f"request {result.request.id} ended twice"
        self.by_id[result.request.id] = result


def simulate(requests: Sequence[Request], profile: Profile, policy: Policy, *, seed: int = 0,
             noise: float = 1.0, admission: AdmissionConfig | None = None,
             executor_factory: Callable[[VirtualClock, np.random.Generator], Executor] | None = None,
             listeners: Sequence[EngineListener] = (), models: Sequence[str] | None = None,
             ) -> list[RequestResult]:
    """Run ``requests`` (sorted by arrival) through ``policy``; one result per request, in order.

    The executor draws slot times from ``profile`` with ``np.random.default_rng(seed)``; ``noise``
    scales the profiled spread (see ``SlotTimeSampler``). ``executor_factory`` swaps in another
    executor on the same virtual clock (preemption, confidence exits). ``models`` limits the
    served models (default: every model of the profile, in profile order).

    With a preemptive policy (and an executor that can stop between stages) the engine asks the
    policy at each stage boundary; the arrivals up to that moment are admitted just before, by the
    same rule as between slots (every arrival at or before the clock, in trace order).
    """
    clock = VirtualClock(requests[0].arrival_s if requests else 0.0)
    rng = np.random.default_rng(seed)
    executor = executor_factory(clock, rng) if executor_factory else ProfileExecutor(profile, clock, rng, noise)
    collect = _Collect()
    n = len(requests)
    i = 0

    def admit_arrivals() -> None:
        nonlocal i
        now_s = clock.now()
        while i < n and requests[i].arrival_s <= now_s:
            assert i == 0 or requests[i].arrival_s >= requests[i - 1].arrival_s, "requests must be sorted by arrival"
            engine.submit(requests[i])
            i += 1

    engine = Engine(profile, policy, executor, clock, models=models, admission=admission,
                    listeners=[collect, *listeners], before_preempt_check=admit_arrivals)
    while True:
        admit_arrivals()
        next_arrival_s = requests[i].arrival_s if i < n else float("inf")
        step = engine.step()
        if step.plan is None:  # nothing queued: jump to the next arrival
            if i == n:
                break
            clock.advance_to(next_arrival_s)
        elif step.idle_until_s is not None:
            wake_s = min(step.idle_until_s, next_arrival_s)
            if wake_s == float("inf"):
                engine.fail_all(STRANDED)
                break
            clock.advance_to(wake_s)
    assert len(collect.by_id) == n, f"{n - len(collect.by_id)} requests ended without an outcome"
    return [collect.by_id[r.id] for r in requests]
