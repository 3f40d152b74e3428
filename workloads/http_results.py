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
- an Open Inference Protocol call of N samples (``results_from_v2``): one result per sample, each
  judged by the rules above on that sample's entries of the per-sample ``outputs`` (its status: 200
  when it completed, else the call's); the client-side latency is the call's, for every sample (the
  client has no sample's answer before the call's). A body without per-sample outputs (an edge
  error) gives every sample the call's outcome.
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


def results_from_v2(requests: Sequence[Request], status: int, body: Any, latency_ms: float,
                    exits: Sequence[str], judge: str = "server") -> list[RequestResult]:
    """One result per sample of an OIP call whose samples are ``requests`` (in the order sent)."""
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, list):
        return [result_from_response(r, status, body, latency_ms, exits, judge) for r in requests]
    # The outputs with one value per sample (others, e.g. of a wrong length, are ignored).
    columns = {o.get("name"): o.get("data") for o in outputs
               if isinstance(o, dict) and isinstance(o.get("data"), list) and len(o["data"]) == len(requests)}
    if not all(k in columns for k in _PER_SAMPLE):
        reason = f"protocol_error: http_{status} without the per-sample outputs {list(_PER_SAMPLE)} for " \
                 f"{len(requests)} samples"
        return [failed(r, reason) for r in requests]
    results = []
    for k, request in enumerate(requests):
        sample = {name: _absent_to_none(data[k]) for name, data in columns.items()}
        outcome = _outcome(sample)
        completed = outcome in (Outcome.MET, Outcome.LATE)
        results.append(result_from_response(request, 200 if completed else (status if status != 200 else 500),
                                            sample, latency_ms, exits, judge))
    return results


_PER_SAMPLE = ("outcome", "reason", "exit", "batch_size")


def _absent_to_none(v: Any) -> Any:
    """The v2 outputs' markers for "none" (-1, "") as the /v1 body's null."""
    return None if v == "" or (isinstance(v, int | float) and not isinstance(v, bool) and v == -1) else v


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
