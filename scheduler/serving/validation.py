"""Request validation at the edge: everything a client sends is checked here, before any queue.

Each problem raises ``InputError`` with the HTTP status, a short machine-readable ``code`` (the
response's ``reason`` and a bounded metrics label) and a message that names what was wrong and
what was expected. Only validated data leaves this module: float32 arrays of the model's shape
and a finite, positive, bounded deadline.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scheduler.serving.catalog import ServedModel

DEADLINE_HEADER = "x-request-deadline-ms"
# Deadline propagation: the client's wall-clock send time (Unix seconds). The worker then counts the
# deadline from the send, not from its own receipt, so the time a request lost on the way (the client's
# event loop, the proxy, the replica's accept queue) is no longer invisible to the scheduler.
SENT_AT_HEADER = "x-request-sent-at"
MAX_REQUEST_ID_CHARS = 128
# Open Inference Protocol datatypes we accept for the input tensor; all are converted to float32.
NUMERIC_DATATYPES = ("FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32")


class InputError(ValueError):
    """A request the worker refuses at the edge (it never enters a queue)."""

    def __init__(self, status: int, code: str, message: str, model: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # bounded vocabulary: metrics label and response "reason"
        self.message = message
        self.model = model  # the model it named, when that model exists
        self.extra = dict(extra or {})  # extra response fields (e.g. the list of models)


@dataclass(frozen=True, slots=True)
class InferCall:
    """One validated call: ``samples`` holds N >= 1 samples, each one engine request."""

    model: str
    samples: np.ndarray  # float32, shape (N, *input_shape)
    deadline_ms: float  # relative, counted from when the replica received the call (or from sent_at_unix_s)
    request_id: str
    batched: bool  # True when the client sent an explicit batch dimension (Open Inference Protocol)
    sent_at_unix_s: float | None = None  # header X-Request-Sent-At: the deadline counts from here instead


def decode_json(body: bytes) -> Any:
    """The parsed body, or a 400 naming where the JSON breaks."""
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise InputError(400, "malformed_json", "request body is not UTF-8 text; send a JSON object") from None
    except json.JSONDecodeError as exc:
        raise InputError(400, "malformed_json", f"request body is not valid JSON: {exc.msg} at line {exc.lineno}, "
                                                f"column {exc.colno}") from None
    except RecursionError:  # "[[[[..." nested past the interpreter's recursion limit
        raise InputError(400, "malformed_json", "request body nests JSON arrays or objects too deeply; send a JSON "
                                                "object whose inputs nest like the model's input_shape") from None
    except ValueError as exc:  # e.g. an integer literal of thousands of digits (Python's int conversion limit)
        raise InputError(400, "malformed_json", f"request body holds a value JSON parsing refused: "
                                                f"{str(exc)[:120]}") from None


def parse_v1(body: bytes, headers: Mapping[str, str], catalog: Mapping[str, ServedModel],
             max_deadline_ms: float) -> InferCall:
    """``POST /v1/infer``: ``{"model", "inputs" (one sample), "deadline_ms"?, "request_id"?}``."""
    data = decode_json(body)
    if not isinstance(data, dict):
        raise InputError(422, "bad_request", f"request body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"model", "inputs", "deadline_ms", "request_id"})
    if unknown:
        raise InputError(422, "bad_request", f"unknown field(s) {unknown}; allowed: model, inputs, deadline_ms, "
                                             "request_id")
    model = lookup_model(data.get("model"), catalog)
    request_id = parse_request_id(data.get("request_id"))
    deadline_ms = parse_deadline(data.get("deadline_ms"), headers.get(DEADLINE_HEADER), model, max_deadline_ms)
    sent_at = parse_sent_at(headers.get(SENT_AT_HEADER), model)
    if "inputs" not in data:
        raise InputError(422, "bad_input", f"missing field 'inputs': a nested list shaped {list(model.input_shape)}",
                         model.name)
    sample = to_sample(data["inputs"], model)
    return InferCall(model.name, sample[None], deadline_ms, request_id, batched=False, sent_at_unix_s=sent_at)


def parse_v2(model_name: str, body: bytes, headers: Mapping[str, str], catalog: Mapping[str, ServedModel],
             max_deadline_ms: float, max_samples: int) -> InferCall:
    """``POST /v2/models/{model}/infer`` (Open Inference Protocol), one input tensor.

    The tensor's shape is one sample (``input_shape``) or a batch (``[N, *input_shape]``, N up to
    ``max_samples``); ``data`` is flat (row-major) or nested. ``parameters.deadline_ms`` carries
    the deadline (or the header, or the model's default).
    """
    model = lookup_model(model_name, catalog)
    data = decode_json(body)
    if not isinstance(data, dict):
        raise InputError(422, "bad_request", f"request body must be a JSON object, got {type(data).__name__}",
                         model.name)
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise InputError(422, "bad_request", "'parameters' must be an object", model.name)
    request_id = parse_request_id(data.get("id"))
    deadline_ms = parse_deadline(params.get("deadline_ms"), headers.get(DEADLINE_HEADER), model, max_deadline_ms)
    sent_at = parse_sent_at(headers.get(SENT_AT_HEADER), model)
    inputs = data.get("inputs")
    expected = f"[{_dims(model.input_shape)}] or [N, {_dims(model.input_shape)}] with N <= {max_samples}"
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InputError(422, "bad_input", f"'inputs' must be a list of exactly one tensor object "
                                           f"{{name, shape, datatype, data}} shaped {expected}", model.name)
    tensor = inputs[0]
    datatype = tensor.get("datatype")
    if datatype not in NUMERIC_DATATYPES:
        raise InputError(422, "bad_input", f"datatype {datatype!r} is not numeric; send FP32 (accepted: "
                                           f"{', '.join(NUMERIC_DATATYPES)})", model.name)
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise InputError(422, "bad_input", f"'shape' must be a list of integers, {expected}", model.name)
    if tuple(shape) == model.input_shape:
        n, batched = 1, False
    elif len(shape) == len(model.input_shape) + 1 and tuple(shape[1:]) == model.input_shape and shape[0] >= 1:
        n, batched = shape[0], True
        if n > max_samples:
            raise InputError(422, "bad_input", f"batch of {n} samples exceeds the limit of {max_samples} per "
                                               f"request; shape must be {expected}", model.name)
    else:
        raise InputError(422, "bad_input", f"shape {shape} does not fit model {model.name!r}: expected {expected}",
                         model.name)
    if "data" not in tensor:
        raise InputError(422, "bad_input", "the input tensor has no 'data'", model.name)
    arr = _numeric_array(tensor["data"], model)
    if arr.size != n * model.input_size:
        raise InputError(422, "bad_input", f"'data' holds {arr.size} values but shape {shape} needs "
                                           f"{n * model.input_size}", model.name)
    samples = _finite_float32(arr.reshape((n, *model.input_shape)), model)
    return InferCall(model.name, samples, deadline_ms, request_id, batched=batched, sent_at_unix_s=sent_at)


def lookup_model(name: Any, catalog: Mapping[str, ServedModel]) -> ServedModel:
    if not isinstance(name, str) or not name:
        raise InputError(422, "bad_request", f"'model' must be one of {list(catalog)}",
                         extra={"models": list(catalog)})
    model = catalog.get(name)
    if model is None:
        raise InputError(404, "unknown_model", f"unknown model {name[:100]!r}; this server serves {list(catalog)}",
                         extra={"models": list(catalog)})
    return model


def parse_request_id(value: Any) -> str:
    if value is None:
        return uuid.uuid4().hex
    if not isinstance(value, str) or not 0 < len(value) <= MAX_REQUEST_ID_CHARS or not value.isprintable():
        raise InputError(422, "bad_request", f"request_id must be a printable string of 1-{MAX_REQUEST_ID_CHARS} "
                                             "characters")
    return value


def parse_deadline(body_value: Any, header_value: str | None, model: ServedModel, max_deadline_ms: float) -> float:
    """The relative deadline in ms: the body's, else the header's, else the model's default."""
    where = "deadline_ms"
    if body_value is None and header_value is not None:
        where = "header X-Request-Deadline-Ms"
        try:
            body_value = float(header_value)
        except ValueError:
            raise InputError(422, "bad_deadline", f"{where} must be a number of milliseconds, got "
                                                  f"{header_value[:40]!r}", model.name) from None
    if body_value is None:
        if model.default_deadline_ms is None:
            raise InputError(422, "bad_deadline", f"a deadline is required for model {model.name!r}: send "
                                                  "deadline_ms or the X-Request-Deadline-Ms header", model.name)
        return model.default_deadline_ms
    if isinstance(body_value, bool) or not isinstance(body_value, (int, float)):
        raise InputError(422, "bad_deadline", f"{where} must be a number of milliseconds, got "
                                              f"{type(body_value).__name__}", model.name)
    try:
        value = float(body_value)
    except OverflowError:  # an integer too large for a float
        raise InputError(422, "bad_deadline", f"{where} is too large: the limit is {max_deadline_ms:g} ms",
                         model.name) from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(422, "bad_deadline", f"{where} must be a finite number > 0 ms, got {value!r}", model.name)
    if value > max_deadline_ms:
        raise InputError(422, "bad_deadline", f"{where} of {value:g} ms exceeds the limit of {max_deadline_ms:g} ms",
                         model.name)
    return value


def parse_sent_at(header_value: str | None, model: ServedModel) -> float | None:
    """The client's send time from header X-Request-Sent-At (Unix seconds, e.g. ``1764624000.123456``),
    or None without the header."""
    if header_value is None:
        return None
    try:
        value = float(header_value)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InputError(422, "bad_sent_at", f"header X-Request-Sent-At must be the send time in Unix seconds "
                                             f"(a finite number > 0), got {header_value[:40]!r}", model.name)
    return value


def to_sample(inputs: Any, model: ServedModel) -> np.ndarray:
    """One sample of ``model`` as float32, from a nested list shaped ``input_shape``."""
    arr = _numeric_array(inputs, model)
    if arr.shape != model.input_shape:
        raise InputError(422, "bad_input", f"inputs has shape {list(arr.shape)}; model {model.name!r} expects one "
                                           f"sample shaped {list(model.input_shape)} (float32)", model.name)
    return _finite_float32(arr, model)


def _numeric_array(data: Any, model: ServedModel) -> np.ndarray:
    expected = f"a nested list of numbers shaped {list(model.input_shape)}"
    if not isinstance(data, list):
        raise InputError(422, "bad_input", f"inputs must be {expected}, got {type(data).__name__}", model.name)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):  # ragged nesting
        raise InputError(422, "bad_input", f"inputs must be {expected}; the nesting is ragged", model.name) from None
    if arr.dtype.kind not in "iuf" or _contains_bool(data):  # numpy turns [True, 2] into numbers
        what = {"U": "strings", "O": "mixed or non-numeric values"}.get(arr.dtype.kind, "booleans")
        raise InputError(422, "bad_input", f"inputs must be {expected}; got {what}", model.name)
    return arr


def _contains_bool(data: list) -> bool:
    """Whether a regular nested list (numpy accepted it as numeric) holds a JSON true/false."""
    stack = [data]
    while stack:
        x = stack.pop()
        if x and type(x[0]) is list:
            stack.extend(x)
        elif bool in map(type, x):
            return True
    return False


def _finite_float32(arr: np.ndarray, model: ServedModel) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InputError(422, "bad_input", f"inputs contain NaN or infinite values (or values beyond float32); "
                                           f"model {model.name!r} expects finite float32 shaped "
                                           f"{list(model.input_shape)}", model.name)
    return out


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(d) for d in shape)
