"""Pydantic models of the HTTP API, for the OpenAPI schema (``GET /openapi.json``, ``/docs``).

The handlers parse bodies themselves (``validation.py``) so that every refusal has the same
body, counts as REJECTED and never enters a queue; these models document exactly what they accept.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from scheduler.serving.validation import MAX_REQUEST_ID_CHARS, NUMERIC_DATATYPES

OutcomeName = Literal["MET", "LATE", "REJECTED", "DROPPED", "FAILED"]


class InferRequest(BaseModel):
    """One sample for one model. The deadline counts from when the worker replica receives the request."""

    model: str = Field(description="a served model (GET /v1/models lists them)")
    inputs: list[Any] = Field(description="one sample: a nested list of numbers shaped like the model's input_shape")
    deadline_ms: float | None = Field(
        None, gt=0, description="relative deadline in ms (else header X-Request-Deadline-Ms, else the model's default)")
    request_id: str | None = Field(None, min_length=1, max_length=MAX_REQUEST_ID_CHARS,
                                   description="echoed back; generated when absent")


class InferResponse(BaseModel):
    """The answer to one request, whatever its outcome."""

    request_id: str | None
    model: str | None
    outcome: OutcomeName = Field(description="MET, LATE (200), REJECTED (503), DROPPED (504) or FAILED (500)")
    reason: str | None = Field(description="why it was not MET/LATE: queue_full, deadline_infeasible, ...")
    exit: str | None = Field(None, description="the exit the sample actually left at")
    batch_size: int | None = Field(None, description="samples in the slot that ran it")
    latency_ms: float | None = Field(None, description="received by the worker -> answer ready")
    queue_ms: float | None = Field(None, description="received -> its slot started")
    slot_ms: float | None = Field(None, description="measured time of its slot")
    deadline_ms: float | None = Field(None, description="the relative deadline it was scheduled with")
    deadline_met: bool = False
    prediction: int | None = Field(None, description="predicted class (null when serving a profile without weights)")
    confidence: float | None = Field(None, description="max softmax probability of the prediction")


class ErrorResponse(BaseModel):
    """A request refused at the edge (bad input); it never entered a queue and counts as REJECTED."""

    request_id: str | None
    model: str | None
    outcome: Literal["REJECTED"]
    reason: str = Field(description="malformed_json, bad_request, unknown_model, bad_input, bad_deadline, "
                                    "payload_too_large, body_timeout, client_disconnected")
    error: str = Field(description="what was wrong and what was expected")
    deadline_met: bool = False
    expected_shape: list[int] | None = Field(None, description="the model's input_shape, when the model is known")
    models: list[str] | None = Field(None, description="the served models (unknown model)")


class ModelInfo(BaseModel):
    name: str
    exits: list[str] = Field(description="shallowest first")
    input_shape: list[int]
    dtype: Literal["float32"]
    num_classes: int
    accuracy: dict[str, float] = Field(description="exit -> accuracy on the test split")
    latency_ms: dict[str, dict[str, float]] = Field(description="exit -> batch size -> profiled ms (planning quantile)")
    default_deadline_ms: float | None
    platform: str


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class V2Tensor(BaseModel):
    name: str = "input"
    shape: list[int] = Field(description="input_shape, or [N, *input_shape] for a batch of N samples")
    datatype: Literal[NUMERIC_DATATYPES] = Field("FP32", description="converted to float32")  # type: ignore[valid-type]
    data: list[Any] = Field(description="values, flat in row-major order or nested")


class V2Parameters(BaseModel):
    deadline_ms: float | None = Field(None, gt=0, description="relative deadline in ms, per sample")


class V2InferRequest(BaseModel):
    """Open Inference Protocol (KServe v2) request with one input tensor."""

    id: str | None = Field(None, max_length=MAX_REQUEST_ID_CHARS)
    parameters: V2Parameters | None = None
    inputs: list[V2Tensor] = Field(min_length=1, max_length=1)


class V2OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class V2InferResponse(InferResponse):
    """Per-sample ``outputs`` (outcome, reason, exit, batch_size, latency_ms, queue_ms, slot_ms, prediction,
    confidence; -1 or "" where a sample has none) plus the contract's fields; for a batch the top-level
    outcome is the worst sample's."""

    model_name: str
    model_version: str
    id: str
    outputs: list[V2OutputTensor]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]
    parameters: dict[str, Any]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool
    reason: str | None = None
