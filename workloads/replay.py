"""The open-loop replayer: a trace against a live server over HTTP, or through the simulator.

Live (``replay_http`` / ``areplay_http``): one asyncio task per request on one pooled
``httpx.AsyncClient`` (HTTP/1.1, one connection per request in flight, idle ones reused).
Request ``i`` is sent at ``start + arrival_s[i]`` whatever earlier requests are doing (open
loop): the sender builds the next body, sleeps until its time, spawns its task and
moves on. Each request gets a client timeout of ``deadline + grace``; a timeout or a transport
error ends it FAILED with a reason, so every sent request has exactly one result.
``latency_ms`` is measured client-side, from the moment the request is handed to the client to
the last byte of the answer. The send lag (when the request's headers went on the wire minus its
scheduled time) is recorded per request and summarised; a replay whose p99 lag exceeds
``behind_ms`` reports that it fell behind. With ``propagate_deadlines`` each request also carries
its send time (header ``X-Request-Sent-At``, Unix seconds, taken when its latency clock starts), so
the worker counts the deadline from the same moment the client does. With ``samples_per_call`` N > 1
each row goes out as one Open Inference Protocol call of N samples (``/v2/models/{model}/infer``,
shape ``[N, *input_shape]``, the row's deadline for each), as a camera sending a burst of frames
would: every sample is one request with its own result (ids ``<row id>.<k>``), judged from the
answer's per-sample outputs, with the call's round trip as its latency; the send lag is per call.

Simulated (``replay_simulated``): the same trace rows through ``scheduler.simulator``, giving the
same results schema, so live and simulated runs compare in one report.

Bounds: ``max_seconds`` keeps the rows with ``arrival_s < max_seconds`` and ``max_requests`` the
first N of those; a live replay then ends at most ``deadline + grace`` after its last send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from scheduler.client import sent_at_headers
from scheduler.profile import Profile
from scheduler.results import write_results
from scheduler.summary import summarize
from scheduler.types import Outcome, Request, RequestResult
from workloads.http_pool import LifoPoolTransport
from workloads.http_results import JUDGES, failed, result_from_response, results_from_v2
from workloads.inputs import infer_body, infer_body_v2
from workloads.live_models import LiveModels, parse_models
from workloads.trace import TraceRow

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_GRACE_MS = 2000.0  # client timeout beyond each request's deadline
DEFAULT_BEHIND_MS = 10.0  # a p99 send lag above this means the replayer fell behind its schedule
_START_DELAY_S = 0.1  # time zero is a little after setup, so the first sends are not late already
_HEADERS_SENT = "http11.send_request_headers.started"

ProgressFn = Callable[[int, int], None]  # (sent, done)


@dataclass(frozen=True, slots=True)
class SendLag:
    """How far behind schedule requests went out, ms (actual send time minus scheduled time)."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    behind_ms: float  # the p99 threshold for "fell behind"

    @classmethod
    def of(cls, lags_ms: np.ndarray, behind_ms: float) -> SendLag | None:
        if len(lags_ms) == 0:
            return None
        return cls(float(np.percentile(lags_ms, 50)), float(np.percentile(lags_ms, 99)),
                   float(np.max(lags_ms)), behind_ms)

    @property
    def fell_behind(self) -> bool:
        return self.p99_ms > self.behind_ms

    def describe(self) -> str:
        text = f"send lag p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, max {self.max_ms:.2f} ms"
        if self.fell_behind:
            text += (f": FELL BEHIND the schedule (p99 over {self.behind_ms:g} ms): requests reached the server "
                     f"later and more bunched than the trace says")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms,
                "behind_ms": self.behind_ms, "fell_behind": self.fell_behind}


@dataclass(slots=True)
class ReplayReport:
    """The outcome of one replay: one result per replayed row, in trace order."""

    mode: str  # "live" or "simulated"
    target: str  # the URL, or "simulator"
    policy: str  # label of the policy that served the trace
    profile: Profile  # exits and accuracy used by the summary
    results: list[RequestResult]
    trace_rows: int  # rows in the trace before the bounds cut it
    wall_s: float | None = None  # live: first send to last answer
    lag: SendLag | None = None  # live only
    send_lag_ms: np.ndarray | None = field(default=None, repr=False)  # live: per request, trace order
    client_late: int = 0  # live: server said MET, but the client-side latency exceeded the deadline
    peak_in_flight: int = 0  # live: most requests awaiting an answer at once

    def summary(self) -> dict[str, Any]:
        """The summary JSON of ARCHITECTURE.md (``scheduler.summary.summarize``)."""
        return summarize(self.results, self.profile, self.policy)

    def to_json(self) -> dict[str, Any]:
        """The summary plus a ``replay`` object describing the run itself."""
        replay: dict[str, Any] = {"mode": self.mode, "target": self.target, "trace_rows": self.trace_rows,
                                  "replayed": len(self.results)}
        if self.mode == "live":
            replay.update(wall_s=self.wall_s, send_lag=self.lag.to_dict() if self.lag else None,
                          client_late=self.client_late, peak_in_flight=self.peak_in_flight)
        return {**self.summary(), "replay": replay}

    def write_results(self, path: str | Path) -> int:
        return write_results(path, self.results)


def bound_rows(rows: Sequence[TraceRow], max_requests: int | None = None,
               max_seconds: float | None = None) -> list[TraceRow]:
    """The rows a bounded replay sends: ``arrival_s < max_seconds``, then the first ``max_requests``."""
    if max_requests is not None and max_requests < 1:
        raise ValueError(f"max_requests must be >= 1, got {max_requests}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    kept = [r for r in rows if max_seconds is None or r.arrival_s < max_seconds]
    return kept if max_requests is None else kept[:max_requests]


def _request(row: TraceRow) -> Request:
    return row.to_request(0.0)


# -- simulated ---------------------------------------------------------------------------------

def replay_simulated(rows: Sequence[TraceRow], profile: Profile, policy: Any, *, seed: int = 0,
                     noise: float = 1.0, admission: Any = None, max_requests: int | None = None,
                     max_seconds: float | None = None) -> ReplayReport:
    """The trace through the discrete-event simulator (``policy``: a Policy or a registry name).

    Slot times are drawn with the same seed derivation as ``edgeserving simulate --seed``, so
    ``replay --simulate --seed N`` and ``simulate --trace T --seed N`` give the same results.
    """
    from scheduler.policies import make_policy
    from scheduler.simulator import simulate

    chosen = bound_rows(rows, max_requests, max_seconds)
    if not chosen:
        raise ValueError("nothing to replay: the trace (after --max-requests/--max-seconds) has no rows")
    for m in dict.fromkeys(r.model for r in chosen):
        profile.model(m)  # unknown model: a ValueError listing the known ones
    pol = make_policy(policy) if isinstance(policy, str) else policy
    _, exec_seed = np.random.SeedSequence(seed).spawn(2)
    results = simulate([_request(r) for r in chosen], profile, pol, seed=exec_seed, noise=noise,
                       admission=admission)
    return ReplayReport("simulated", "simulator", pol.label, profile, results, len(rows))


# -- live --------------------------------------------------------------------------------------

def replay_http(rows: Sequence[TraceRow], url: str = DEFAULT_URL, **options: Any) -> ReplayReport:
    """Replay ``rows`` against the server at ``url``; blocking wrapper of ``areplay_http``."""
    return asyncio.run(areplay_http(rows, url, **options))


async def areplay_http(rows: Sequence[TraceRow], url: str = DEFAULT_URL, *, grace_ms: float = DEFAULT_GRACE_MS,
                       max_requests: int | None = None, max_seconds: float | None = None,
                       judge: str = "server", label: str | None = None,
                       behind_ms: float = DEFAULT_BEHIND_MS,
                       on_progress: ProgressFn | None = None,
                       paths: Mapping[str, str] | None = None,
                       propagate_deadlines: bool = False, samples_per_call: int = 1) -> ReplayReport:
    """Open-loop replay over HTTP (see the module docstring).

    ``judge``: "server" keeps the server's MET/LATE; "client" re-judges completed requests by the
    client-side latency. ``label`` names the policy in the summary (default: the policy
    ``/v1/models`` reports, else "live"). ``on_progress(sent, done)`` is called as requests go
    out and come back. ``paths`` maps a model to the path its requests are POSTed to (default
    ``/v1/infer`` for every model), for servers that route by path, such as one application per model.
    ``propagate_deadlines`` sends each request's send time (header X-Request-Sent-At): client and
    server must share a clock (one machine, or NTP-synced hosts). ``samples_per_call`` sends each row as
    one call of that many samples (``paths`` then name the OIP path per model; default
    ``/v2/models/{model}/infer``).
    """
    if not (isinstance(samples_per_call, int) and samples_per_call >= 1):
        raise ValueError(f"samples_per_call must be an int >= 1, got {samples_per_call!r}")
    if judge not in JUDGES:
        raise ValueError(f"unknown judge {judge!r}; choose one of {', '.join(JUDGES)}")
    if not grace_ms >= 0:
        raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
    url = url.rstrip("/")
    chosen = bound_rows(rows, max_requests, max_seconds)
    if not chosen:
        raise ValueError("nothing to replay: the trace (after --max-requests/--max-seconds) has no rows")
    # One pooled client. Its transport keeps the per-request cost flat however many requests are
    # in flight (see workloads.http_pool); trust_env=False: no proxy between us and loopback.
    async with httpx.AsyncClient(base_url=url, transport=LifoPoolTransport(), timeout=httpx.Timeout(None),
                                 trust_env=False) as client:
        live = await fetch_models(client, url)
        served = set(live.shapes)
        missing = sorted({r.model for r in chosen} - served)
        if missing:
            raise ValueError(f"the trace uses model(s) {missing} that {url} does not serve; it serves {sorted(served)}")
        run = _LiveRun(client, live, judge, grace_ms / 1000.0, on_progress, paths, propagate_deadlines,
                       samples_per_call)
        await run.send_all(chosen)
    results = run.results_in_order()
    lags = np.asarray(run.lag_s) * 1000.0
    return ReplayReport("live", url, label or live.policy or "live", live.profile, results,
                        len(rows) * samples_per_call, wall_s=run.wall_s, lag=SendLag.of(lags, behind_ms),
                        send_lag_ms=lags, client_late=run.client_late, peak_in_flight=run.peak_in_flight)


async def fetch_models(client: httpx.AsyncClient, url: str) -> LiveModels:
    """``GET /v1/models``, validated; a clear error when the server is unreachable."""
    try:
        resp = await client.get("/v1/models", timeout=10.0)
    except httpx.HTTPError as exc:
        raise ConnectionError(f"cannot reach the server at {url}: {type(exc).__name__}: {exc} "
                              f"(is `edgeserving serve` running there?)") from None
    if resp.status_code != 200:
        raise ConnectionError(f"GET {url}/v1/models answered {resp.status_code}: {resp.text[:200]}")
    try:
        body = resp.json()
    except ValueError:
        raise ConnectionError(f"GET {url}/v1/models did not answer JSON: {resp.text[:200]!r}") from None
    return parse_models(body, url)


class _LiveRun:
    """State of one live replay: the schedule, the in-flight tasks and the per-request records."""

    def __init__(self, client: httpx.AsyncClient, live: LiveModels, judge: str, grace_s: float,
                 on_progress: ProgressFn | None, paths: Mapping[str, str] | None = None,
                 propagate_deadlines: bool = False, samples_per_call: int = 1) -> None:
        self.client = client
        self.samples = samples_per_call
        self.propagate_deadlines = propagate_deadlines
        self.paths = dict(paths or {})
        self.live = live
        self.judge = judge
        self.grace_s = grace_s
        self.on_progress = on_progress
        self.results: list[list[RequestResult] | None] = []  # per row: its samples' results
        self.lag_s: list[float] = []
        self.sent = self.done = self.in_flight = self.peak_in_flight = self.client_late = 0
        self.wall_s = 0.0

    async def send_all(self, rows: Sequence[TraceRow]) -> None:
        n = len(rows)
        self.results = [None] * n
        self.lag_s = [0.0] * n
        tasks = []
        start = time.perf_counter() + _START_DELAY_S
        for i, row in enumerate(rows):
            shape = self.live.shapes[row.model]  # the body is built before its time comes
            body = infer_body(row, i, shape) if self.samples == 1 else infer_body_v2(row, i, shape, self.samples)
            delay = start + row.arrival_s - time.perf_counter()
            # Yield even when late: otherwise a sender that fell behind would starve the sends it spawned.
            await asyncio.sleep(max(delay, 0.0))
            tasks.append(asyncio.create_task(self._send(i, row, body, start + row.arrival_s)))
            self.sent += 1
            self._progress()
        await asyncio.gather(*tasks)
        self.wall_s = time.perf_counter() - start

    async def _send(self, i: int, row: TraceRow, body: bytes, scheduled: float) -> None:
        requests = self._requests(row)
        headers_sent: list[float] = []

        async def trace(event: str, info: dict) -> None:
            if event == _HEADERS_SENT and not headers_sent:
                headers_sent.append(time.perf_counter())

        timeout_s = row.deadline_ms / 1000.0 + self.grace_s
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        t_start = time.perf_counter()
        headers = {"content-type": "application/json", **sent_at_headers(self.propagate_deadlines)}
        try:
            resp = await asyncio.wait_for(
                self.client.post(self.paths.get(row.model, self._default_path(row.model)), content=body,
                                 headers=headers, extensions={"trace": trace}),
                timeout_s)
            latency_ms = (time.perf_counter() - t_start) * 1000.0
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            exits = self.live.profile.model(row.model).exits
            if self.samples == 1:
                results = [result_from_response(requests[0], resp.status_code, payload, latency_ms, exits, self.judge)]
            else:
                results = results_from_v2(requests, resp.status_code, payload, latency_ms, exits, self.judge)
            self.client_late += sum(1 for r in results if r.outcome is Outcome.MET and r.latency_ms is not None
                                    and r.latency_ms > row.deadline_ms)
        except asyncio.TimeoutError:
            results = [failed(r, f"client_timeout after {timeout_s * 1000:.0f} ms (deadline + grace)")
                       for r in requests]
        except httpx.HTTPError as exc:
            results = [failed(r, f"client_error: {type(exc).__name__}: {exc}") for r in requests]
        except Exception as exc:  # any other failure still ends each of its requests with one outcome
            results = [failed(r, f"client_error: {type(exc).__name__}: {exc}") for r in requests]
        self.lag_s[i] = (headers_sent[0] if headers_sent else t_start) - scheduled
        self.results[i] = results
        self.in_flight -= 1
        self.done += 1
        self._progress()

    def _requests(self, row: TraceRow) -> list[Request]:
        """The requests one row's call carries: the row itself, or one per sample."""
        if self.samples == 1:
            return [_request(row)]
        one = _request(row)
        return [Request(f"{one.id}.{k}", one.model, one.arrival_s, one.deadline_s, label=one.label)
                for k in range(self.samples)]

    def _default_path(self, model: str) -> str:
        return "/v1/infer" if self.samples == 1 else f"/v2/models/{model}/infer"

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.sent, self.done)

    def results_in_order(self) -> list[RequestResult]:
        missing = [i for i, r in enumerate(self.results) if r is None]
        assert not missing, f"{len(missing)} requests ended without a result"
        return [r for per_row in self.results if per_row is not None for r in per_row]
