"""A probe in its own process: polls a live server's health endpoint and samples its /metrics while
a load runs, so a busy load generator in the caller's process cannot delay the measurements.

The child process keeps one HTTP connection and, on its own schedule, times ``GET`` of the
health path (every ``health_interval_s``) and parses ``GET /metrics`` (every
``metrics_interval_s``): queue depth, requests in flight, resident memory per worker process, the
request counters, and the machine's load average. ``Probe.stop()`` returns everything as a
``ProbeReport``. Times are ``time.perf_counter()`` readings, which on Linux share one monotonic
clock across processes, so they line up with the caller's own.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_HEALTH_PATH = "/v2/health/live"


@dataclass(slots=True)
class MetricsSample:
    t_s: float  # perf_counter when the scrape returned
    queue_depth: float  # summed over models and live workers
    inflight: float  # requests opened and not yet answered, live workers
    resident_bytes: dict[str, float]  # worker pid -> resident memory
    received: float  # edgeserving_requests_received_total
    outcomes: float  # sum of edgeserving_requests_total
    load_avg_1m: float | None = None  # the machine's 1-minute load average (what else competed for the CPUs)


@dataclass(slots=True)
class ProbeReport:
    health_t_s: list[float] = field(default_factory=list)  # when each poll was sent
    health_ms: list[float] = field(default_factory=list)  # its latency (failed polls: the time until failure)
    health_failures: list[str] = field(default_factory=list)  # non-200 answers and transport errors
    samples: list[MetricsSample] = field(default_factory=list)
    metrics_failures: int = 0

    def health_between(self, start_s: float, end_s: float) -> np.ndarray:
        t = np.asarray(self.health_t_s)
        return np.asarray(self.health_ms)[(t >= start_s) & (t < end_s)]

    def health_summary(self, start_s: float = -np.inf, end_s: float = np.inf, target_ms: float = 100.0
                       ) -> dict[str, Any]:
        ms = self.health_between(start_s, end_s)
        if ms.size == 0:
            return {"polls": 0}
        return {"polls": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                "max_ms": float(ms.max()), "over_target": int((ms > target_ms).sum()), "target_ms": target_ms,
                "failures": len(self.health_failures)}

    def max_of(self, attr: str, start_s: float = -np.inf, end_s: float = np.inf) -> float:
        values = [getattr(s, attr) for s in self.samples if start_s <= s.t_s < end_s]
        return max(values) if values else float("nan")

    def resident_of(self, pid: str) -> list[tuple[float, float]]:
        """(time, bytes) of one worker process."""
        return [(s.t_s, s.resident_bytes[pid]) for s in self.samples if pid in s.resident_bytes]


class Probe:
    """``with Probe(url) as probe: ...`` then ``probe.report``; or ``start()`` / ``stop()``."""

    def __init__(self, url: str, health_interval_s: float = 0.05, metrics_interval_s: float = 0.5,
                 health_path: str = DEFAULT_HEALTH_PATH, timeout_s: float = 5.0) -> None:
        self.args = (url.rstrip("/"), health_interval_s, metrics_interval_s, health_path, timeout_s)
        ctx = mp.get_context("spawn")  # never fork a process that runs Ray or asyncio
        self._stop = ctx.Event()
        self._ready = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_run, args=(*self.args, self._stop, self._ready, send), daemon=True)
        self.report: ProbeReport | None = None

    def start(self, timeout_s: float = 60.0) -> Probe:
        self._proc.start()
        if not self._ready.wait(timeout_s):
            self._proc.kill()
            raise RuntimeError(f"the probe process did not start within {timeout_s:g} s")
        return self

    def stop(self, timeout_s: float = 30.0) -> ProbeReport:
        self._stop.set()
        if not self._recv.poll(timeout_s):
            self._proc.kill()
            raise RuntimeError("the probe process did not report back")
        self.report = self._recv.recv()
        self._proc.join(timeout_s)
        return self.report

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.report is None:
            self.stop()


def parse_metrics(text: str, t_s: float) -> MetricsSample:
    from prometheus_client.parser import text_string_to_metric_families

    sums = {"edgeserving_queue_depth": 0.0, "edgeserving_inflight_requests": 0.0,
            "edgeserving_requests_received_total": 0.0, "edgeserving_requests_total": 0.0}
    resident: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in sums:
                sums[s.name] += s.value
            elif s.name == "edgeserving_worker_resident_memory_bytes":
                resident[s.labels.get("pid", "?")] = s.value
    return MetricsSample(t_s, sums["edgeserving_queue_depth"], sums["edgeserving_inflight_requests"], resident,
                         sums["edgeserving_requests_received_total"], sums["edgeserving_requests_total"],
                         _load_avg_1m())


def _load_avg_1m() -> float | None:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _run(url: str, health_interval_s: float, metrics_interval_s: float, health_path: str, timeout_s: float,
         stop, ready, send) -> None:
    import httpx

    report = ProbeReport()
    with httpx.Client(base_url=url, timeout=timeout_s, trust_env=False) as client:
        next_health = next_metrics = time.perf_counter()
        ready.set()
        while not stop.is_set():
            now = time.perf_counter()
            if now >= next_health:
                next_health = max(next_health + health_interval_s, now)
                _poll(client, health_path, report)
            if metrics_interval_s > 0 and now >= next_metrics:
                next_metrics = max(next_metrics + metrics_interval_s, now)
                try:
                    r = client.get("/metrics")
                    report.samples.append(parse_metrics(r.text, time.perf_counter()))
                except (httpx.HTTPError, ValueError):
                    report.metrics_failures += 1
            wait = min(next_health, next_metrics if metrics_interval_s > 0 else next_health) - time.perf_counter()
            if wait > 0:
                stop.wait(wait)
    send.send(report)


def _poll(client: Any, path: str, report: ProbeReport) -> None:
    import httpx

    t0 = time.perf_counter()
    try:
        r = client.get(path)
        if r.status_code != 200:
            report.health_failures.append(f"HTTP {r.status_code} at {t0:.3f}")
    except httpx.HTTPError as exc:
        report.health_failures.append(f"{type(exc).__name__} at {t0:.3f}")
    report.health_t_s.append(t0)
    report.health_ms.append((time.perf_counter() - t0) * 1000.0)
