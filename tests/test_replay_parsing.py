"""The replayer's parsing of server answers: /v1/infer bodies and the /v1/models listing."""

from __future__ import annotations

import pytest

from scheduler.types import Outcome, Request
from workloads.http_results import result_from_response, results_from_v2
from workloads.inputs import infer_body, infer_body_v2, make_inputs
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


def test_a_v2_call_of_several_samples_gives_one_result_per_sample_from_the_servers_own_answer():
    import numpy as np

    from scheduler.serving.responses import v2_response
    from scheduler.serving.validation import InferCall
    from scheduler.types import RequestResult

    samples = [Request(f"r1.{k}", "m", 2.0, 2.05) for k in range(3)]
    served = [RequestResult(samples[0], Outcome.MET, finish_s=2.01, exit="e1", batch_size=2, queue_ms=1.0,
                            slot_ms=3.0, prediction=4, confidence=0.8),
              RequestResult(samples[1], Outcome.LATE, finish_s=2.07, exit="final", batch_size=1, queue_ms=9.0,
                            slot_ms=6.0, prediction=5, confidence=0.7),
              RequestResult(samples[2], Outcome.DROPPED, reason="deadline_unreachable: too late")]
    call = InferCall("m", np.zeros((3, 2), np.float32), 50.0, "r1", batched=True)
    status, body, _ = v2_response(call, served)  # what the worker answers: 504, the worst sample's
    assert status == 504
    got = results_from_v2(samples, status, body, 40.0, EXITS)
    assert [r.request.id for r in got] == ["r1.0", "r1.1", "r1.2"]
    assert [r.outcome for r in got] == [Outcome.MET, Outcome.LATE, Outcome.DROPPED]
    assert (got[1].exit, got[1].batch_size, got[1].queue_ms, got[1].slot_ms, got[1].prediction) == ("final", 1, 9.0,
                                                                                                      6.0, None)
    assert got[0].latency_ms == got[1].latency_ms == pytest.approx(40.0)  # the call's round trip, for each sample
    assert got[2].reason == "deadline_unreachable: too late" and got[2].latency_ms is None
    # Predictions are per sample only when every sample has one (the dropped one has none).
    assert all(r.prediction is None for r in got)
    # An edge error has no per-sample outputs: every sample gets the call's outcome.
    refused = results_from_v2(samples, 422, {"outcome": "REJECTED", "reason": "bad_input"}, 5.0, EXITS)
    assert [(r.outcome, r.reason) for r in refused] == [(Outcome.REJECTED, "bad_input")] * 3
    # Outputs of the wrong length break the contract: FAILED, never a guess.
    short = {**body, "outputs": [{**o, "data": o["data"][:2]} for o in body["outputs"]]}
    assert all(r.outcome is Outcome.FAILED and "per-sample outputs" in r.reason
               for r in results_from_v2(samples, status, short, 5.0, EXITS))


def test_a_v2_body_carries_distinct_deterministic_samples():
    import json

    row = TraceRow(0.0, "m", 40.0, "r7", input_seed=7)
    body = json.loads(infer_body_v2(row, 0, (2, 3), 4))
    tensor = body["inputs"][0]
    assert body["id"] == "r7" and body["parameters"] == {"deadline_ms": 40.0} and tensor["shape"] == [4, 2, 3]
    assert len({json.dumps(x) for x in tensor["data"]}) == 4  # four different samples
    assert infer_body_v2(row, 0, (2, 3), 4) == infer_body_v2(row, 0, (2, 3), 4)


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
