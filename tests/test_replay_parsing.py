"""The replayer's parsing of server answers: /v1/infer bodies and the /v1/models listing."""

from __future__ import annotations

import pytest

from scheduler.types import Outcome, Request
from workloads.http_results import result_from_response
from workloads.inputs import infer_body, make_inputs
from workloads.live_models import ServerContractError, parse_models
from workloads.trace import TraceRow

REQ = Request("r1", "m", 2.0, 2.05)  # arrived at 2 s with a 50 ms deadline
EXITS = ("e1", "final")
DONE = {"request_id": "r1", "model": "m", "outcome": "MET", "reason": None, "exit": "e1", "batch_size": 3,
        "latency_ms": 12.0, "queue_ms": 4.0, "slot_ms": 8.0, "deadline_met": True, "prediction": 7, "confidence": 0.9}


def test_completed_uses_client_latency_and_server_fields():
    r = result_from_response(REQ, 200, DONE, 30.0, EXITS)
    assert r.outcome is Outcome.MET and r.latency_ms == pytest.approx(30.0)
    assert (r.exit, r.batch_size, r.queue_ms, r.slot_ms, r.prediction, r.confidence) == ("e1", 3, 4.0, 8.0, 7, 0.9)
    late = result_from_response(REQ, 200, DONE, 60.0, EXITS, judge="client")
    assert late.outcome is Outcome.LATE
    assert result_from_response(REQ, 200, DONE, 60.0, EXITS).outcome is Outcome.MET  # the server's word


@pytest.mark.parametrize("status, body, outcome, reason", [
    (503, {"outcome": "REJECTED", "reason": "queue_full"}, Outcome.REJECTED, "queue_full"),
    (504, {"outcome": "DROPPED", "reason": None}, Outcome.DROPPED, "http_504"),
    (500, {"outcome": "FAILED", "reason": "slot_failed: x"}, Outcome.FAILED, "slot_failed: x"),
    (422, {"outcome": "REJECTED", "reason": "bad shape"}, Outcome.REJECTED, "bad shape"),
    (502, None, Outcome.FAILED, "protocol_error: http_502"),
    (200, {**DONE, "outcome": "DROPPED"}, Outcome.FAILED, "protocol_error: status 200"),
    (200, {**DONE, "exit": "e9"}, Outcome.FAILED, "exit 'e9'"),
    (200, {**DONE, "batch_size": 0}, Outcome.FAILED, "batch_size"),
    (404, {"outcome": "MET"}, Outcome.FAILED, "protocol_error: http_404"),
])
def test_error_answers(status, body, outcome, reason):
    r = result_from_response(REQ, status, body, 5.0, EXITS)
    assert r.outcome is outcome and reason in r.reason and r.latency_ms is None


def _listing(**override):
    model = {"name": "m", "exits": ["e1", "final"], "input_shape": [3, 4], "dtype": "float32", "num_classes": 10,
             "accuracy": {"e1": 0.5, "final": 0.8}, "latency_ms": {"e1": {"1": 1.0, "8": 3.0},
                                                                   "final": {"1": 2.0, "8": 6.0}},
             "default_deadline_ms": 50}
    model.update(override)
    return {"models": [model]}


def test_models_listing():
    live = parse_models(_listing(), "http://x")
    assert live.shapes == {"m": (3, 4)} and live.policy is None
    assert live.profile.model("m").exits == ("e1", "final")
    assert live.profile.accuracy("m", "final") == 0.8
    assert live.profile.latency_ms("m", "final", 8) == 6.0


@pytest.mark.parametrize("override, what", [
    ({"input_shape": [3, -1]}, "input_shape"),
    ({"exits": []}, "exits"),
    ({"latency_ms": None}, "latency_ms is missing"),
    ({"latency_ms": {"e1": {"1": 1.0}}}, "latency_ms['final']"),
    ({"accuracy": {"e1": 0.5, "final": 2}}, "accuracy"),
    ({"name": ""}, "has no name"),
])
def test_models_listing_errors(override, what):
    with pytest.raises(ServerContractError) as info:
        parse_models(_listing(**override), "http://x")
    assert what in str(info.value) and "/v1/models" in str(info.value)


def test_bodies_are_deterministic():
    row = TraceRow(0.0, "m", 20.0, "q", input_seed=5)
    assert infer_body(row, 0, (2, 2)) == infer_body(row, 9, (2, 2))
    assert make_inputs((2, 2), 5) != make_inputs((2, 2), 6)
    assert b'"request_id":"q"' in infer_body(row, 0, (2, 2))
