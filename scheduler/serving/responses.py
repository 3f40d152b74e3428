"""Response bodies and status codes: outcome -> HTTP, the same for /v1 and /v2 (pure functions).

Status codes: 200 MET and LATE; 503 + Retry-After for queue_full and shutdown; 503 for
deadline_infeasible, deadline_expired and other admission refusals; 504 DROPPED; 500 FAILED (shutdown: 503).
Edge errors (``InputError``) carry their own status: 400, 404, 413 or 422.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scheduler.engine import QUEUE_FULL, SHUTDOWN
from scheduler.serving.metrics import reason_label
from scheduler.serving.validation import InferCall, InputError
from scheduler.types import Outcome, RequestResult

RETRY_AFTER_S = 1
# Worst first: a batch's overall outcome is the worst of its samples'.
SEVERITY = (Outcome.FAILED, Outcome.DROPPED, Outcome.REJECTED, Outcome.LATE, Outcome.MET)


def status_of(result: RequestResult) -> tuple[int, dict[str, str]]:
    """HTTP status and extra headers for one outcome."""
    o = result.outcome
    if o.completed:
        return 200, {}
    label = reason_label(result.reason)
    if label in (QUEUE_FULL, SHUTDOWN):
        return 503, {"Retry-After": str(RETRY_AFTER_S)}
    if o is Outcome.REJECTED:
        return 503, {}
    if o is Outcome.DROPPED:
        return 504, {}
    return 500, {}


def sample_body(result: RequestResult, deadline_ms: float) -> dict[str, Any]:
    """The per-request fields every answer carries."""
    return {
        "outcome": result.outcome.value,
        "reason": result.reason,
        "exit": result.exit,
        "batch_size": result.batch_size,
        "latency_ms": _ms(result.latency_ms),
        "queue_ms": _ms(result.queue_ms),
        "slot_ms": _ms(result.slot_ms),
        "deadline_ms": deadline_ms,
        "deadline_met": result.outcome is Outcome.MET,
        "prediction": result.prediction,
        "confidence": _confidence(result),
    }


def worst(results: Sequence[RequestResult]) -> RequestResult:
    return min(results, key=lambda r: SEVERITY.index(r.outcome))


def v1_response(call: InferCall, results: Sequence[RequestResult]) -> tuple[int, dict[str, Any], dict[str, str]]:
    assert len(results) == 1, "a /v1 call carries one sample"
    status, headers = status_of(results[0])
    return status, {"request_id": call.request_id, "model": call.model,
                    **sample_body(results[0], call.deadline_ms)}, headers


def v2_response(call: InferCall, results: Sequence[RequestResult]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Open Inference Protocol answer: per-sample outputs, plus the contract's fields at the top level.

    With one sample the top-level fields are that sample's; with a batch they describe the worst
    sample (``latency_ms`` is the slowest) and the per-sample values are in ``outputs``.
    """
    n = len(results)
    head = results[0] if n == 1 else worst(results)
    status, headers = status_of(head)
    top = sample_body(head, call.deadline_ms)
    if n > 1:
        lat = [r.latency_ms for r in results if r.latency_ms is not None]
        top.update({"exit": None, "batch_size": None, "queue_ms": None, "slot_ms": None, "prediction": None,
                    "confidence": None, "latency_ms": _ms(max(lat)) if lat else None,
                    "deadline_met": all(r.outcome is Outcome.MET for r in results)})
    shape = [n] if call.batched else [1]
    # Per sample, what /v1 answers at the top level (absent values: "" for text, -1 for numbers), so a
    # client of a batch call can account each sample as one request (workloads.http_results).
    outputs = [
        {"name": "outcome", "datatype": "BYTES", "shape": shape, "data": [r.outcome.value for r in results]},
        {"name": "reason", "datatype": "BYTES", "shape": shape, "data": [r.reason or "" for r in results]},
        {"name": "exit", "datatype": "BYTES", "shape": shape, "data": [r.exit or "" for r in results]},
        {"name": "batch_size", "datatype": "INT32", "shape": shape, "data": [r.batch_size or -1 for r in results]},
        *({"name": name, "datatype": "FP64", "shape": shape, "data": [_ms_or_absent(getattr(r, name)) for r in results]}
          for name in ("latency_ms", "queue_ms", "slot_ms")),
    ]
    if all(r.prediction is not None for r in results):
        outputs.append({"name": "prediction", "datatype": "INT64", "shape": shape,
                        "data": [int(r.prediction) for r in results]})
    confidences = [_confidence(r) for r in results]
    if all(c is not None for c in confidences):
        outputs.append({"name": "confidence", "datatype": "FP32", "shape": shape, "data": confidences})
    body = {"model_name": call.model, "model_version": "1", "id": call.request_id, "outputs": outputs,
            "request_id": call.request_id, "model": call.model, **top}
    return status, body, headers


def error_response(err: InputError, request_id: str | None, expected_shape: Sequence[int] | None
                   ) -> tuple[int, dict[str, Any]]:
    """The body of a call refused at the edge: outcome REJECTED, the reason code and a readable error."""
    body: dict[str, Any] = {"request_id": request_id, "model": err.model, "outcome": Outcome.REJECTED.value,
                            "reason": err.code, "error": err.message, "deadline_met": False}
    if expected_shape is not None:
        body["expected_shape"] = list(expected_shape)
    body.update(err.extra)
    return err.status, body


def _ms(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, 4)


def _ms_or_absent(v: float | None) -> float:
    """A per-sample time in a numeric output tensor: -1 where there is none (JSON tensors hold no nulls)."""
    ms = _ms(v)
    return -1.0 if ms is None else ms


def _confidence(result: RequestResult) -> float | None:
    """The confidence, or None when the model produced none or a non-finite one: finite but huge
    inputs (3e38 passes validation as float32) overflow a network to NaN logits, and JSON has no NaN."""
    c = result.confidence
    return None if c is None or not math.isfinite(c) else round(float(c), 6)
