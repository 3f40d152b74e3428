"""The plain Ray Serve baseline of ``bench live``: what a user would deploy without edgeserving.

One Serve application per model, each a single deployment that is its own HTTP ingress (a request
crosses the proxy and one replica, as with edgeserving's worker), with a fractional ``num_gpus``
so the models share one GPU, ``@serve.batch`` for dynamic batching and Ray Serve's default
request router. No deadlines, no exits: every request runs the model's final exit, in arrival
order, as soon as a batch forms. A small catalog application at the same prefix answers
``GET /v1/models`` with the same model descriptions edgeserving gives, so the open-loop replayer
drives both the same way (``workloads.replay.areplay_http(..., paths=...)``).

Routes under ``prefix`` (default ``/plain``): ``GET {prefix}/v1/models``,
``POST {prefix}/{model}/v1/infer`` with the body of ``POST /v1/infer``, and
``POST {prefix}/{model}/v2/models/{model}/infer`` with an Open Inference Protocol call of N samples
(``bench live --samples-per-call``): each sample is one item of ``@serve.batch``, as a user batching
per sample would deploy it. The answer follows the HTTP API contract (per-sample ``outputs`` for
v2) so the replayer reads it unchanged; the server knows no deadlines, so its ``outcome`` is always
MET and the replayer judges every request client-side (``judge="client"``).

Batching is set at deploy time and changed live through ``user_config``
(``{"max_batch_size": B, "batch_wait_timeout_s": T}``), so one deployment serves every setting of
a tuning sweep without restarting its replicas.

Two kinds of model deployment (``bench live`` picks the one matching edgeserving's ``executor``):
``PlainBatchedModel`` runs the zoo's checkpoints with torch; ``PlainEmulatedModel`` (``bench live
--emulate``) holds the emulated device (``bench.emulated_device``) that all the plain models share
for each batch's profiled final-exit slot time, and answers no prediction.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve import Application
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse

MODEL_APP_PREFIX = "plain-"  # application names: plain-<model>
CATALOG_APP = "plain-catalog"


@dataclass(frozen=True, slots=True)
class Batching:
    """``@serve.batch`` settings of every model deployment."""

    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.002

    def __post_init__(self) -> None:
        if not (isinstance(self.max_batch_size, int) and self.max_batch_size >= 1):
            raise ValueError(f"max_batch_size must be an int >= 1, got {self.max_batch_size!r}")
        if not 0 <= self.batch_wait_timeout_s <= 1:
            raise ValueError(f"batch_wait_timeout_s must be in [0, 1] s, got {self.batch_wait_timeout_s!r}")

    @classmethod
    def parse(cls, text: str) -> Batching:
        """``B:T_MS``, e.g. ``8:2`` = max_batch_size 8, batch_wait_timeout 2 ms."""
        try:
            b, t = text.split(":")
            return cls(int(b), float(t) / 1000.0)
        except ValueError as exc:
            raise ValueError(f"plain batching {text!r}: expected MAX_BATCH:WAIT_MS such as 8:2 ({exc})") from None

    def label(self) -> str:
        return f"B={self.max_batch_size},wait={self.batch_wait_timeout_s * 1000:g}ms"

    def user_config(self) -> dict[str, Any]:
        return {"max_batch_size": self.max_batch_size, "batch_wait_timeout_s": self.batch_wait_timeout_s}


# Larger than any batch tried: Ray's default (5) would cap batches at 5 and queue the rest at the proxy.
MAX_ONGOING_REQUESTS = 64


class _PlainModel:
    """What every plain model shares: the HTTP handler, ``@serve.batch`` (retuned live through
    ``user_config``) and the answer. A subclass sets ``name``, ``final_exit`` and ``input_shape`` and
    implements ``parse`` (the body's ``inputs`` as one sample) and ``compute`` (one batch's final exit)."""

    name: str
    final_exit: str
    input_shape: tuple[int, ...]

    def parse(self, inputs: Any) -> Any:
        raise NotImplementedError

    async def compute(self, xs: list[Any]) -> tuple[list[int | None], list[float | None], dict[str, float]]:
        """Predictions, confidences and timings: ``slot_ms``; on a shared device also ``wait_ms`` (for the
        device) and ``call_ms`` (the rest of the round trip to it)."""
        raise NotImplementedError

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batching = Batching(int(user_config["max_batch_size"]), float(user_config["batch_wait_timeout_s"]))
        self.run_batch.set_max_batch_size(batching.max_batch_size)
        self.run_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def run_batch(self, items: list[tuple[Any, float]]) -> list[dict[str, Any]]:
        """Run the final exit once on the batch; ``items`` are (sample, arrival on perf_counter)."""
        t0 = time.perf_counter()
        predictions, confidences, timing = await self.compute([x for x, _ in items])
        wait_ms = timing.get("wait_ms", 0.0)  # waiting for a device shared with the other models is queueing
        extra = {"device_wait_ms": wait_ms, "device_call_ms": timing["call_ms"]} if "wait_ms" in timing else {}
        return [{"prediction": p, "confidence": c, "batch_size": len(items), "slot_ms": timing["slot_ms"],
                 "queue_ms": (t0 - arrived) * 1000.0 + wait_ms, **extra}
                for p, c, (_, arrived) in zip(predictions, confidences, items)]

    async def __call__(self, request: HttpRequest) -> JSONResponse:
        arrived = time.perf_counter()
        v2 = "/v2/" in request.url.path
        try:
            body = json.loads(await request.body())
            xs = self._samples_v2(body) if v2 else [self.parse(body["inputs"])]
            for x in xs:
                if tuple(x.shape) != tuple(self.input_shape):
                    raise ValueError(f"inputs of shape {list(x.shape)}; expected {list(self.input_shape)}")
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            return JSONResponse({"request_id": None, "model": self.name, "outcome": "REJECTED",
                                 "reason": f"bad_input: {exc}"[:300]}, status_code=422)
        outs = await asyncio.gather(*(self.run_batch((x, arrived)) for x in xs))
        latency_ms = (time.perf_counter() - arrived) * 1000.0
        top = {"model": self.name, "outcome": "MET", "reason": None, "exit": self.final_exit,
               "latency_ms": latency_ms, "deadline_ms": None, "deadline_met": None}
        if not v2:
            return JSONResponse({"request_id": body.get("request_id"), **top, **outs[0]})
        n = [len(xs)]
        columns = {"outcome": ("BYTES", ["MET"] * len(xs)), "reason": ("BYTES", [""] * len(xs)),
                   "exit": ("BYTES", [self.final_exit] * len(xs)), "latency_ms": ("FP64", [latency_ms] * len(xs)),
                   **{k: (t, [o[k] for o in outs]) for k, t in (("batch_size", "INT32"), ("queue_ms", "FP64"),
                                                               ("slot_ms", "FP64"))}}
        if all(o["prediction"] is not None for o in outs):
            columns["prediction"] = ("INT64", [o["prediction"] for o in outs])
            columns["confidence"] = ("FP32", [o["confidence"] for o in outs])
        return JSONResponse({"id": body.get("id"), "request_id": body.get("id"), **top, "outputs": [
            {"name": k, "datatype": t, "shape": n, "data": data} for k, (t, data) in columns.items()]})

    def _samples_v2(self, body: dict[str, Any]) -> list[Any]:
        """The samples of an OIP call: one input tensor of shape ``[N, *input_shape]``, data flat or nested."""
        import numpy as np

        tensor = body["inputs"][0]
        shape = [int(d) for d in tensor["shape"]]
        if len(shape) != len(self.input_shape) + 1 or shape[0] < 1:
            raise ValueError(f"input shape {shape}; expected [N, {', '.join(map(str, self.input_shape))}]")
        batch = np.asarray(tensor["data"], dtype=np.float32).reshape(shape)
        return [self.parse(sample) for sample in batch]  # parse takes an array as it takes nested lists


@serve.deployment(name="PlainModel", max_ongoing_requests=MAX_ONGOING_REQUESTS)
class PlainBatchedModel(_PlainModel):
    """One model, run to its final exit with torch on batches ``@serve.batch`` forms."""

    def __init__(self, checkpoint: str, threads: int = 1) -> None:
        import torch

        from models.checkpoint import load_checkpoint

        torch.set_num_threads(threads)  # as edgeserving's worker: the proxy keeps a core
        self.torch = torch
        self.model, self.meta = load_checkpoint(checkpoint)
        self.name, self.final_exit, self.input_shape = self.meta.name, self.meta.exits[-1], self.meta.input_shape
        with torch.inference_mode():  # allocate every batch shape once, as the worker's warm-up does
            for b in range(1, 17):
                self.model(torch.zeros(b, *self.meta.input_shape))

    def parse(self, inputs: Any) -> Any:
        return self.torch.tensor(inputs, dtype=self.torch.float32)

    async def compute(self, xs: list[Any]) -> tuple[list[int | None], list[float | None], dict[str, float]]:
        torch = self.torch
        t0 = time.perf_counter()
        with torch.inference_mode():
            top, pred = torch.softmax(self.model(torch.stack(xs)).float(), dim=-1).max(dim=-1)
            predictions, confidences = [int(p) for p in pred.tolist()], [float(c) for c in top.tolist()]
        return predictions, confidences, {"slot_ms": (time.perf_counter() - t0) * 1000.0}


@serve.deployment(name="PlainModel", max_ongoing_requests=MAX_ONGOING_REQUESTS)
class PlainEmulatedModel(_PlainModel):
    """One model on the emulated device (``bench.emulated_device``): each batch holds the one device the
    plain models share for the profile's final-exit slot time of its size, as fractional-``num_gpus``
    replicas time-slice one real GPU. No weights, no predictions."""

    def __init__(self, model: str, final_exit: str, input_shape: list[int], device: str, namespace: str) -> None:
        import numpy as np

        from bench.emulated_device import connect

        self.np = np
        self.name, self.final_exit, self.input_shape = model, final_exit, tuple(input_shape)
        self.device = connect(device, namespace)

    def parse(self, inputs: Any) -> Any:
        return self.np.asarray(inputs, dtype=self.np.float32)

    async def compute(self, xs: list[Any]) -> tuple[list[int | None], list[float | None], dict[str, float]]:
        t0 = time.perf_counter()
        slot = await self.device.run.remote(self.name, self.final_exit, len(xs))
        call_ms = (time.perf_counter() - t0) * 1000.0 - slot["slot_ms"] - slot["wait_ms"]
        return [None] * len(xs), [None] * len(xs), {"slot_ms": slot["slot_ms"], "wait_ms": slot["wait_ms"],
                                                    "call_ms": call_ms}


@serve.deployment(name="PlainCatalog", max_ongoing_requests=16, ray_actor_options={"num_cpus": 0})
class PlainCatalog:
    """``GET /v1/models``: the model descriptions, so clients discover shapes as with edgeserving."""

    def __init__(self, models: Sequence[Mapping[str, Any]]) -> None:
        self.body = {"models": [dict(m) for m in models]}

    async def __call__(self, request: HttpRequest) -> JSONResponse:
        if request.url.path.rstrip("/").endswith("/v1/models"):
            return JSONResponse(self.body)
        await asyncio.sleep(0)
        return JSONResponse({"detail": "only GET /v1/models here; POST {prefix}/{model}/v1/infer infers"},
                            status_code=404)


def build_model(args: dict[str, Any]) -> Application:
    return PlainBatchedModel.bind(args["checkpoint"], int(args.get("threads", 1)))


def build_emulated(args: dict[str, Any]) -> Application:
    return PlainEmulatedModel.bind(args["model"], args["final_exit"], list(args["input_shape"]), args["device"],
                                   args["namespace"])


def build_catalog(args: dict[str, Any]) -> Application:
    return PlainCatalog.bind(args["models"])


def applications(model_args: Mapping[str, Mapping[str, Any]], catalog: Sequence[Mapping[str, Any]],
                 batching: Batching, prefix: str = "/plain", gpus: float = 1.0, cpus: float = 0.25,
                 builder: str = "bench.plain_batched:build_model") -> list[dict[str, Any]]:
    """Serve config ``applications`` entries: the catalog and one app per model.

    ``model_args`` holds each model's builder args (``build_model``: checkpoint and torch threads;
    ``build_emulated``: the model, its final exit, input shape and the emulated device's name).
    The models share ``gpus`` GPUs equally (fractional ``num_gpus``); ``cpus`` is each replica's
    logical CPU share (Ray bookkeeping only: nothing is pinned).
    """
    share = round(gpus / len(model_args), 4)
    apps = [{"name": CATALOG_APP, "route_prefix": prefix, "import_path": "bench.plain_batched:build_catalog",
             "args": {"models": [dict(m) for m in catalog]}}]
    for model, args in model_args.items():
        apps.append({
            "name": f"{MODEL_APP_PREFIX}{model}", "route_prefix": f"{prefix}/{model}",
            "import_path": builder, "args": dict(args),
            "deployments": [{"name": "PlainModel", "num_replicas": 1, "max_ongoing_requests": MAX_ONGOING_REQUESTS,
                             "user_config": batching.user_config(),
                             "ray_actor_options": {"num_gpus": share, "num_cpus": cpus}}],
        })
    return apps


def infer_paths(models: Sequence[str]) -> dict[str, str]:
    """The replayer's POST path per model, relative to the plain prefix's URL."""
    return {m: f"/{m}/v1/infer" for m in models}


def call_paths(paths: Mapping[str, str], samples_per_call: int) -> dict[str, str]:
    """``paths`` (``/v1/infer`` per model, relative or absolute) for calls of ``samples_per_call`` samples:
    unchanged for one, else each model's Open Inference Protocol route beside it."""
    if samples_per_call == 1:
        return dict(paths)
    return {m: p.removesuffix("/v1/infer") + f"/v2/models/{m}/infer" for m, p in paths.items()}
