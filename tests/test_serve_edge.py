"""The edge, without Ray: config validation messages, the bad-input matrix, and outcome -> HTTP mapping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scheduler.serving.catalog import ServedModel
from scheduler.serving.config import ConfigError, parse_config
from scheduler.serving.responses import error_response, status_of, v2_response
from scheduler.serving.validation import InferCall, InputError, parse_v1, parse_v2
from scheduler.types import Outcome, Request, RequestResult

MODEL = ServedModel("m", ("e1", "e2"), (2, 3), 10, {"e1": 0.5, "e2": 0.9}, 50.0, {}, "profile")
NO_DEFAULT = ServedModel("nodefault", ("e1",), (4,), 3, {"e1": 0.5}, None, {}, "profile")
CATALOG = {"m": MODEL, "nodefault": NO_DEFAULT}
GOOD = [[1, 2, 3], [4, 5, 6]]


def v1(body, headers=None) -> InferCall:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_v1(raw, headers or {}, CATALOG, max_deadline_ms=60_000)


def refused(fn, *args) -> InputError:
    with pytest.raises(InputError) as info:
        fn(*args)
    return info.value


# -- config ------------------------------------------------------------------------------------------

BASE = {"executor": "profile", "profile": "p.json", "models": {"m": {"input_shape": [2], "num_classes": 3}}}


@pytest.mark.parametrize(("change", "message"), [
    ({"bmaxx": 4}, "bmaxx: unknown key"),
    ({"bmax": 0}, "bmax: Input should be greater than or equal to 1 (got 0)"),
    ({"policy": "nope"}, "unknown policy 'nope'; known policies are edgeserving"),
    ({"quantile": "p42"}, "quantile: Input should be"),
    ({"executor": "torch"}, "models.m.checkpoint is required with executor: torch"),
    ({"models": {"m": {}}}, "models.m: input_shape and num_classes (or a checkpoint to read them from) are required"),
    ({"models": {}}, "at least one model is required"),
    ({"models": {"m": {"input_shape": [2, 0], "num_classes": 3}}}, "input_shape must be a non-empty list"),
    ({"models": {"m": {"input_shape": [2], "num_classes": 3, "default_deadline_ms": 1e9}}},
     "default_deadline_ms (1e+09) exceeds max_deadline_ms"),
    ({"confidence_exit": ["x"]}, "confidence_exit names ['x'], which are not served models"),
])
def test_config_errors_name_the_key_and_what_to_fix(change, message):
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, **change}, "ray_config.yaml")
    assert str(info.value).startswith("ray_config.yaml: ")
    assert message in str(info.value)


def test_config_resolves_relative_paths_against_base_dir(tmp_path):
    cfg = parse_config({**BASE, "base_dir": str(tmp_path)})
    assert cfg.profile_path == tmp_path / "p.json"
    assert cfg.missing_files() == [f"profile: {tmp_path / 'p.json'}"]


# -- /v1 bad-input matrix -----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "status", "code", "says"), [
    (b"{not json", 400, "malformed_json", "not valid JSON"),
    (b"{\"model\": \"\xff\"}", 400, "malformed_json", "not UTF-8"),
    ([1, 2], 422, "bad_request", "must be a JSON object"),
    ({"model": "m", "inputs": GOOD, "extra": 1}, 422, "bad_request", "unknown field(s) ['extra']"),
    ({"inputs": GOOD}, 422, "bad_request", "'model' must be one of ['m', 'nodefault']"),
    ({"model": "zzz", "inputs": GOOD}, 404, "unknown_model", "serves ['m', 'nodefault']"),
    ({"model": "m"}, 422, "bad_input", "shaped [2, 3]"),
    ({"model": "m", "inputs": [1, 2, 3]}, 422, "bad_input", "shape [3]; model 'm' expects one sample shaped [2, 3]"),
    ({"model": "m", "inputs": [[1, 2, 3], [4, 5]]}, 422, "bad_input", "ragged"),
    ({"model": "m", "inputs": [["a", "b", "c"], [4, 5, 6]]}, 422, "bad_input", "strings"),
    ({"model": "m", "inputs": [[True, False, True], [1, 1, 1]]}, 422, "bad_input", "booleans"),
    ({"model": "m", "inputs": "abc"}, 422, "bad_input", "got str"),
    ({"model": "m", "inputs": [[1, 2, 1e39], [4, 5, 6]]}, 422, "bad_input", "beyond float32"),
    ({"model": "m", "inputs": [[1, 2, 10**30], [4, 5, 6]]}, 422, "bad_input", "non-numeric"),
    ({"model": "m", "inputs": GOOD, "deadline_ms": -5}, 422, "bad_deadline", "finite number > 0"),
    ({"model": "m", "inputs": GOOD, "deadline_ms": 0}, 422, "bad_deadline", "finite number > 0"),
    ({"model": "m", "inputs": GOOD, "deadline_ms": 1e12}, 422, "bad_deadline", "exceeds the limit of 60000 ms"),
    ({"model": "m", "inputs": GOOD, "deadline_ms": "50"}, 422, "bad_deadline", "got str"),
    ({"model": "m", "inputs": GOOD, "deadline_ms": True}, 422, "bad_deadline", "got bool"),
    ({"model": "nodefault", "inputs": [1, 2, 3, 4]}, 422, "bad_deadline", "a deadline is required"),
    ({"model": "m", "inputs": GOOD, "request_id": "x" * 500}, 422, "bad_request", "request_id"),
])
def test_v1_bad_input_matrix(body, status, code, says):
    err = refused(v1, body)
    assert (err.status, err.code) == (status, code)
    assert says in err.message


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_inf_are_refused_in_inputs_and_deadlines(literal):
    err = refused(v1, b'{"model": "m", "inputs": [[1, 2, ' + literal + b'], [4, 5, 6]]}')
    assert (err.status, err.code) == (422, "bad_input") and "NaN or infinite" in err.message and "[2, 3]" in err.message
    err = refused(v1, b'{"model": "m", "inputs": [[1, 2, 3], [4, 5, 6]], "deadline_ms": ' + literal + b"}")
    assert (err.status, err.code) == (422, "bad_deadline")


def test_deadline_comes_from_body_then_header_then_model_default():
    assert v1({"model": "m", "inputs": GOOD, "deadline_ms": 7}, {"x-request-deadline-ms": "9"}).deadline_ms == 7
    assert v1({"model": "m", "inputs": GOOD}, {"x-request-deadline-ms": "9.5"}).deadline_ms == 9.5
    assert v1({"model": "m", "inputs": GOOD}).deadline_ms == 50.0
    for bad in ("abc", "nan", "-1", "0"):
        assert refused(v1, {"model": "m", "inputs": GOOD}, {"x-request-deadline-ms": bad}).code == "bad_deadline"


def test_the_send_time_header_is_optional_and_checked():
    assert v1({"model": "m", "inputs": GOOD}).sent_at_unix_s is None
    assert v1({"model": "m", "inputs": GOOD}, {"x-request-sent-at": "1764624000.25"}).sent_at_unix_s == 1764624000.25
    raw = json.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": list(range(6))}]})
    assert parse_v2("m", raw.encode(), {"x-request-sent-at": "17.5"}, CATALOG, max_deadline_ms=60_000,
                    max_samples=4).sent_at_unix_s == 17.5
    for bad in ("soon", "nan", "inf", "-1", "0", ""):
        err = refused(v1, {"model": "m", "inputs": GOOD}, {"x-request-sent-at": bad})
        assert (err.status, err.code) == (422, "bad_sent_at") and "Unix seconds" in err.message


def test_a_good_v1_call_is_one_float32_sample():
    c = v1({"model": "m", "inputs": GOOD, "deadline_ms": 20, "request_id": "abc"})
    assert c.samples.shape == (1, 2, 3) and c.samples.dtype == np.float32 and c.request_id == "abc"
    assert not c.batched


# -- /v2 (Open Inference Protocol) ------------------------------------------------------------------------

def v2(tensor: dict, **body) -> InferCall:
    raw = json.dumps({"inputs": [tensor], **body}).encode()
    return parse_v2("m", raw, {}, CATALOG, max_deadline_ms=60_000, max_samples=4)


def test_v2_accepts_one_sample_or_a_batch_flat_or_nested():
    one = v2({"name": "x", "shape": [2, 3], "datatype": "FP32", "data": list(range(6))},
             parameters={"deadline_ms": 30})
    assert one.samples.shape == (1, 2, 3) and not one.batched and one.deadline_ms == 30
    batch = v2({"name": "x", "shape": [3, 2, 3], "datatype": "INT64", "data": [GOOD] * 3}, id="b1")
    assert batch.samples.shape == (3, 2, 3) and batch.batched and batch.request_id == "b1"


@pytest.mark.parametrize(("tensor", "says"), [
    ({"shape": [2, 3], "datatype": "BYTES", "data": ["a"] * 6}, "not numeric; send FP32"),
    ({"shape": [3, 2], "datatype": "FP32", "data": list(range(6))}, "expected [2, 3] or [N, 2, 3] with N <= 4"),
    ({"shape": [5, 2, 3], "datatype": "FP32", "data": list(range(30))}, "batch of 5 samples exceeds the limit of 4"),
    ({"shape": [2, 3], "datatype": "FP32", "data": list(range(5))}, "holds 5 values but shape [2, 3] needs 6"),
    ({"shape": [2, 3], "datatype": "FP32"}, "no 'data'"),
    ({"shape": "2x3", "datatype": "FP32", "data": []}, "'shape' must be a list of integers"),
])
def test_v2_bad_tensors_name_the_expected_shape(tensor, says):
    err = refused(v2, tensor)
    assert (err.status, err.code) == (422, "bad_input") and says in err.message


def test_v2_unknown_model_is_404_with_the_model_list():
    err = refused(parse_v2, "zzz", b"{}", {}, CATALOG, 60_000, 4)
    assert err.status == 404 and err.extra == {"models": ["m", "nodefault"]}


# -- responses --------------------------------------------------------------------------------------------

def result(outcome: Outcome, reason: str | None = None, **kw) -> RequestResult:
    return RequestResult(Request("r", "m", 0.0, 0.05), outcome, reason=reason, **kw)


@pytest.mark.parametrize(("outcome", "reason", "status", "retry"), [
    (Outcome.MET, None, 200, False), (Outcome.LATE, None, 200, False),
    (Outcome.REJECTED, "queue_full", 503, True), (Outcome.REJECTED, "deadline_infeasible", 503, False),
    (Outcome.REJECTED, "shutdown", 503, True), (Outcome.DROPPED, "deadline_unreachable", 504, False),
    (Outcome.FAILED, "slot_failed: ValueError: x", 500, False), (Outcome.FAILED, "shutdown", 503, True),
])
def test_outcome_status_codes(outcome, reason, status, retry):
    code, headers = status_of(result(outcome, reason))
    assert code == status and ("Retry-After" in headers) == retry


def test_v2_batch_answer_reports_the_worst_sample_and_per_sample_outputs():
    c = InferCall("m", np.zeros((2, 2, 3), np.float32), 50.0, "b", batched=True)
    done = result(Outcome.MET, finish_s=0.01, exit="e2", batch_size=2, prediction=3, confidence=0.9)
    late = result(Outcome.LATE, finish_s=0.07, exit="e1", batch_size=2, prediction=4, confidence=0.5)
    status, body, _ = v2_response(c, [done, late])
    assert status == 200 and body["outcome"] == "LATE" and body["latency_ms"] == 70.0
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    assert outputs["outcome"] == ["MET", "LATE"] and outputs["prediction"] == [3, 4] and outputs["exit"] == ["e2", "e1"]
    assert outputs["batch_size"] == [2, 2] and outputs["reason"] == ["", ""]
    assert outputs["latency_ms"] == [10.0, 70.0] and outputs["queue_ms"] == [-1.0, -1.0]  # no queue time given


def test_edge_errors_carry_outcome_reason_and_expected_shape():
    status, body = error_response(InputError(422, "bad_input", "wrong", "m"), None, (2, 3))
    assert status == 422 and body["outcome"] == "REJECTED" and body["reason"] == "bad_input"
    assert body["expected_shape"] == [2, 3] and body["error"] == "wrong"
