"""One HTTP exchange -> one ``RequestResult``, whatever the server or the network did.

Rules (the HTTP API contract of the common brief):
- 200 with outcome MET/LATE: completed; ``exit``, ``batch_size``, ``queue_ms``, ``slot_ms`` come
  from the body, ``latency_ms`` is the client-side round trip. With ``judge="server"`` the
  outcome is the server's; with ``judge="client"`` it is MET when the client-side latency is
  within the deadline, else LATE.
- any other status whose JSON body names an outcome REJECTED/DROPPED/FAILED: that outcome and the
  body's reason (default ``http_<status>``).
- anything else (a body that breaks the contract, an exit the model does not have): FAILED with
  reason ``protocol_error: ...``; timeouts and transport errors are FAILED with
  ``client_timeout ...`` / ``client_error: ...`` (see ``workloads.replay``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scheduler.types import Outcome, Request, RequestResult

JUDGES = ("server", "client")
_NO_ANSWER = {Outcome.REJECTED, Outcome.DROPPED, Outcome.FAILED}


def failed(request: Request, reason: str) -> RequestResult:
    return RequestResult(request, Outcome.FAILED, reason=reason[:300])


def result_from_response(request: Request, status: int, body: Any, latency_ms: float,
                         exits: Sequence[str], judge: str = "server") -> RequestResult:
    """The result of one answered request; ``exits`` are the model's exits (from ``/v1/models``)."""
    outcome = _outcome(body)
    if status == 200:
        if outcome not in (Outcome.MET, Outcome.LATE):
            return failed(request, f"protocol_error: status 200 with outcome {_field(body, 'outcome')!r}")
        return _completed(request, body, outcome, latency_ms, exits, judge)
    if outcome in _NO_ANSWER:
        reason = body.get("reason")
        return RequestResult(request, outcome, reason=str(reason)[:300] if reason else f"http_{status}",
                             batch_size=_positive_int(body.get("batch_size")))
    return failed(request, f"protocol_error: http_{status} with outcome {_field(body, 'outcome')!r}")


def _completed(request: Request, body: dict, outcome: Outcome, latency_ms: float, exits: Sequence[str],
               judge: str) -> RequestResult:
    exit = body.get("exit")
    if exit not in exits:
        return failed(request, f"protocol_error: exit {exit!r} is not one of {list(exits)}")
    batch_size = _positive_int(body.get("batch_size"))
    if batch_size is None:
        return failed(request, f"protocol_error: batch_size {body.get('batch_size')!r} is not a positive int")
    if judge == "client":
        outcome = Outcome.MET if latency_ms <= request.slo_ms else Outcome.LATE
    prediction = body.get("prediction")
    return RequestResult(
        request, outcome, finish_s=request.arrival_s + latency_ms / 1000.0, exit=exit, batch_size=batch_size,
        queue_ms=_number(body.get("queue_ms")), slot_ms=_number(body.get("slot_ms")),
        prediction=prediction if isinstance(prediction, int) and not isinstance(prediction, bool) else None,
        confidence=_number(body.get("confidence")))


def _outcome(body: Any) -> Outcome | None:
    value = body.get("outcome") if isinstance(body, dict) else None
    try:
        return Outcome(value)
    except ValueError:
        return None


def _field(body: Any, key: str) -> Any:
    return body.get(key) if isinstance(body, dict) else "<no JSON object>"


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _positive_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None
