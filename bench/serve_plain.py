"""The baseline of ``bench serve-overhead``: a plain Ray Serve deployment of the same checkpoint.

No engine, no queues, no scheduler: the proxy hands the request to the replica, which parses the
sample, runs the model to its final exit and answers with the prediction and the measured forward
time (the same measurement the torch executor reports as ``slot_ms``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray import serve
from ray.serve import Application
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse


@serve.deployment(name="Plain", max_ongoing_requests=100, ray_actor_options={"num_cpus": 1})
class PlainModel:
    def __init__(self, checkpoint: str, threads: int = 1) -> None:
        import torch

        from models.checkpoint import load_checkpoint

        torch.set_num_threads(threads)
        self.torch = torch
        self.model, self.meta = load_checkpoint(checkpoint)
        with torch.inference_mode():
            self.model(torch.zeros(1, *self.meta.input_shape))

    async def __call__(self, request: HttpRequest) -> JSONResponse:
        body = json.loads(await request.body())
        torch = self.torch
        x = torch.tensor(body["inputs"], dtype=torch.float32).reshape(1, *self.meta.input_shape)
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = self.model(x)
            top, pred = torch.softmax(logits, dim=-1).max(dim=-1)
        slot_ms = (time.perf_counter() - t0) * 1000.0
        return JSONResponse({"prediction": int(pred), "confidence": float(top), "slot_ms": slot_ms})


def build_plain(args: dict[str, Any]) -> Application:
    return PlainModel.bind(args["checkpoint"], int(args.get("threads", 1)))
