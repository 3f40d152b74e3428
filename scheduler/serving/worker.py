"""One worker: every model of the config on one device, their profile, one engine and its loop thread.

Independent of Ray and HTTP (the Serve deployment in ``api.py`` wraps it), so it is tested
directly. The request path: the caller stamps the arrival on the worker's clock, ``infer`` opens
each sample in the ledger, submits it to the engine (admission may refuse it at once) and awaits
its one outcome; a request nobody answers within its deadline plus ``answer_grace_s`` ends FAILED.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.clock import Clock, RealClock, unix_now
from scheduler.engine import SHUTDOWN, AdmissionConfig, Engine, EngineListener, StepResult
from scheduler.policies import make_policy
from scheduler.profile import Profile, ProfileError
from scheduler.serving.catalog import ServedModel, load_catalog, make_executor
from scheduler.serving.config import ConfigError, ServingConfig
from scheduler.serving.ledger import Ledger
from scheduler.serving.loop import EngineLoop
from scheduler.serving.metrics import UNKNOWN_MODEL, ProcessMetrics, ServingMetrics
from scheduler.serving.validation import InferCall
from scheduler.types import Outcome, Plan, Request, RequestResult, SlotResult

TIMEOUT = "timeout"
DEADLINE_EXPIRED = "deadline_expired"  # a propagated deadline had passed before the worker received the call
PROCESS_SAMPLE_S = 1.0  # resident memory is sampled at most this often (the gauges refresh on every step)


class _SlotMetrics(EngineListener):
    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    def slot_done(self, plan: Plan, slot: SlotResult | None, decision_ms: float | None) -> None:
        self.metrics.record_slot(plan, slot, decision_ms)


class WorkerCore:
    def __init__(self, cfg: ServingConfig, metrics_dir: Path, worker_id: str = "local",
                 clock: Clock | None = None, unix_clock: Callable[[], float] = unix_now) -> None:
        self.cfg = cfg
        self.unix_clock = unix_clock  # only to read a client's X-Request-Sent-At against
        self.worker_id = worker_id
        if cfg.gil_switch_interval_ms is not None:
            # The engine thread releases the GIL inside each torch op and must win it back after each; at
            # Python's 5 ms the request thread may hold it that long. In one process that doubled a 1 ms slot,
            # but end to end `bench live-ab` measured no difference (BENCHMARKS.md), so it is off by default.
            # Process-wide: the worker owns its replica process.
            sys.setswitchinterval(cfg.gil_switch_interval_ms / 1000.0)
        self.clock = clock or RealClock()
        try:
            self.profile = Profile.load(cfg.profile_path)
        except ProfileError as exc:
            raise ConfigError(f"profile: {exc}") from None
        self.catalog, checkpoints = load_catalog(cfg, self.profile)
        self.executor, self.device = make_executor(cfg, self.profile, checkpoints, self.clock)
        self.policy = make_policy(cfg.policy, bmax=cfg.bmax, quantile=cfg.quantile, **cfg.policy_options)
        self.metrics = ServingMetrics(metrics_dir, worker_id, cfg.bmax)
        self.process_metrics = ProcessMetrics()
        self._process_sampled_s = self.clock.now()
        self.ledger = Ledger(on_close=lambda r: self.metrics.record_result(r, self.catalog))
        self.engine = Engine(self.profile, self.policy, self.executor, self.clock, models=list(self.catalog),
                             admission=AdmissionConfig(queue_bound=cfg.queue_bound,
                                                       reject_infeasible=cfg.reject_infeasible),
                             listeners=[self.ledger, _SlotMetrics(self.metrics)], timer=time.perf_counter)
        self.metrics.set_queue_depths(self.engine.queue_depths())
        self.draining = False
        self._closed = False
        self._ids = itertools.count()
        self._stats_seq = itertools.count()
        self._cost_ms = {m: self.profile.latency_ms(m, self.catalog[m].exits[-1], cfg.bmax, cfg.quantile) / cfg.bmax
                         for m in self.catalog}
        self.loop = EngineLoop(self.engine, after_step=self._after_step)
        self.loop.start()

    # -- the request path ----------------------------------------------------------------------

    async def infer(self, call: InferCall, arrival_s: float) -> list[RequestResult]:
        """Run every sample of ``call`` (received at ``arrival_s`` on this worker's clock) to its outcome."""
        loop = asyncio.get_running_loop()
        budget_ms = self._budget_ms(call, arrival_s)
        deadline_s = arrival_s + budget_ms / 1000.0
        pending: list[tuple[Request, asyncio.Future]] = []
        self.metrics.record_received(len(call.samples))
        call_id = f"{self.worker_id}-call{next(self._ids)}" if len(call.samples) > 1 else None
        for sample in call.samples:
            req = Request(f"{self.worker_id}-{next(self._ids)}", call.model, arrival_s, deadline_s,
                          payload=sample, call=call_id)
            future = self.ledger.open(req, loop)
            assert future is not None
            if self.draining:
                self.ledger.close(RequestResult(req, Outcome.REJECTED, reason=SHUTDOWN))
            elif budget_ms <= 0:  # its deadline passed on the way here: no slot can answer it in time
                self.ledger.close(RequestResult(req, Outcome.REJECTED, reason=(
                    f"{DEADLINE_EXPIRED}: sent {call.deadline_ms - budget_ms:.1f} ms before the worker received "
                    f"it, deadline {call.deadline_ms:g} ms")))
            else:
                self.engine.submit(req)  # a refusal closes it at once, through the ledger
            pending.append((req, future))
        self.metrics.record_handling(self.clock.now() - arrival_s)
        self._refresh_gauges()
        return [await self._answer(req, future) for req, future in pending]

    def _budget_ms(self, call: InferCall, arrival_s: float) -> float:
        """The call's deadline counted from this worker's receipt: ``deadline_ms``, less the time since the
        client sent it when the client said when (header X-Request-Sent-At; clocks must agree)."""
        if call.sent_at_unix_s is None:
            return call.deadline_ms
        received_unix_s = self.unix_clock() - (self.clock.now() - arrival_s)
        # A client clock ahead of ours reads as a negative transit: never lengthen a deadline for it.
        transit_s = max(received_unix_s - call.sent_at_unix_s, 0.0)
        self.metrics.record_transit(transit_s)
        return call.deadline_ms - transit_s * 1000.0

    async def _answer(self, req: Request, future: asyncio.Future) -> RequestResult:
        wait_s = max(req.deadline_s - self.clock.now(), 0.0) + self.cfg.answer_grace_s
        done, _ = await asyncio.wait({future}, timeout=wait_s)
        if not done:
            self.ledger.close(RequestResult(req, Outcome.FAILED, reason=f"{TIMEOUT}: no answer within the "
                                                                         "deadline plus answer_grace_s"))
        return await future

    def reject_at_edge(self, model: str | None, code: str) -> None:
        """Count a call refused before validation finished: one request, REJECTED (never queued)."""
        self.metrics.record_received(1)
        self.metrics.record_rejected(model if model in self.catalog else UNKNOWN_MODEL, code)

    # -- state ---------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.loop.alive and not self.draining

    def models(self) -> list[ServedModel]:
        return list(self.catalog.values())

    def routing_stats(self) -> dict[str, Any]:
        """What the slack-aware router ranks this replica by (see ``router.py``).

        ``backlog_ms``: profiled time to run everything queued here, batches of up to Bmax at the
        deepest exit (an upper bound the router compares across replicas); ``min_slack_ms``: the
        tightest queued deadline minus that backlog (None when idle); ``request_cost_ms``: profiled
        time one more request adds (mean over models, at a full batch); ``seq`` changes on every
        report so the router can tell fresh stats from stale ones without comparing clocks.
        """
        now_s = self.clock.now()
        by_model: dict[str, list[float]] = {}
        for r in self.ledger.pending():
            by_model.setdefault(r.model, []).append(r.deadline_s)
        backlog_ms = 0.0
        for model, deadlines in by_model.items():
            n = len(deadlines)
            slots = math.ceil(n / self.cfg.bmax)
            last = self.catalog[model].exits[-1]
            backlog_ms += (slots - 1) * self.profile.latency_ms(model, last, self.cfg.bmax, self.cfg.quantile)
            backlog_ms += self.profile.latency_ms(model, last, n - (slots - 1) * self.cfg.bmax, self.cfg.quantile)
        earliest_s = min((min(d) for d in by_model.values()), default=None)
        defaults = [m.default_deadline_ms for m in self.catalog.values() if m.default_deadline_ms is not None]
        return {
            "seq": next(self._stats_seq),
            "queued": sum(len(d) for d in by_model.values()),
            "backlog_ms": round(backlog_ms, 3),
            "min_slack_ms": None if earliest_s is None else round((earliest_s - now_s) * 1000.0 - backlog_ms, 3),
            "request_cost_ms": round(float(np.mean(list(self._cost_ms.values()))), 3),
            "ref_deadline_ms": min(defaults) if defaults else None,
            "draining": self.draining,
        }

    def _after_step(self, step: StepResult | None) -> None:
        self.metrics.record_gap(step.gap_ms if step is not None else None)
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        self.metrics.set_queue_depths(self.engine.queue_depths())
        self.metrics.set_inflight(len(self.ledger))
        now_s = self.clock.now()
        if now_s - self._process_sampled_s >= PROCESS_SAMPLE_S:
            self._process_sampled_s = now_s
            self.process_metrics.update()

    # -- shutdown ------------------------------------------------------------------------------

    def drain(self) -> int:
        """Stop admitting (new calls end REJECTED, reason shutdown) and end every queued request
        FAILED with reason shutdown; the running slot completes. Returns how many were failed."""
        self.draining = True
        failed = len(self.engine.fail_all(SHUTDOWN))
        self._refresh_gauges()
        return failed

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Drain, stop the loop thread, and close whatever is still open (a hung slot) as FAILED."""
        if self._closed:
            return
        self._closed = True
        self.drain()
        self.loop.stop(timeout_s)
        self.ledger.close_all(Outcome.FAILED, SHUTDOWN)
        self._refresh_gauges()
        self.metrics.close()

