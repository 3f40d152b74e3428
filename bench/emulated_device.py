"""The emulated device the plain Ray Serve baseline shares in ``bench live --emulate``.

A real GPU shared by fractional-``num_gpus`` replicas runs one kernel stream at a time: their
batches time-slice it. Without a shared device, three plain replicas sleeping their slot times
would each get a whole device, three times what edgeserving's single time-division worker has.
``EmulatedDevice`` is that one device: a small async Ray actor whose ``run`` holds an
``asyncio.Lock`` for the slot time drawn from the (dilated) profile, so batches of different
models queue for it in arrival order. Slot times are drawn as edgeserving's profile executor
draws them (``scheduler.executor.SlotTimeSampler``, seeded ``numpy`` generator, one uniform
draw per slot), so both sides of the comparison run on the same device model.

Each batch costs the plain replica one actor call (about 1 ms on the 2-core box) on top of its
slot: that is the price of emulating the shared device, paid by plain Ray Serve only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

NAMESPACE = "edgeserving-bench"  # the driver creates the device here; the plain replicas look it up here
HISTORY_LIMIT = 100_000  # slots remembered for ``history()`` (tests check they never overlap)


class EmulatedDevice:
    """One device: a slot at a time, each as long as a draw from the profile (see the module docstring)."""

    def __init__(self, profile_path: str, seed: int = 0) -> None:
        import numpy as np

        from scheduler.executor import SlotTimeSampler
        from scheduler.profile import Profile

        self.sampler = SlotTimeSampler(Profile.load(profile_path))
        self.rng = np.random.default_rng(seed)
        self.lock = asyncio.Lock()
        self.slots: list[tuple[str, int, float, float]] = []  # (model, batch, start_s, end_s) on perf_counter

    def ready(self) -> bool:
        return True

    async def run(self, model: str, exit: str, batch: int) -> dict[str, float]:
        """Hold the device for one slot of ``model`` to ``exit`` with ``batch`` samples. Returns the slot's
        time as held (``slot_ms``), as drawn (``drawn_ms``) and the wait for the device (``wait_ms``)."""
        asked = time.perf_counter()
        async with self.lock:
            start = time.perf_counter()
            drawn_ms = self.sampler.draw_ms(model, exit, batch, float(self.rng.random()))
            await asyncio.sleep(drawn_ms / 1000.0)
            end = time.perf_counter()
            if len(self.slots) < HISTORY_LIMIT:
                self.slots.append((model, batch, start, end))
        return {"slot_ms": (end - start) * 1000.0, "drawn_ms": drawn_ms, "wait_ms": (start - asked) * 1000.0}

    def history(self) -> list[tuple[str, int, float, float]]:
        """Every slot so far (up to ``HISTORY_LIMIT``): (model, batch, start_s, end_s), in start order."""
        return list(self.slots)


def start(profile_path: str, seed: int = 0) -> tuple[Any, str]:
    """Create a fresh device actor (under a new name) for ``profile_path``; returns its handle and name.

    The caller keeps the handle for as long as the device must live."""
    import ray

    name = f"emulated-device-{uuid.uuid4().hex[:8]}"
    actor = ray.remote(EmulatedDevice).options(name=name, namespace=NAMESPACE, num_cpus=0,
                                               max_concurrency=1000).remote(profile_path, seed)
    ray.get(actor.ready.remote(), timeout=60)
    return actor, name


def connect(name: str, namespace: str = NAMESPACE, timeout_s: float = 30.0) -> Any:
    """The handle of the device actor ``name`` (waits for it a little: the driver creates it first)."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get_actor(name, namespace=namespace)
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
