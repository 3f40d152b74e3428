"""Per-model request queues, kept in arrival order, with numpy views for vectorised policies."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from scheduler.types import Request

_MIN_CAPACITY = 64


class RequestQueue:
    """FIFO of one model's requests in arrival order.

    ``arrival_s`` and ``deadline_s`` are numpy views over the queued requests (same order as
    ``requests``), so a policy can score a queue of thousands without a Python loop. Popping from
    the head is O(1) amortised; removing arbitrary requests (drops, EDF batches) is O(n).
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._reqs: list[Request] = []
        self._arrival = np.empty(_MIN_CAPACITY)
        self._deadline = np.empty(_MIN_CAPACITY)
        self._head = 0  # index of the oldest live request in _reqs and the arrays

    def __len__(self) -> int:
        return len(self._reqs) - self._head

    def __bool__(self) -> bool:
        return len(self._reqs) > self._head

    def __iter__(self) -> Iterator[Request]:
        return iter(self._reqs[self._head:])

    def __getitem__(self, i: int) -> Request:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"queue {self.model!r} has {len(self)} requests, no index {i}")
        return self._reqs[self._head + i]

    def head(self, n: int) -> tuple[Request, ...]:
        """The ``n`` oldest requests (fewer if the queue is shorter)."""
        return tuple(self._reqs[self._head:self._head + n])

    def min_deadline_s(self, n: int) -> float:
        """Earliest deadline among the ``n`` oldest requests (``n`` >= 1)."""
        h = self._head
        if n <= 16:  # a short Python loop beats numpy's per-call overhead
            return min(r.deadline_s for r in self._reqs[h:h + n])
        return float(self._deadline[h:h + min(n, len(self))].min())

    @property
    def arrival_s(self) -> np.ndarray:
        return self._arrival[self._head:len(self._reqs)]

    @property
    def deadline_s(self) -> np.ndarray:
        return self._deadline[self._head:len(self._reqs)]

    def push(self, request: Request) -> None:
        assert request.model == self.model, f"request for {request.model!r} pushed to queue {self.model!r}"
        n = len(self._reqs)
        if n == len(self._arrival):
            self._grow(n)
            n = len(self._reqs)
        self._arrival[n] = request.arrival_s
        self._deadline[n] = request.deadline_s
        self._reqs.append(request)

    def remove(self, requests: Iterable[Request]) -> None:
        """Remove ``requests`` (each must be queued here); the rest keep their order."""
        requests = tuple(requests)
        k = len(requests)
        if not k:
            return
        h = self._head
        if all(self._reqs[h + i] is r for i, r in enumerate(requests[: len(self)])) and k <= len(self):
            self._head += k  # the common case: a batch taken from the head
        else:
            gone = {id(r) for r in requests}
            live = self._reqs[h:]
            keep = [i for i, r in enumerate(live) if id(r) not in gone]
            assert len(live) - len(keep) == k, f"queue {self.model!r}: some removed requests were not queued"
            idx = np.asarray(keep, dtype=np.intp)
            arrival, deadline = self.arrival_s[idx], self.deadline_s[idx]
            self._reqs = [live[i] for i in keep]
            self._head = 0
            self._arrival[: len(keep)] = arrival
            self._deadline[: len(keep)] = deadline
        if self._head >= _MIN_CAPACITY and self._head * 2 >= len(self._reqs):
            self._compact()

    def clear(self) -> list[Request]:
        """Remove and return every queued request."""
        out = self._reqs[self._head:]
        self._reqs, self._head = [], 0
        return out

    def _compact(self) -> None:
        live = len(self)
        self._arrival[:live] = self._arrival[self._head:len(self._reqs)]
        self._deadline[:live] = self._deadline[self._head:len(self._reqs)]
        self._reqs = self._reqs[self._head:]
        self._head = 0

    def _grow(self, n: int) -> None:
        if self._head:
            self._compact()
            if len(self._reqs) < len(self._arrival):
                return
        cap = max(_MIN_CAPACITY, 2 * len(self._arrival))
        for name in ("_arrival", "_deadline"):
            old = getattr(self, name)
            new = np.empty(cap)
            new[: len(self._reqs)] = old[: len(self._reqs)]
            setattr(self, name, new)
