"""A test-only Serve application: edgeserving's real worker, with a fault injected below validation.

``build_app`` deploys the real ``Worker`` (real FastAPI app, validation, engine, torch executor),
except that its executor is wrapped by ``PoisonedExecutor``: a request whose first input value is
``POISON`` passes HTTP validation like any other (it is a finite float32 sample of the right
shape), and then, inside the slot, its tensor is swapped for one of the wrong shape, as a bug
between validation and the device would do. The torch executor raises on that slot; the engine
must fail exactly that slot's requests and go on.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from scheduler.serving.api import Worker
from scheduler.serving.config import parse_config
from scheduler.types import Plan, SlotResult

POISON = -7777.0


class PoisonedExecutor:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.poisoned_slots = 0

    def run(self, plan: Plan) -> SlotResult:
        if any(_poisoned(r.payload) for r in plan.requests):
            self.poisoned_slots += 1
            bad = np.zeros(3, np.float32)  # no model of the zoo takes this shape
            plan = replace(plan, requests=tuple(replace(r, payload=bad) if _poisoned(r.payload) else r
                                                for r in plan.requests))
        return self.inner.run(plan)

    def __getattr__(self, name: str) -> Any:  # warmup, device, models: the real executor's
        return getattr(self.inner, name)


def _poisoned(payload: Any) -> bool:
    return isinstance(payload, np.ndarray) and payload.size > 0 and float(payload.flat[0]) == POISON


class FaultyWorker(Worker.func_or_class):  # type: ignore[name-defined, misc]
    async def __init__(self, config: dict[str, Any]) -> None:  # Serve's ingress wrapper's __init__ is async
        await super().__init__(config)
        self.core.engine.executor = PoisonedExecutor(self.core.engine.executor)


FaultyDeployment = Worker.options(func_or_class=FaultyWorker)


def build_app(args: dict[str, Any]) -> Any:
    return FaultyDeployment.bind(parse_config(args, "application args").model_dump())
