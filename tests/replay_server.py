"""A small real HTTP server (Starlette on uvicorn, own thread, free port) speaking the /v1 contract.

It answers each ``POST /v1/infer`` according to the requested model's behaviour, after sleeping
``delay_s`` without blocking other requests, and records when each request arrived and how many
were in flight, so tests can check what the replayer really sent and when.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

INPUT_SHAPE = [2, 3]
EXITS = ["early", "final"]

# model -> (status, outcome, reason); "stuck" never answers in time, "badexit" breaks the contract.
BEHAVIOURS = {
    "ok": (200, "MET", None),
    "late": (200, "LATE", None),
    "shed": (504, "DROPPED", "deadline_unreachable"),
    "full": (503, "REJECTED", "queue_full"),
    "crash": (500, "FAILED", "slot_failed: RuntimeError: boom"),
    "garbage": (500, None, None),
    "badexit": (200, "MET", None),
    "stuck": (200, "MET", None),
}


@dataclass
class Record:
    arrived_s: list[float] = field(default_factory=list)  # time.perf_counter() at arrival, per request
    bodies: list[dict] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0


class ReplayTestServer:
    def __init__(self, delay_s: float = 0.0, stuck_s: float = 30.0, policy: str | None = "stub-policy") -> None:
        self.delay_s = delay_s
        self.stuck_s = stuck_s
        self.policy = policy
        self.record = Record()
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1/models", self._models), Route("/v1/infer", self._infer, methods=["POST"])])
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))  # a free port, held from here on: no race with other jobs
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1,
                                backlog=2048)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> ReplayTestServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    async def _models(self, request: Request) -> JSONResponse:
        models = [{"name": name, "exits": EXITS, "input_shape": INPUT_SHAPE, "dtype": "float32", "num_classes": 10,
                   "accuracy": {"early": 0.5, "final": 0.9},
                   "latency_ms": {e: {"1": 1.0, "4": 2.0} for e in EXITS}, "default_deadline_ms": 50.0}
                  for name in BEHAVIOURS]
        body = {"models": models}
        if self.policy:
            body["policy"] = self.policy
        return JSONResponse(body)

    async def _infer(self, request: Request):
        arrived = time.perf_counter()
        body = await request.json()
        with self._lock:
            self.record.arrived_s.append(arrived)
            self.record.bodies.append(body)
            self.record.in_flight += 1
            self.record.peak_in_flight = max(self.record.peak_in_flight, self.record.in_flight)
        try:
            model = body["model"]
            await asyncio.sleep(self.stuck_s if model == "stuck" else self.delay_s)
            status, outcome, reason = BEHAVIOURS[model]
            if outcome is None:
                return PlainTextResponse("Internal Server Error", status_code=status)
            answer = {"request_id": body.get("request_id"), "model": model, "outcome": outcome, "reason": reason}
            if status == 200:
                answer.update(exit="middle" if model == "badexit" else "final", batch_size=2, latency_ms=3.0,
                              queue_ms=1.0, slot_ms=2.0, deadline_met=outcome == "MET", prediction=4,
                              confidence=0.8)
            return JSONResponse(answer, status_code=status)
        finally:
            with self._lock:
                self.record.in_flight -= 1
