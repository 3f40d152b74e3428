"""The engine: admission, per-model queues and one time-division slot per ``step()``.

One engine, two drivers: the simulator calls ``step()`` on a virtual clock with a profile-driven
executor; the live worker calls it from a dedicated thread on a real clock with the torch executor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scheduler.clock import Clock
from scheduler.executor import Executor
from scheduler.policies.base import Policy
from scheduler.profile import Profile
from scheduler.queues import RequestQueue
from scheduler.types import Outcome, Plan, Request, RequestResult, SlotResult

# Reasons a request ends without an answer; clients and metrics see these strings.
QUEUE_FULL = "queue_full"
DEADLINE_INFEASIBLE = "deadline_infeasible"
DEADLINE_UNREACHABLE = "deadline_unreachable"
# A late request a policy keeps for spare time gives its place in a full queue to one that can still make it.
DISPLACED = f"{DEADLINE_UNREACHABLE}: displaced from a full queue by a request that can still meet its deadline"
SHUTDOWN = "shutdown"


class EngineListener:
    """Hooks the engine calls after it applies a plan. Subclass and override what you need."""

    def request_done(self, result: RequestResult) -> None:
        """Called exactly once per request, with its final outcome."""

    def slot_done(self, plan: Plan, slot: SlotResult | None, decision_ms: float | None) -> None:
        """Called after every slot that ran (``slot`` is None when the executor raised)."""


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    queue_bound: int | None = None  # per-model queue bound; None = unbounded
    reject_infeasible: bool = False  # refuse requests no exit can serve in time, instead of running them late
    infeasible_quantile: str = "p50"  # quantile the feasibility check uses (optimistic on purpose)


@dataclass(slots=True)
class StepResult:
    plan: Plan | None  # None when there was nothing queued
    results: list[RequestResult] = field(default_factory=list)  # requests finished by this step
    # Time the device sat idle before this step's slot while requests waited: since the previous slot ended
    # with work queued, or since the arrival that gave an idle engine work (the loop's bookkeeping, waking
    # the engine thread, the decision, the thread waiting for the GIL). None after a wait the policy chose.
    gap_ms: float | None = None

    @property
    def idle_until_s(self) -> float | None:
        """When the policy chose to wait: re-plan no later than this (an arrival may come first)."""
        return None if self.plan is None else self.plan.idle_until_s


class Engine:
    def __init__(self, profile: Profile, policy: Policy, executor: Executor, clock: Clock,
                 models: Sequence[str] | None = None, admission: AdmissionConfig | None = None,
                 listeners: Sequence[EngineListener] = (), timer: Callable[[], float] | None = None,
                 before_preempt_check: Callable[[], None] | None = None) -> None:
        """``timer`` is a wall-clock counter (seconds) used only to measure decision time;
        leave it None in simulation so results never depend on the host's speed.
        ``before_preempt_check`` is called (outside the lock) before each mid-slot ``policy.preempt``
        question: a simulator delivers there the arrivals that happened during the slot so far."""
        self.profile = profile
        self.policy = policy
        self.executor = executor
        self.clock = clock
        self.admission = admission or AdmissionConfig()
        self.listeners = list(listeners)
        self.timer = timer
        self.before_preempt_check = before_preempt_check
        names = list(models) if models is not None else list(profile.model_names)
        for name in names:
            profile.model(name)  # raises with the known models listed
        # Profile order, so every policy breaks ties the same way.
        self.queues: dict[str, RequestQueue] = {m: RequestQueue(m) for m in profile.model_names if m in names}
        self._cond = threading.Condition()
        self._ready_since_s: float | None = None  # since when queued work has waited for the device
        self._shallowest = {m: profile.model(m).exits[0] for m in self.queues}

    # -- admission -----------------------------------------------------------------------

    def submit(self, request: Request) -> RequestResult | None:
        """Queue ``request``, or refuse it. Returns the REJECTED result when refused, else None."""
        with self._cond:
            queue = self.queues.get(request.model)
            if queue is None:
                raise ValueError(f"unknown model {request.model!r}; this engine serves {list(self.queues)}")
            displaced = None
            if self._full(queue):
                displaced = self.policy.displace(self.clock.now(), request, self.queues, self.profile)
                reason = QUEUE_FULL if displaced is None else self._refusal(request, queue)
            else:
                reason = self._refusal(request, queue)
            if reason is None:
                if displaced is not None:
                    queue.remove((displaced,))
                if self._ready_since_s is None and not any(self.queues.values()):
                    self._ready_since_s = self.clock.now()  # work for an engine that had none
                queue.push(request)
                self._cond.notify_all()
        if reason is not None:
            return self.reject(request, reason)
        if displaced is not None:
            self._emit([RequestResult(displaced, Outcome.DROPPED, reason=DISPLACED)])
        return None

    def reject(self, request: Request, reason: str) -> RequestResult:
        """Record a request refused before it entered a queue (also for bad input at the edge)."""
        result = RequestResult(request, Outcome.REJECTED, reason=reason)
        self._emit([result])
        return result

    def _full(self, queue: RequestQueue) -> bool:
        return self.admission.queue_bound is not None and len(queue) >= self.admission.queue_bound

    def _refusal(self, request: Request, queue: RequestQueue) -> str | None:
        """Why ``request`` is refused, the queue's bound aside (``submit`` checks that first)."""
        cfg = self.admission
        now_s = self.clock.now()
        if cfg.reject_infeasible:
            fastest_ms = self.profile.latency_ms(request.model, self._shallowest[request.model], 1,
                                                 cfg.infeasible_quantile)
            if now_s + fastest_ms / 1000.0 > request.deadline_s:
                return DEADLINE_INFEASIBLE
        return self.policy.admit(now_s, request, self.queues, self.profile)

    # -- the slot --------------------------------------------------------------------------

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self.queues.values())

    def queue_depths(self) -> dict[str, int]:
        with self._cond:
            return {m: len(q) for m, q in self.queues.items()}

    def step(self) -> StepResult:
        """Plan one slot, apply it and, if it runs a batch, run it to completion."""
        with self._cond:
            if not any(self.queues.values()):
                self._ready_since_s = None
                return StepResult(None)
            now_s = self.clock.now()
            t0 = self.timer() if self.timer else 0.0
            plan = self.policy.plan(now_s, self.queues, self.profile)
            decision_ms = (self.timer() - t0) * 1000.0 if self.timer else None
            if plan is None:  # the policy has nothing to run until the next arrival
                plan = Plan.idle(float("inf"))
            if not plan.requests and plan.idle_until_s is not None:
                self._ready_since_s = None  # a chosen wait is the policy's, not overhead
            self._check(plan, now_s)
            for r in plan.drop:
                self.queues[r.model].remove((r,))
            if plan.requests:
                self.queues[plan.model].remove(plan.requests)
        results = [RequestResult(r, Outcome.DROPPED, reason=plan.drop_reason) for r in plan.drop]
        gap_ms = None
        if plan.requests:
            start_s = self.clock.now()
            if self._ready_since_s is not None:
                gap_ms = max(start_s - self._ready_since_s, 0.0) * 1000.0
            results += self._run(plan, decision_ms, start_s)
            with self._cond:  # atomic with submit(), which marks work arriving at an idle engine
                self._ready_since_s = self.clock.now() if any(self.queues.values()) else None
        self._emit(results)
        return StepResult(plan, results, gap_ms)

    def _run(self, plan: Plan, decision_ms: float | None, start_s: float) -> list[RequestResult]:
        try:
            if self.preemptive:
                slot = self.executor.run_preemptible(plan, self.stop_check(plan))
            else:
                slot = self.executor.run(plan)
        except Exception as exc:  # a failed slot fails exactly its own requests
            reason = f"slot_failed: {type(exc).__name__}: {exc}"[:300]
            for listener in self.listeners:
                listener.slot_done(plan, None, decision_ms)
            return [RequestResult(r, Outcome.FAILED, reason=reason, batch_size=plan.batch_size) for r in plan.requests]
        finish_s = self.clock.now()
        self.policy.observe(plan, slot)
        for listener in self.listeners:
            listener.slot_done(plan, slot, decision_ms)
        queue_ms_base = start_s * 1000.0
        out = []
        for i, r in enumerate(plan.requests):
            out.append(RequestResult(
                r, Outcome.MET if finish_s <= r.deadline_s else Outcome.LATE, finish_s=finish_s,
                exit=slot.exits[i], batch_size=plan.batch_size, queue_ms=queue_ms_base - r.arrival_s * 1000.0,
                slot_ms=slot.slot_ms,
                prediction=slot.predictions[i] if slot.predictions is not None else None,
                confidence=slot.confidences[i] if slot.confidences is not None else None))
        return out

    @property
    def preemptive(self) -> bool:
        """Slots run stage by stage, the policy asked between stages: it wants it and the executor can."""
        return self.policy.preemptive and callable(getattr(self.executor, "run_preemptible", None))

    def stop_check(self, plan: Plan) -> Callable[[str], bool]:
        """The question a preemptible executor asks between the stages of ``plan``: the driver's hook
        first, then ``policy.preempt`` under the engine's lock, on the queues as they are now."""
        def should_stop(exit_done: str) -> bool:
            if self.before_preempt_check is not None:
                self.before_preempt_check()
            with self._cond:
                return bool(self.policy.preempt(self.clock.now(), plan, exit_done, self.queues, self.profile))

        return should_stop

    def _check(self, plan: Plan, now_s: float) -> None:
        bmax = self.policy.bmax
        assert plan.batch_size <= bmax, f"{self.policy.name}: batch of {plan.batch_size} exceeds Bmax {bmax}"
        if plan.requests:
            exits = self.profile.model(plan.model).exits
            assert plan.exit in exits, f"{self.policy.name}: exit {plan.exit!r} not in {exits}"
            assert all(r.model == plan.model for r in plan.requests), "a batch mixes models"
        else:
            assert plan.idle_until_s is not None and plan.idle_until_s > now_s, (
                f"{self.policy.name}: an idle plan must wait until a later time")

    # -- live driver helpers ---------------------------------------------------------------

    def wait_for_work(self, timeout_s: float | None) -> None:
        """Block until a request is queued or ``timeout_s`` passes (live driver only)."""
        with self._cond:
            if not any(self.queues.values()):
                self._cond.wait(timeout_s)

    def wait_for_arrival(self, until_s: float, max_wait_s: float = 0.5) -> None:
        """Block until a request is queued, ``wake()`` is called, or the clock reaches ``until_s``
        (at most ``max_wait_s``), for a live driver honouring a policy's choice to idle."""
        with self._cond:
            remaining_s = min(until_s - self.clock.now(), max_wait_s)
            if remaining_s > 0:
                self._cond.wait(remaining_s)  # submit() and wake() notify; the driver then re-plans

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def fail_all(self, reason: str = SHUTDOWN) -> list[RequestResult]:
        """End every queued request as FAILED (shutdown): nothing is left without an outcome."""
        with self._cond:
            gone = [r for q in self.queues.values() for r in q.clear()]
        results = [RequestResult(r, Outcome.FAILED, reason=reason) for r in gone]
        self._emit(results)
        return results

    def _emit(self, results: list[RequestResult]) -> None:
        for result in results:
            for listener in self.listeners:
                listener.request_done(result)
