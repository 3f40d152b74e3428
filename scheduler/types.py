"""Value types shared by the engine, the policies, the executors and the drivers.

Times ending in ``_s`` are seconds on the engine's clock; ``_ms`` are milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    """How a request ended. Every request ends in exactly one of these."""

    MET = "MET"  # completed at or before its deadline
    LATE = "LATE"  # completed after its deadline
    REJECTED = "REJECTED"  # refused at admission: bad input, queue full, infeasible deadline
    DROPPED = "DROPPED"  # removed from a queue by the policy without running
    FAILED = "FAILED"  # the slot that ran it raised

    @property
    def completed(self) -> bool:
        """True when the request got an answer (MET or LATE)."""
        return self in (Outcome.MET, Outcome.LATE)


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request, as the engine sees it."""

    id: str
    model: str
    arrival_s: float  # when it entered the system, engine clock
    deadline_s: float  # absolute deadline, engine clock
    payload: Any = field(default=None, compare=False, repr=False)  # tensor, or None in simulation
    label: int | None = None  # ground truth where known, for measured accuracy
    # The call (one client request of several samples) it came in: the call is answered when its last
    # sample ends, so a policy may weigh a sample by what its call-mates are waiting for. None: alone.
    call: str | None = field(default=None, compare=False)

    @property
    def slo_ms(self) -> float:
        """The relative deadline the request arrived with."""
        return (self.deadline_s - self.arrival_s) * 1000.0


@dataclass(frozen=True, slots=True)
class Plan:
    """One scheduling decision. A policy returns it; the engine applies it.

    Either a batch to run (``model``, ``exit`` and non-empty ``requests``) or, with an empty
    ``requests``, an instruction to idle until ``idle_until_s`` (an arrival wakes the engine
    earlier). ``drop`` may accompany either.
    """

    model: str | None  # the model whose batch runs in this slot; None when idling
    exit: str | None  # the exit the batch runs up to (a cap when confidence exits are on)
    requests: tuple[Request, ...]  # the batch; at most the policy's Bmax
    predicted_ms: float  # the slot time the policy planned with, ms
    drop: tuple[Request, ...] = ()  # requests removed as hopeless; they end DROPPED
    idle_until_s: float | None = None  # when idling: re-plan no later than this
    drop_reason: str = "deadline_unreachable"  # recorded on every dropped request

    @staticmethod
    def run(model: str, exit: str, requests: tuple[Request, ...], predicted_ms: float,
            drop: tuple[Request, ...] = ()) -> Plan:
        assert requests, "a run plan needs at least one request"
        return Plan(model, exit, tuple(requests), predicted_ms, tuple(drop))

    @staticmethod
    def idle(until_s: float, drop: tuple[Request, ...] = ()) -> Plan:
        return Plan(None, None, (), 0.0, tuple(drop), until_s)

    @property
    def batch_size(self) -> int:
        return len(self.requests)


@dataclass(frozen=True, slots=True)
class SlotResult:
    """What an executor reports after running one plan (one time-division slot)."""

    slot_ms: float  # measured (or, in simulation, drawn) time of the slot
    exits: tuple[str, ...]  # exit each request actually took, in plan order (<= the plan's cap)
    predictions: tuple[int, ...] | None = None  # predicted class per request; None in simulation
    confidences: tuple[float, ...] | None = None  # max softmax per request; None in simulation
    # Stopped at an exit boundary before the plan's exit (``exits`` then name the exit reached): the slot's
    # time is no sample of the planned exit's latency.
    preempted: bool = False


@dataclass(frozen=True, slots=True)
class RequestResult:
    """The final record of one request: one row of the results CSV."""

    request: Request
    outcome: Outcome
    finish_s: float | None = None  # when the answer was ready; None without an answer
    exit: str | None = None
    batch_size: int | None = None
    queue_ms: float | None = None  # arrival -> start of its slot
    slot_ms: float | None = None
    prediction: int | None = None
    confidence: float | None = None
    reason: str | None = None  # why REJECTED / DROPPED / FAILED

    @property
    def latency_ms(self) -> float | None:
        if self.finish_s is None:
            return None
        return (self.finish_s - self.request.arrival_s) * 1000.0
