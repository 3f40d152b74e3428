"""The HTTP API and the Ray Serve deployment: the ingress replica *is* the worker (proxy -> one replica).

Deadlines: a request's deadline is absolute on the replica's monotonic clock (``time.monotonic``
through ``RealClock``), counted from the moment the replica's handler receives the request,
before its body is read; time spent in the client, the network and the Serve proxy before that
is not counted, and ``latency_ms`` is measured on the same clock from the same moment. A client
that sends ``X-Request-Sent-At`` (deadline propagation) has that time taken off its budget instead
(``WorkerCore.infer``).
"""

# No `from __future__ import annotations` here: FastAPI must see the handlers' real parameter types.

import asyncio
import copy
import functools
import logging
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from ray import serve
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest

from scheduler.serving import responses, schemas
from scheduler.serving.config import parse_config
from scheduler.serving.validation import InferCall, InputError, parse_v1, parse_v2
from scheduler.serving.worker import WorkerCore

# Under "ray.serve": Serve's handlers write these lines to the replica's log file (else INFO is dropped).
log = logging.getLogger("ray.serve.edgeserving.api")

WORKER_HEADER = "X-Edgeserving-Worker"
_ERRORS = {
    400: {"model": schemas.ErrorResponse, "description": "malformed JSON"},
    408: {"model": schemas.ErrorResponse, "description": "body not received within body_timeout_ms of the headers"},
    404: {"model": schemas.ErrorResponse, "description": "unknown model (the body lists the served models)"},
    413: {"model": schemas.ErrorResponse, "description": "body over max_payload_bytes"},
    422: {"model": schemas.ErrorResponse, "description": "bad shape, dtype, NaN/inf, bad deadline or send time "
                                                         "(the body names the expected shape)"},
}
_OUTCOMES = {
    500: {"model": schemas.InferResponse, "description": "FAILED: the slot raised, or no answer in time"},
    503: {"model": schemas.InferResponse, "description": "REJECTED at admission: queue_full (with Retry-After), "
                                                         "deadline_infeasible, shutdown"},
    504: {"model": schemas.InferResponse, "description": "DROPPED by the policy (deadline unreachable)"},
}
_EXTRA_SCHEMAS: dict[str, Any] = {}


def _body(model: type) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body the handler parses itself."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    _EXTRA_SCHEMAS.update(schema.pop("$defs", {}))
    _EXTRA_SCHEMAS[model.__name__] = schema
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


app = FastAPI(
    title="edgeserving",
    version="0.1.0",
    summary="Deadline-aware serving of early-exit DNNs: every request ends MET, LATE, REJECTED, DROPPED or FAILED.",
    description="Each request carries a deadline (ms, counted from when the worker replica receives it, or from the "
                "client's send time in header X-Request-Sent-At, Unix seconds, where it sends one). The worker "
                "schedules time-division slots (model, exit depth, batch) to meet deadlines; see the README.",
)


def _openapi(served: dict[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """The schema, with the hand-parsed request bodies and, inside a worker, the served models (name ->
    input shape) as enums and a valid example request for the first one (the docs' "try it out"
    and a fuzzer's explicit cases then reach a model)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                             description=app.description, routes=app.routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(copy.deepcopy(_EXTRA_SCHEMAS))
        if served:
            names = list(served)
            schemas["InferRequest"]["properties"]["model"]["enum"] = names
            for path in ("/v2/models/{model}/infer", "/v2/models/{model}"):
                for operation in schema["paths"][path].values():
                    for param in operation.get("parameters", []):
                        if param["name"] == "model":
                            param["schema"]["enum"] = names
                            param["example"] = names[0]
            _set_examples(schema["paths"], names[0], served[names[0]])
        app.openapi_schema = schema
    return app.openapi_schema


def _set_examples(paths: dict[str, Any], model: str, shape: tuple[int, ...]) -> None:
    zeros: Any = 0.0
    for d in reversed(shape):
        zeros = [zeros] * d
    examples = {
        "/v1/infer": {"model": model, "inputs": zeros, "deadline_ms": 1000.0, "request_id": "example-1"},
        "/v2/models/{model}/infer": {"id": "example-1", "parameters": {"deadline_ms": 1000.0}, "inputs": [
            {"name": "input", "shape": [1, *shape], "datatype": "FP32", "data": [zeros]}]},
    }
    for path, example in examples.items():
        paths[path]["post"]["requestBody"]["content"]["application/json"]["example"] = example


app.openapi = _openapi  # type: ignore[method-assign]


def default_metrics_dir(app_name: str) -> Path:
    """One directory per Ray node and application: the node's workers share it, other clusters do not."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    return Path(tempfile.gettempdir()) / "edgeserving-metrics" / node[:16] / (app_name or "default")


async def read_body(request: HttpRequest, limit: int, timeout_s: float) -> bytes:
    """The body, refusing (413) as soon as it is known to exceed ``limit`` bytes, and (408) when it has
    not all arrived within ``timeout_s``.

    The bound matters beyond slow clients: when a replica dies, Serve's proxy re-sends the calls it
    had routed there to a surviving replica, but the body was already streamed to the dead one, so
    without a bound the survivor waits for it until the client gives up (seen in the killed-replica
    test: ``POST /v1/infer 400 59993ms``).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InputError(413, "payload_too_large", f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise InputError(413, "payload_too_large", f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise InputError(408, "body_timeout", f"the request body was not received within {timeout_s * 1000:g} ms "
                                              f"of its headers ({size} bytes arrived)") from None
    return b"".join(chunks)


@serve.deployment(name="Worker", max_ongoing_requests=1000, graceful_shutdown_timeout_s=10,
                  ray_actor_options={"num_gpus": 1})
@serve.ingress(app)
class Worker:
    """One worker replica per GPU: every model of the config, one engine, one loop thread."""

    def __init__(self, config: dict[str, Any]) -> None:
        cfg = parse_config(config, "application args")
        ctx = serve.get_replica_context()
        worker_id = ctx.replica_id.unique_id
        metrics_dir = Path(cfg.metrics_dir) if cfg.metrics_dir else default_metrics_dir(ctx.app_name)
        self.core = WorkerCore(cfg, metrics_dir, worker_id)
        self.cfg = cfg
        app.openapi_schema = None  # one worker per process: its schema names the models it serves
        app.openapi = functools.partial(  # type: ignore[method-assign]
            _openapi, {name: m.input_shape for name, m in self.core.catalog.items()})
        log.info("worker %s serving %s on %s (policy %s, metrics in %s)", worker_id, list(self.core.catalog),
                 self.core.device, cfg.policy, metrics_dir)

    # -- inference -----------------------------------------------------------------------------

    @app.post("/v1/infer", response_model=schemas.InferResponse, openapi_extra=_body(schemas.InferRequest),
              responses={**_ERRORS, **_OUTCOMES}, summary="Infer one sample under a deadline")
    async def infer_v1(self, request: HttpRequest) -> JSONResponse:
        arrival_s = self.core.clock.now()  # the deadline counts from here
        call = await self._parse(request, lambda body: parse_v1(body, request.headers, self.core.catalog,
                                                                self.cfg.max_deadline_ms))
        if isinstance(call, JSONResponse):
            return call
        results = await self.core.infer(call, arrival_s)
        return self._answer(*responses.v1_response(call, results))

    @app.post("/v2/models/{model}/infer", response_model=schemas.V2InferResponse,
              openapi_extra=_body(schemas.V2InferRequest), responses={**_ERRORS, **_OUTCOMES},
              summary="Open Inference Protocol: infer one sample or a batch [N, *input_shape]")
    async def infer_v2(self, request: HttpRequest,
                       model: str = PathParam(description="a served model")) -> JSONResponse:
        arrival_s = self.core.clock.now()
        call = await self._parse(request, lambda body: parse_v2(
            model, body, request.headers, self.core.catalog, self.cfg.max_deadline_ms,
            self.cfg.max_samples_per_request))
        if isinstance(call, JSONResponse):
            return call
        results = await self.core.infer(call, arrival_s)
        return self._answer(*responses.v2_response(call, results))

    async def _parse(self, request: HttpRequest, parse: Callable[[bytes], InferCall]) -> InferCall | JSONResponse:
        """The validated call, or the answer refusing it (counted as one request, never queued)."""
        try:
            return parse(await read_body(request, self.cfg.max_payload_bytes, self.cfg.body_timeout_ms / 1000))
        except InputError as err:
            return self._refuse(err)
        except ClientDisconnect:
            return self._refuse(InputError(400, "client_disconnected", "the client went away before sending the body"))
        except Exception as exc:  # a validation bug must still end in one outcome and a JSON answer
            # Where it failed, not the message: an exception's text may quote the request's data.
            log.error("validation failed unexpectedly: %s at\n%s", type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)))
            return self._refuse(InputError(500, "internal_error", "the worker could not validate this request"))

    def _refuse(self, err: InputError) -> JSONResponse:
        self.core.reject_at_edge(err.model, err.code)
        known = self.core.catalog.get(err.model or "")
        status, body = responses.error_response(err, None, known.input_shape if known else None)
        return self._answer(status, body, {})

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers={**headers, WORKER_HEADER: self.core.worker_id})

    # -- metadata and health -------------------------------------------------------------------

    @app.get("/v1/models", response_model=schemas.ModelsResponse, summary="Served models, exits, profile")
    async def list_models(self) -> dict[str, Any]:
        return {"models": [m.describe() for m in self.core.models()]}

    @app.get("/v2/models/{model}", response_model=schemas.V2ModelMetadata, responses={404: _ERRORS[404]},
             summary="Open Inference Protocol model metadata")
    async def model_metadata(self, model: str = PathParam(description="a served model")) -> Any:
        m = self.core.catalog.get(model)
        if m is None:
            served = list(self.core.catalog)
            err = InputError(404, "unknown_model", f"unknown model {model[:100]!r}; this server serves {served}",
                             extra={"models": served})
            return JSONResponse(responses.error_response(err, None, None)[1], status_code=404)
        return {"name": m.name, "versions": ["1"], "platform": m.platform,
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *m.input_shape]}],
                "outputs": [{"name": "prediction", "datatype": "INT64", "shape": [-1]},
                            {"name": "confidence", "datatype": "FP32", "shape": [-1]},
                            {"name": "exit", "datatype": "BYTES", "shape": [-1]},
                            {"name": "outcome", "datatype": "BYTES", "shape": [-1]},
                            {"name": "reason", "datatype": "BYTES", "shape": [-1]},
                            {"name": "batch_size", "datatype": "INT32", "shape": [-1]},
                            {"name": "latency_ms", "datatype": "FP64", "shape": [-1]},
                            {"name": "queue_ms", "datatype": "FP64", "shape": [-1]},
                            {"name": "slot_ms", "datatype": "FP64", "shape": [-1]}],
                "parameters": m.describe()}

    @app.get("/v2/health/live", response_model=schemas.Live, summary="The worker process answers")
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", response_model=schemas.Ready, responses={503: {"model": schemas.Ready}},
             summary="The engine loop runs and the worker admits requests")
    async def ready(self) -> Any:
        if self.core.ready:
            return {"ready": True, "reason": None}
        reason = "draining" if self.core.draining else "engine loop stopped"
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics of every worker on this node",
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(self.core.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- Ray Serve hooks -----------------------------------------------------------------------

    def record_routing_stats(self) -> dict[str, Any]:
        """Polled by the Serve controller; the slack-aware router ranks replicas by it."""
        return self.core.routing_stats()

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """``user_config: {draining: true}`` (what ``edgeserving serve`` sends on Ctrl-C) drains the worker."""
        if user_config and user_config.get("draining") and not self.core.draining:
            failed = self.core.drain()
            log.info("worker %s draining: %d queued requests ended FAILED (shutdown)", self.core.worker_id, failed)

    def check_health(self) -> None:
        if not self.core.loop.alive and not self.core.draining:
            raise RuntimeError("the engine loop thread is not running")

    def __del__(self) -> None:
        core = getattr(self, "core", None)
        if core is not None:
            core.shutdown()
