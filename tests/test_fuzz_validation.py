"""Fuzzing the edge without Ray: whatever bytes arrive, validation answers a clear 4xx or hands on
clean data, and every answer body is valid JSON.

Property: ``parse_v1`` / ``parse_v2`` either return a call whose samples are finite float32 of the
model's shape with a deadline in (0, max_deadline_ms], or raise ``InputError`` with a 4xx status,
a code from the documented vocabulary and a message. Anything else would reach the replica's
catch-all as a 500. Inputs: arbitrary bytes, arbitrary JSON documents, near-valid requests with
hostile values, and the shapes hypothesis and schemathesis found (deep nesting, huge integers).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.serving.catalog import ServedModel
from scheduler.serving.responses import error_response, sample_body, v1_response, v2_response
from scheduler.serving.validation import InferCall, InputError, parse_v1, parse_v2
from scheduler.types import Outcome, Request, RequestResult

MODEL = ServedModel("m", ("e1", "e2"), (2, 3), 10, {"e1": 0.5, "e2": 0.9}, 50.0, {}, "profile")
NO_DEFAULT = ServedModel("n", ("e1",), (4,), 3, {"e1": 0.5}, None, {}, "profile")
CATALOG = {"m": MODEL, "n": NO_DEFAULT}
MAX_DEADLINE_MS = 60_000.0
MAX_SAMPLES = 4
CODES = {"malformed_json", "bad_request", "unknown_model", "bad_input", "bad_deadline"}
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=6)), max_leaves=40)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-10**30, max_value=10**30))
nested = st.recursive(numbers, lambda inner: st.lists(inner, min_size=0, max_size=4), max_leaves=30)
near_v1 = st.fixed_dictionaries({"model": st.sampled_from(["m", "n", "zzz", "", 3]),
                                 "inputs": st.one_of(nested, json_values)},
                                optional={"deadline_ms": st.one_of(numbers, json_scalars),
                                          "request_id": json_scalars})
tensor = st.fixed_dictionaries({"name": st.text(max_size=5),
                                "shape": st.one_of(st.lists(st.integers(-3, 10**20), max_size=4), json_values),
                                "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "FP16", "bogus", 7]),
                                "data": st.one_of(nested, json_values)})
near_v2 = st.fixed_dictionaries({"inputs": st.one_of(st.lists(tensor, max_size=2), json_values)},
                                optional={"parameters": st.one_of(st.fixed_dictionaries(
                                    {"deadline_ms": st.one_of(numbers, json_scalars)}), json_values),
                                    "id": json_scalars})


def check(parse, body: bytes, headers: dict | None = None) -> None:
    try:
        call = parse(body, headers or {})
    except InputError as err:
        assert 400 <= err.status < 500 and err.code in CODES and err.message, (err.status, err.code, err.message)
        status, answer = error_response(err, None, MODEL.input_shape)
        json.dumps(answer, allow_nan=False)  # what the replica sends must be JSON
        assert status == err.status
        return
    assert isinstance(call, InferCall)
    model = CATALOG[call.model]
    assert call.samples.dtype == np.float32 and call.samples.shape[1:] == model.input_shape
    assert 1 <= call.samples.shape[0] <= MAX_SAMPLES and np.isfinite(call.samples).all()
    assert 0 < call.deadline_ms <= MAX_DEADLINE_MS and math.isfinite(call.deadline_ms)


def v1(body: bytes, headers: dict) -> InferCall:
    return parse_v1(body, headers, CATALOG, MAX_DEADLINE_MS)


def v2(body: bytes, headers: dict) -> InferCall:
    return parse_v2("m", body, headers, CATALOG, MAX_DEADLINE_MS, MAX_SAMPLES)


def dumps(value) -> bytes:
    return json.dumps(value).encode()  # NaN/Infinity literals included: Python's json reads them back


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(body):
    check(v1, body)
    check(v2, body)


@FUZZ
@given(json_values)
def test_arbitrary_json_documents(doc):
    check(v1, dumps(doc))
    check(v2, dumps(doc))


@FUZZ
@given(near_v1, st.one_of(st.none(), st.text(max_size=12)))
def test_near_valid_v1_requests(body, header):
    check(v1, dumps(body), {} if header is None else {"x-request-deadline-ms": header})


@FUZZ
@given(near_v2)
def test_near_valid_v2_requests(body):
    check(v2, dumps(body))


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,  # nesting past the recursion limit: was a RecursionError (500)
    b'{"model": "m", "inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"model": "m", "inputs": [[1, 2, ' + b"7" * 5000 + b"], [4, 5, 6]]}",  # int past Python's digit limit: was 500
    b'{"model": "m", "inputs": [[1, 2, 3], [4, 5, 6]], "deadline_ms": 1' + b"0" * 400 + b"}",  # OverflowError: was 500
    b'{"model": "m", "inputs": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}",  # deeper than numpy's 64 dimensions
    b'{"model": "\\ud800", "inputs": []}',  # a lone surrogate, echoed in the error
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
])
def test_hostile_bodies_found_by_fuzzing_get_a_4xx(body):
    check(v1, body)
    check(v2, body)


def test_answers_stay_json_when_a_model_overflows_to_nan():
    """A finite float32 input of 3e38 passes validation and overflows a network to NaN logits: the
    answer reports no confidence rather than failing to encode (was a 500 after the outcome counted)."""
    req = Request("r", "m", 0.0, 1.0)
    nan = RequestResult(req, Outcome.MET, finish_s=0.01, exit="e2", batch_size=1, prediction=0,
                        confidence=float("nan"), slot_ms=float("inf"))
    assert sample_body(nan, 50.0)["confidence"] is None and sample_body(nan, 50.0)["slot_ms"] is None
    call = InferCall("m", np.zeros((2, 2, 3), np.float32), 50.0, "x", batched=True)
    for body in (v1_response(InferCall("m", np.zeros((1, 2, 3), np.float32), 50.0, "x", False), [nan])[1],
                 v2_response(call, [nan, nan])[1]):
        json.dumps(body, allow_nan=False)
