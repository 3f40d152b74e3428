"""Prometheus metrics of the live workers, exact across every worker of the node.

Mechanism: prometheus-client's **multiprocess mode**. Each worker replica is its own process and
writes its samples to memory-mapped files in one directory shared by the node's workers; the
``/metrics`` endpoint (answered by whichever replica the proxy picks) merges every file of that
directory, so a scrape shows the exact totals of all workers, including replicas that have since
exited (their counters stay in the totals; their live gauges are dropped at the next scrape).

The metric objects are created inside the replica (``ServingMetrics(...)`` in the worker's
constructor), never at import, and multiprocess mode is switched on just before the first one
is built, the moment prometheus-client itself requires. Ray's own metrics are untouched and stay
on Ray's metrics export port.

A worker process that dies without shutting down (killed, crashed) takes its open requests with
it: it counted them in ``edgeserving_requests_received_total`` and never gave them an outcome.
The next scrape, or the next worker to start in the directory, finds the dead process (its live
gauge files name a pid that no longer exists), counts what it received minus the outcomes it
recorded, and writes that many ``FAILED`` outcomes with reason ``worker_lost`` (model
``<unknown>``: the received counter has no model label) into a file of their own, once per dead
process, before dropping its live gauges. So requests in = sum of outcomes holds across crashes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from scheduler.types import Outcome, Plan, RequestResult, SlotResult

UNKNOWN_MODEL = "<unknown>"  # label for requests that named no served model (bounded label values)
WORKER_LOST = "worker_lost"  # reason of the requests a worker process held when it died
REQUESTS_HELP = "Requests by model, final outcome and reason"
RECEIVED_SAMPLE = "edgeserving_requests_received_total"
OUTCOMES_SAMPLE = "edgeserving_requests_total"

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
SLACK_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0)
SLOT_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
ERROR_BUCKETS_S = (-0.05, -0.02, -0.01, -0.005, -0.002, -0.001, 0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
DECISION_BUCKETS_S = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)
GAP_BUCKETS_S = (5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2)

_LIVE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def enable_multiprocess(directory: Path) -> None:
    """Point this process's prometheus-client values at ``directory`` (call before creating metrics).

    prometheus-client picks its value class from PROMETHEUS_MULTIPROC_DIR when first imported; a
    replica process may have imported it earlier, so the value class is chosen again here, before
    any edgeserving metric exists.
    """
    from prometheus_client import values

    directory.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # A value class keeps its open files per process; a new directory needs a new one (tests run
    # several workers in one process, each with its own directory).
    if not getattr(values.ValueClass, "_multiprocess", False) or previous != str(directory):
        values.ValueClass = values.MultiProcessValue()


def reason_label(reason: str | None) -> str:
    """A bounded metrics label from a free-text reason ("slot_failed: ValueError: ..." -> "slot_failed")."""
    if not reason:
        return ""
    return reason.split(":", 1)[0].strip()[:40]


class ServingMetrics:
    """The edgeserving_* metrics of one worker process, written to the node's shared directory."""

    def __init__(self, directory: Path, worker: str, bmax: int) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        enable_multiprocess(directory)
        self.directory = directory
        self.worker = worker
        kw = {"registry": None}  # values live in the shared files; /metrics collects from there
        self.received = Counter("edgeserving_requests_received", "Requests that reached a worker (before validation)",
                                **kw)
        self.requests = Counter("edgeserving_requests", REQUESTS_HELP, ["model", "outcome", "reason"], **kw)
        self.latency = Histogram("edgeserving_request_latency_seconds",
                                 "End-to-end latency in the worker (received -> answer ready), completed requests",
                                 ["model"], buckets=LATENCY_BUCKETS_S, **kw)
        self.slack = Histogram("edgeserving_deadline_slack_seconds", "Deadline minus finish time, MET requests",
                               ["model"], buckets=SLACK_BUCKETS_S, **kw)
        self.lateness = Histogram("edgeserving_deadline_lateness_seconds", "Finish time minus deadline, LATE requests",
                                  ["model"], buckets=SLACK_BUCKETS_S, **kw)
        self.exits = Counter("edgeserving_exits", "Completed requests by the exit they actually took",
                             ["model", "exit"], **kw)
        self.batch_size = Histogram("edgeserving_batch_size", "Requests per slot", ["model"],
                                    buckets=tuple(float(b) for b in range(1, bmax + 1)), **kw)
        self.queue_depth = Gauge("edgeserving_queue_depth", "Queued requests per model, summed over live workers",
                                 ["model"], multiprocess_mode="livesum", **kw)
        self.inflight = Gauge("edgeserving_inflight_requests", "Requests opened and not yet answered, live workers",
                              multiprocess_mode="livesum", **kw)
        self.workers = Gauge("edgeserving_workers", "Live worker replicas", multiprocess_mode="livesum", **kw)
        self.slot = Histogram("edgeserving_slot_seconds", "Measured slot time by model and exit cap",
                              ["model", "exit"], buckets=SLOT_BUCKETS_S, **kw)
        self.prediction_error = Histogram("edgeserving_slot_prediction_error_seconds",
                                          "Measured minus predicted slot time", ["model", "exit"],
                                          buckets=ERROR_BUCKETS_S, **kw)
        self.preempted_slots = Counter("edgeserving_preempted_slots", "Slots stopped at an exit boundary (preemption)",
                                       ["model", "exit"], **kw)
        self.failed_slots = Counter("edgeserving_failed_slots", "Slots whose executor raised", ["model"], **kw)
        self.busy = Counter("edgeserving_gpu_busy_seconds", "Time the device spent running slots", ["worker"], **kw)
        self.decision = Histogram("edgeserving_scheduler_decision_seconds", "Time of one policy decision",
                                  buckets=DECISION_BUCKETS_S, **kw)
        self.engine_gap = Histogram("edgeserving_engine_gap_seconds",
                                    "Device idle while requests waited, before each slot (engine reaction time)",
                                    buckets=GAP_BUCKETS_S, **kw)
        # The handler's own share of a request's queue time (body read, validation, hand-off): on a busy
        # machine it grows with the load, apart from the engine's queue, and the simulator must add it.
        self.handling = Histogram("edgeserving_request_handling_seconds",
                                  "From the handler receiving a call to the engine holding its requests",
                                  buckets=GAP_BUCKETS_S, **kw)
        self.transit = Histogram("edgeserving_request_transit_seconds",
                                 "From the client sending a call (header X-Request-Sent-At) to the handler "
                                 "receiving it; only calls that carry the header", buckets=LATENCY_BUCKETS_S, **kw)
        self.workers.set(1)
        self.inflight.set(0)
        reap_dead_workers(directory)  # a replica restarted after a crash accounts for its predecessor at once

    # -- recording -----------------------------------------------------------------------------

    def record_received(self, n: int = 1) -> None:
        self.received.inc(n)

    def record_result(self, result: RequestResult, served_models: Iterable[str]) -> None:
        """Once per request, with its final outcome (called by the ledger)."""
        req = result.request
        model = req.model if req.model in served_models else UNKNOWN_MODEL
        self.requests.labels(model, result.outcome.value, reason_label(result.reason)).inc()
        if result.outcome.completed and result.finish_s is not None:
            self.latency.labels(model).observe(max(result.finish_s - req.arrival_s, 0.0))
            if result.outcome is Outcome.MET:
                self.slack.labels(model).observe(req.deadline_s - result.finish_s)
            else:
                self.lateness.labels(model).observe(result.finish_s - req.deadline_s)
            if result.exit is not None:
                self.exits.labels(model, result.exit).inc()

    def record_rejected(self, model: str, code: str) -> None:
        """A call refused at the edge (bad input): counted as one REJECTED request."""
        self.requests.labels(model, Outcome.REJECTED.value, code).inc()

    def record_slot(self, plan: Plan, slot: SlotResult | None, decision_ms: float | None) -> None:
        assert plan.model is not None and plan.exit is not None
        if decision_ms is not None:
            self.decision.observe(decision_ms / 1000.0)
        if slot is None:
            self.failed_slots.labels(plan.model).inc()
            return
        self.batch_size.labels(plan.model).observe(plan.batch_size)
        self.slot.labels(plan.model, plan.exit).observe(slot.slot_ms / 1000.0)
        if slot.preempted:  # stopped at an exit boundary: no sample of the planned exit's time
            self.preempted_slots.labels(plan.model, slot.exits[0]).inc()
        else:
            self.prediction_error.labels(plan.model, plan.exit).observe((slot.slot_ms - plan.predicted_ms) / 1000.0)
        self.busy.labels(self.worker).inc(slot.slot_ms / 1000.0)

    def record_gap(self, gap_ms: float | None) -> None:
        if gap_ms is not None:
            self.engine_gap.observe(gap_ms / 1000.0)

    def record_handling(self, handling_s: float) -> None:
        self.handling.observe(max(handling_s, 0.0))

    def record_transit(self, transit_s: float) -> None:
        self.transit.observe(max(transit_s, 0.0))

    def set_queue_depths(self, depths: Mapping[str, int]) -> None:
        for model, depth in depths.items():
            self.queue_depth.labels(model).set(depth)

    def set_inflight(self, n: int) -> None:
        self.inflight.set(n)

    # -- exposition ----------------------------------------------------------------------------

    def render(self) -> bytes:
        """Prometheus text of every worker sharing this directory."""
        return render_directory(self.directory)

    def close(self) -> None:
        """This worker is going away: its live gauges leave the totals."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), str(self.directory))


class ProcessMetrics:
    """Gauges of the worker process itself, one series per live process (``pid`` label).

    Kept apart from ``ServingMetrics`` (the request and slot metrics of the contract) so the
    worker owns the sampling: ``update()`` is cheap (one read of /proc/self/statm) and the
    worker calls it at most once a second.
    """

    def __init__(self) -> None:
        from prometheus_client import Gauge

        self.resident = Gauge("edgeserving_worker_resident_memory_bytes",
                              "Resident memory of each live worker process (a soak watches it for drift)",
                              multiprocess_mode="liveall", registry=None)
        self.update()

    def update(self) -> None:
        rss = resident_bytes()
        if rss is not None:
            self.resident.set(rss)


def resident_bytes() -> int | None:
    """This process's resident set size (Linux /proc; None where there is no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def render_directory(directory: Path) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    reap_dead_workers(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry)


def reap_dead_workers(directory: Path) -> list[int]:
    """Account for the requests of processes that died without shutting down (``worker_lost``), then
    drop their live-gauge files. Returns the dead pids found."""
    from prometheus_client import multiprocess

    dead = set()
    for name in os.listdir(directory):
        m = _LIVE_FILE.match(name)
        if m and not _alive(int(m.group(1))):
            dead.add(int(m.group(1)))
    for pid in sorted(dead):
        account_lost_requests(directory, pid)  # first: its live files are the marker that it is not done yet
        multiprocess.mark_process_dead(pid, str(directory))
    return sorted(dead)


def lost_requests(directory: Path, pid: int) -> int:
    """Requests process ``pid`` counted in and never gave an outcome, from its own counter file
    (the ``worker_lost`` outcomes it recorded for other dead processes are not its own)."""
    from prometheus_client.mmap_dict import MmapedDict

    path = Path(directory) / f"counter_{pid}.db"
    if not path.exists():
        return 0
    received = outcomes = 0.0
    for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
        _metric, sample, labels, _help = json.loads(key)
        if sample == RECEIVED_SAMPLE:
            received += value
        elif sample == OUTCOMES_SAMPLE and labels.get("reason") != WORKER_LOST:
            outcomes += value
    return max(round(received - outcomes), 0)


def account_lost_requests(directory: Path, pid: int) -> int:
    """Write dead process ``pid``'s lost requests as FAILED/worker_lost outcomes, once; returns how many.

    The file ``counter_lost-PID.db`` holds them (the multiprocess collector sums every counter
    file). Its content depends only on the dead process's file, so two workers reaping at once
    write the same thing, and it appears atomically (written aside, then renamed).
    """
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    directory = Path(directory)
    target = directory / f"counter_lost-{pid}.db"
    if target.exists():
        return 0
    lost = lost_requests(directory, pid)
    if lost == 0:
        return 0
    aside = directory / f".lost-{pid}.{os.getpid()}.tmp"  # not *.db: a scrape never reads it half-written
    values = MmapedDict(str(aside))
    try:
        values.write_value(mmap_key("edgeserving_requests", OUTCOMES_SAMPLE, ["model", "outcome", "reason"],
                                    [UNKNOWN_MODEL, Outcome.FAILED.value, WORKER_LOST], REQUESTS_HELP), lost, 0.0)
    finally:
        values.close()
    os.replace(aside, target)
    return lost


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
