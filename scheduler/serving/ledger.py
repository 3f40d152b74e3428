"""The worker's ledger: every request that reaches the worker is opened here and closed exactly once.

The engine listener (results of slots, drops, admission refusals, shutdown), the answer timeout
and the shutdown sweep all close requests through ``close``; the first close wins and is the one
the metrics record and the client receives, so a request can never be counted twice or lost.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.engine import EngineListener
from scheduler.types import Outcome, Request, RequestResult


@dataclass(slots=True)
class _Entry:
    request: Request
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future | None


class Ledger(EngineListener):
    """Open requests by engine id; ``on_close`` runs once per request with its final result."""

    def __init__(self, on_close: Callable[[RequestResult], None]) -> None:
        self._on_close = on_close
        self._lock = threading.Lock()
        self._open: dict[str, _Entry] = {}
        self.opened = 0  # requests that reached the worker and were opened
        self.closed = 0  # of those, how many have their outcome

    def open(self, request: Request, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future | None:
        """Register ``request`` before it goes anywhere; returns the future its result will resolve."""
        future = loop.create_future() if loop is not None else None
        with self._lock:
            assert request.id not in self._open, f"request id {request.id} opened twice"
            self._open[request.id] = _Entry(request, loop, future)
            self.opened += 1
        return future

    def close(self, result: RequestResult) -> bool:
        """Record ``result`` as the request's outcome unless it already has one; True if this call closed it."""
        with self._lock:
            entry = self._open.pop(result.request.id, None)
            if entry is None:
                return False
            self.closed += 1
        self._on_close(result)
        if entry.future is not None and entry.loop is not None and not entry.loop.is_closed():
            entry.loop.call_soon_threadsafe(_resolve, entry.future, result)
        return True

    def request_done(self, result: RequestResult) -> None:  # EngineListener hook
        self.close(result)

    def close_all(self, outcome: Outcome, reason: str) -> int:
        """Close every open request (shutdown sweep); returns how many it closed."""
        with self._lock:
            requests = [e.request for e in self._open.values()]
        return sum(self.close(RequestResult(r, outcome, reason=reason)) for r in requests)

    def pending(self) -> list[Request]:
        """Requests opened and not yet closed (queued or running)."""
        with self._lock:
            return [e.request for e in self._open.values()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


def _resolve(future: asyncio.Future, result: RequestResult) -> None:
    if not future.done():
        future.set_result(result)
