"""The worker without Ray: engine loop thread, ledger, admission, drain, timeouts, metrics, routing stats.

Runs the profile executor on the real clock with a small synthetic profile, so every outcome is
reachable quickly and deterministically enough for CPU CI (no wall-clock speed is asserted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from scheduler.serving.config import parse_config
from scheduler.serving.metrics import render_directory
from scheduler.serving.responses import status_of
from scheduler.serving.validation import InferCall
from scheduler.serving.worker import WorkerCore
from scheduler.types import Outcome, SlotResult
from tests.conftest import SYNTHETIC_MODELS, metric_sum


@pytest.fixture
def make_core(tmp_path: Path, synthetic_profile: Path, isolated_metrics):
    cores: list[WorkerCore] = []

    def make(**overrides) -> WorkerCore:
        # The worker's mechanics are asserted under the reference policy, whose choices these small
        # profiles make exact; the default policy is covered by test_default_policy_serves below.
        args = {"executor": "profile", "profile": str(synthetic_profile), "bmax": 4, "models": SYNTHETIC_MODELS,
                "policy": "edgeserving", **overrides}
        core = WorkerCore(parse_config(args), tmp_path / f"metrics{len(cores)}", worker_id=f"w{len(cores)}")
        cores.append(core)
        return core

    yield make
    for core in cores:
        core.shutdown()


def call(model: str, deadline_ms: float, n: int = 1) -> InferCall:
    shape = tuple(SYNTHETIC_MODELS[model]["input_shape"])
    return InferCall(model, np.zeros((n, *shape), dtype=np.float32), deadline_ms, "rid", batched=n > 1)


def run(core: WorkerCore, *calls: InferCall) -> list:
    async def go():
        now = core.clock.now()
        return await asyncio.gather(*(core.infer(c, now) for c in calls))
    return [r for results in asyncio.run(go()) for r in results]


def counts(core: WorkerCore) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = render_directory(core.metrics.directory).decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
            out[key] = s.value
    return out


def assert_accounted(core: WorkerCore, n: int) -> None:
    m = counts(core)
    assert core.ledger.opened == core.ledger.closed == n
    assert metric_sum(m, "edgeserving_requests_received_total") == n
    assert metric_sum(m, "edgeserving_requests_total") == n


def test_loose_deadline_is_met_at_the_deepest_exit_and_impossible_one_runs_late(make_core):
    core = make_core()
    results = run(core, call("fast", 1000.0), call("slow", 0.01))
    met, late = results
    assert met.outcome is Outcome.MET and met.exit == "e2" and met.latency_ms is not None
    assert late.outcome is Outcome.LATE and late.exit == "e1"  # the reference policy never drops
    assert status_of(met)[0] == 200 and status_of(late)[0] == 200
    assert_accounted(core, 2)
    m = counts(core)
    assert metric_sum(m, "edgeserving_exits_total", model="fast", exit="e2") == 1
    assert metric_sum(m, "edgeserving_deadline_lateness_seconds_count", model="slow") == 1
    assert metric_sum(m, "edgeserving_slot_seconds_count") == 2


def test_a_batch_call_is_one_request_per_sample(make_core):
    core = make_core()
    results = run(core, call("fast", 1000.0, n=5))
    assert [r.outcome for r in results] == [Outcome.MET] * 5
    assert sorted(r.batch_size for r in results) == [1, 4, 4, 4, 4]  # Bmax 4
    assert_accounted(core, 5)
    # The samples know their call (a policy weighs a late sample by its answered call-mates); a lone one has none.
    (alone,) = run(core, call("fast", 1000.0))
    assert len({r.request.call for r in results}) == 1 and results[0].request.call is not None
    assert alone.request.call is None


def test_handling_time_is_measured_once_per_call_from_the_stamped_arrival(make_core):
    core = make_core()

    async def go():  # the handler stamped the arrival 5 ms before the call reached the worker
        return await core.infer(call("fast", 1000.0, n=3), core.clock.now() - 0.005)

    assert [r.outcome for r in asyncio.run(go())] == [Outcome.MET] * 3
    m = counts(core)
    assert metric_sum(m, "edgeserving_request_handling_seconds_count") == 1  # one call of three samples
    assert 0.005 <= metric_sum(m, "edgeserving_request_handling_seconds_sum") < 1.0
    assert metric_sum(m, "edgeserving_request_handling_seconds_bucket", le="0.002") == 0
    assert metric_sum(m, "edgeserving_request_handling_seconds_bucket", le="+Inf") == 1


def sent(c: InferCall, ago_s: float, unix_now_s: float = 1_000_000.0) -> InferCall:
    """``c`` as a client that sent it ``ago_s`` before ``unix_now_s`` says (header X-Request-Sent-At)."""
    return dataclasses.replace(c, sent_at_unix_s=unix_now_s - ago_s)


def test_a_propagated_deadline_counts_from_the_clients_send(make_core):
    core = make_core()
    core.unix_clock = lambda: 1_000_000.0
    results = run(core, sent(call("fast", 1000.0), 0.250), sent(call("fast", 1000.0), -5.0), call("fast", 1000.0))
    slo_ms = [r.request.slo_ms for r in results]
    # 250 ms of the budget were spent before the handler stamped the arrival (the fixed Unix clock is read a
    # little after that stamp, and the worker takes the time between them off the transit).
    assert 750.0 <= slo_ms[0] < 751.0
    assert slo_ms[1:] == [1000.0, 1000.0]  # a client clock ahead of ours never lengthens a deadline; no header
    assert [r.outcome for r in results] == [Outcome.MET] * 3
    m = counts(core)
    assert metric_sum(m, "edgeserving_request_transit_seconds_count") == 2  # only the calls with the header
    assert 0.249 < metric_sum(m, "edgeserving_request_transit_seconds_sum") <= 0.250
    assert_accounted(core, 3)


def test_a_call_whose_propagated_deadline_passed_on_the_way_is_refused_unqueued(make_core):
    core = make_core()
    core.unix_clock = lambda: 1_000_000.0
    results = run(core, sent(call("fast", 100.0, n=2), 0.150), sent(call("fast", 100.0), 0.010))
    expired, ok = results[:2], results[2]
    for r in expired:
        assert r.outcome is Outcome.REJECTED
        said = re.fullmatch(r"deadline_expired: sent ([\d.]+) ms before the worker received it, deadline 100 ms",
                            r.reason or "")
        assert said and 149.0 < float(said.group(1)) <= 150.0, r.reason
        assert status_of(r) == (503, {})
    assert ok.outcome is Outcome.MET and ok.batch_size == 1  # the expired pair never reached a queue
    m = counts(core)
    assert metric_sum(m, "edgeserving_requests_total", reason="deadline_expired") == 2
    assert metric_sum(m, "edgeserving_slot_seconds_count") == 1
    assert_accounted(core, 3)


def test_full_queue_refuses_with_retry_after_and_never_queues(make_core):
    core = make_core(queue_bound=2)
    results = run(core, *(call("slow", 5000.0) for _ in range(8)))
    refused = [r for r in results if r.outcome is Outcome.REJECTED]
    assert refused and all(r.reason == "queue_full" for r in refused)
    assert status_of(refused[0]) == (503, {"Retry-After": "1"})
    assert all(r.outcome is Outcome.MET for r in results if r not in refused)
    assert_accounted(core, 8)


def test_infeasible_deadline_is_rejected_when_configured(make_core):
    core = make_core(reject_infeasible=True)
    (r,) = run(core, call("slow", 1.0))
    assert (r.outcome, r.reason, status_of(r)[0]) == (Outcome.REJECTED, "deadline_infeasible", 503)
    assert_accounted(core, 1)


def test_clockwork_drops_what_cannot_make_it(make_core):
    core = make_core(policy="clockwork")
    (r,) = run(core, call("slow", 1.0))
    assert (r.outcome, r.reason, status_of(r)[0]) == (Outcome.DROPPED, "deadline_unreachable", 504)


def test_a_failing_slot_fails_only_its_requests_and_the_engine_goes_on(make_core):
    core = make_core()
    real = core.engine.executor

    class FailOnce:
        failed = False

        def run(self, plan) -> SlotResult:
            if not self.failed:
                self.failed = True
                raise ValueError("bad tensor")
            return real.run(plan)

    core.engine.executor = FailOnce()
    (first,) = run(core, call("fast", 1000.0))
    (second,) = run(core, call("fast", 1000.0))
    assert first.outcome is Outcome.FAILED and first.reason.startswith("slot_failed: ValueError: bad tensor")
    assert status_of(first)[0] == 500
    assert second.outcome is Outcome.MET
    m = counts(core)
    assert metric_sum(m, "edgeserving_requests_total", outcome="FAILED", reason="slot_failed") == 1
    assert metric_sum(m, "edgeserving_failed_slots_total") == 1


def test_an_answer_never_waits_past_deadline_plus_grace(make_core):
    core = make_core(answer_grace_s=0.2)
    release = threading.Event()
    real = core.engine.executor

    class Hang:
        def run(self, plan) -> SlotResult:
            release.wait(10)
            return real.run(plan)

    core.engine.executor = Hang()
    (r,) = run(core, call("fast", 50.0))
    assert r.outcome is Outcome.FAILED and r.reason.startswith("timeout")
    release.set()
    assert core.loop.stop(5.0)  # the slot finishes later; its result must not count a second time
    assert_accounted(core, 1)


def test_drain_fails_queued_requests_with_reason_shutdown_and_refuses_new_ones(make_core):
    core = make_core()

    async def go():
        now = core.clock.now()
        tasks = [asyncio.create_task(core.infer(call("slow", 60_000.0), now)) for _ in range(12)]
        await asyncio.sleep(0.05)  # the first slot is running, the rest are queued
        failed = core.drain()
        results = [r for t in tasks for r in await t]
        late = await core.infer(call("fast", 1000.0), core.clock.now())
        return failed, results, late

    failed, results, late = asyncio.run(go())
    shutdown = [r for r in results if r.outcome is Outcome.FAILED]
    assert failed == len(shutdown) >= 4 and all(r.reason == "shutdown" for r in shutdown)
    assert all(r.outcome is Outcome.MET for r in results if r not in shutdown)  # the running slot completes
    assert status_of(shutdown[0]) == (503, {"Retry-After": "1"})
    assert late[0].outcome is Outcome.REJECTED and late[0].reason == "shutdown"
    assert not core.ready
    assert_accounted(core, 13)


def test_engine_errors_fail_queued_requests_and_the_loop_survives(make_core):
    core = make_core()
    real_plan = core.engine.policy.plan
    calls = {"n": 0}

    def plan_once_broken(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("policy bug")
        return real_plan(*a, **kw)

    core.engine.policy.plan = plan_once_broken
    (r,) = run(core, call("fast", 1000.0))
    assert r.outcome is Outcome.FAILED and r.reason.startswith("engine_error: RuntimeError")
    (ok,) = run(core, call("fast", 1000.0))
    assert ok.outcome is Outcome.MET and core.loop.errors == 1 and core.ready


def test_routing_stats_report_queued_work_in_profiled_time(make_core):
    core = make_core()
    idle = core.routing_stats()
    assert idle["queued"] == 0 and idle["backlog_ms"] == 0 and idle["min_slack_ms"] is None
    assert idle["ref_deadline_ms"] == 100  # the tightest default deadline
    assert idle["request_cost_ms"] == pytest.approx((6.0 / 4 + 120.0 / 4) / 2)

    async def go():
        now = core.clock.now()
        task = asyncio.create_task(core.infer(call("slow", 10_000.0, n=8), now))
        await asyncio.sleep(0.02)
        busy = core.routing_stats()
        await task
        return busy

    busy = asyncio.run(go())
    assert busy["queued"] == 8 and busy["backlog_ms"] == pytest.approx(240.0)  # two slots of 4 at e2
    assert 9_000 < busy["min_slack_ms"] < 10_000 - 240
    assert busy["seq"] > idle["seq"]


def test_profile_mode_serves_the_zoo_profile_without_weights(make_core):
    from scheduler.paths import REPO_ROOT

    profile = REPO_ROOT / "profiles" / "demo_cpu.json"
    ckpt = REPO_ROOT / "models" / "zoo_artifacts" / "cnn1d_mnist1d.json"
    if not (profile.exists() and ckpt.exists()):
        pytest.skip("the committed demo zoo is not present")
    core = make_core(profile=str(profile),
                     models={"cnn1d_mnist1d": {"checkpoint": str(ckpt), "default_deadline_ms": 50}})
    model = core.catalog["cnn1d_mnist1d"]
    assert model.input_shape == (1, 40) and model.platform == "profile" and core.device.startswith("profile")
    c = InferCall("cnn1d_mnist1d", np.zeros((1, 1, 40), np.float32), 1000.0, "z", batched=False)
    (r,) = run(core, c)
    assert r.outcome is Outcome.MET and r.exit == "final" and r.prediction is None


def test_default_policy_serves_and_salvages_a_hopeless_request_only_with_spare_time(make_core):
    from scheduler.policies import DEFAULT_POLICY

    core = make_core(policy=DEFAULT_POLICY)
    assert core.engine.policy.name == DEFAULT_POLICY
    met, hopeless = run(core, call("fast", 1000.0), call("slow", 0.01))
    assert met.outcome is Outcome.MET and met.exit == "e2"
    # Salvage: the hopeless request costs no on-time request anything, and still ends exactly once.
    assert hopeless.outcome in (Outcome.LATE, Outcome.DROPPED)
    assert_accounted(core, 2)


def test_policy_options_reach_the_policy_and_bad_ones_fail_naming_them(make_core):
    from scheduler.serving.config import ConfigError

    core = make_core(policy="lookahead", policy_options={"preempt": True, "shed": "drop"})
    assert core.engine.preemptive and core.engine.policy.shed == "drop"
    met, dropped = run(core, call("fast", 1000.0), call("slow", 0.01))
    assert met.outcome is Outcome.MET and dropped.outcome is Outcome.DROPPED
    assert_accounted(core, 2)
    with pytest.raises(ConfigError, match=r"policy_options.*'nonsense'"):
        make_core(policy="lookahead", policy_options={"nonsense": 1})
    with pytest.raises(ConfigError, match="top-level"):
        make_core(policy="lookahead", policy_options={"bmax": 2})


def test_gil_switch_interval_is_the_workers_setting_and_python_default_without_it(make_core):
    import sys

    before = sys.getswitchinterval()
    try:
        make_core()
        assert sys.getswitchinterval() == before  # null: the process keeps Python's
        make_core(gil_switch_interval_ms=0.5)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)
