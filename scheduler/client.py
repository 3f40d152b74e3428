"""A small Python client of the edgeserving HTTP API, sync and async: one call per request.

    from scheduler.client import EdgeClient
    with EdgeClient("http://127.0.0.1:8000") as client:
        r = client.infer("digits_resnet", sample, deadline_ms=50)
        print(r.outcome, r.prediction, r.exit, r.latency_ms)

Every answer of the server (any status, any outcome) comes back as an ``InferResult``; only a
transport failure or a body that is not the API's raises ``ClientError``. The deadline is counted
by the server from when its worker replica receives the request, or, with ``propagate_deadlines``,
from when this client sent it (header ``X-Request-Sent-At``; the client's and the server's clocks
must agree: one machine, or NTP-synced hosts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from scheduler.clock import unix_now

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
COMPLETED = ("MET", "LATE")
SENT_AT_HEADER = "X-Request-Sent-At"  # deadline propagation: the send time, Unix seconds


class ClientError(RuntimeError):
    """The server could not be reached, or answered something that is not the edgeserving API."""


@dataclass(frozen=True, slots=True)
class InferResult:
    status: int  # HTTP status
    request_id: str | None
    model: str | None
    outcome: str  # MET | LATE | REJECTED | DROPPED | FAILED
    reason: str | None
    exit: str | None = None
    batch_size: int | None = None
    latency_ms: float | None = None  # in the worker: received -> answer ready
    queue_ms: float | None = None
    slot_ms: float | None = None
    deadline_met: bool = False
    prediction: int | None = None
    confidence: float | None = None
    worker: str | None = None  # the replica that answered
    error: str | None = None  # for a request refused at the edge: what was wrong
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def completed(self) -> bool:
        return self.outcome in COMPLETED


def _as_list(inputs: Any) -> Any:
    return inputs.tolist() if hasattr(inputs, "tolist") else inputs


def sent_at_headers(propagate: bool) -> dict[str, str]:
    """The deadline-propagation header stamped now (wall clock: the one the server can compare), or none."""
    return {SENT_AT_HEADER: f"{unix_now():.6f}"} if propagate else {}


def infer_body(model: str, inputs: Any, deadline_ms: float | None, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "inputs": _as_list(inputs)}
    if deadline_ms is not None:
        body["deadline_ms"] = deadline_ms
    if request_id is not None:
        body["request_id"] = request_id
    return body


def parse_response(response: httpx.Response) -> InferResult:
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"{response.request.url}: HTTP {response.status_code} with a non-JSON body: "
                          f"{response.text[:200]!r}") from None
    if not isinstance(body, dict) or "outcome" not in body:
        raise ClientError(f"{response.request.url}: HTTP {response.status_code} without an outcome: "
                          f"{str(body)[:200]}")
    return InferResult(
        status=response.status_code, request_id=body.get("request_id"), model=body.get("model"),
        outcome=body["outcome"], reason=body.get("reason"), exit=body.get("exit"),
        batch_size=body.get("batch_size"), latency_ms=body.get("latency_ms"), queue_ms=body.get("queue_ms"),
        slot_ms=body.get("slot_ms"), deadline_met=bool(body.get("deadline_met")),
        prediction=body.get("prediction"), confidence=body.get("confidence"),
        worker=response.headers.get("x-edgeserving-worker"), error=body.get("error"), body=body)


def _models(response: httpx.Response) -> list[dict[str, Any]]:
    response.raise_for_status()
    return response.json()["models"]


class EdgeClient:
    """Blocking client; reuses one pooled connection. ``timeout_s`` bounds each HTTP call."""

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = DEFAULT_TIMEOUT_S,
                 propagate_deadlines: bool = False) -> None:
        self.url = url.rstrip("/")
        self.propagate_deadlines = propagate_deadlines
        self._http = httpx.Client(timeout=timeout_s)

    def infer(self, model: str, inputs: Sequence[Any] | Any, deadline_ms: float | None = None,
              request_id: str | None = None) -> InferResult:
        """One sample (a nested list or an array shaped like the model's input) under ``deadline_ms``."""
        try:
            body = infer_body(model, inputs, deadline_ms, request_id)  # built before the send time is stamped
            r = self._http.post(f"{self.url}/v1/infer", json=body, headers=sent_at_headers(self.propagate_deadlines))
        except httpx.HTTPError as exc:
            raise ClientError(f"{self.url}/v1/infer: {type(exc).__name__}: {exc}") from exc
        return parse_response(r)

    def models(self) -> list[dict[str, Any]]:
        try:
            return _models(self._http.get(f"{self.url}/v1/models"))
        except httpx.HTTPError as exc:
            raise ClientError(f"{self.url}/v1/models: {type(exc).__name__}: {exc}") from exc

    def ready(self) -> bool:
        try:
            return self._http.get(f"{self.url}/v2/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEdgeClient:
    """The same calls for asyncio; many requests may be in flight on one client."""

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_connections: int = 256, propagate_deadlines: bool = False) -> None:
        self.url = url.rstrip("/")
        self.propagate_deadlines = propagate_deadlines
        self._http = httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=max_connections))

    async def infer(self, model: str, inputs: Sequence[Any] | Any, deadline_ms: float | None = None,
                    request_id: str | None = None) -> InferResult:
        try:
            body = infer_body(model, inputs, deadline_ms, request_id)
            r = await self._http.post(f"{self.url}/v1/infer", json=body,
                                      headers=sent_at_headers(self.propagate_deadlines))
        except httpx.HTTPError as exc:
            raise ClientError(f"{self.url}/v1/infer: {type(exc).__name__}: {exc}") from exc
        return parse_response(r)

    async def models(self) -> list[dict[str, Any]]:
        try:
            return _models(await self._http.get(f"{self.url}/v1/models"))
        except httpx.HTTPError as exc:
            raise ClientError(f"{self.url}/v1/models: {type(exc).__name__}: {exc}") from exc

    async def ready(self) -> bool:
        try:
            return (await self._http.get(f"{self.url}/v2/health/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEdgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
