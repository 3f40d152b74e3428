"""The live driver: one thread per worker runs ``Engine.step()`` slot after slot, off the event loop.

The thread blocks in ``Engine.wait_for_work`` while every queue is empty, and honours a policy's
choice to wait (``idle_until_s``) in ``Engine.wait_for_arrival``, which an arrival interrupts so the
new request is planned at once. An exception outside the executor (a policy bug) must not strand requests: the
loop fails what is queued with reason ``engine_error`` and keeps going.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from scheduler.engine import Engine, StepResult

# Under "ray.serve": in a replica, Serve's handlers write these lines to the replica's log file.
log = logging.getLogger("ray.serve.edgeserving.worker")

EMPTY_WAIT_S = 0.5  # longest block while every queue is empty (then re-checks the stop flag)


class EngineLoop:
    def __init__(self, engine: Engine, after_step: Callable[[StepResult | None], None] | None = None,
                 name: str = "edgeserving-engine") -> None:
        self.engine = engine
        self.after_step = after_step
        self.errors = 0  # steps that raised outside the executor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop after the running slot; True when the thread has exited within ``timeout_s``."""
        self._stop.set()
        self.engine.wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                step = self.engine.step()
            except Exception as exc:
                self.errors += 1
                log.exception("engine step failed; failing the queued requests")
                self.engine.fail_all(f"engine_error: {type(exc).__name__}: {exc}"[:300])
                self._after(None)
                continue
            self._after(step)
            if step.plan is None:
                self.engine.wait_for_work(EMPTY_WAIT_S)
            elif step.idle_until_s is not None:
                self.engine.wait_for_arrival(step.idle_until_s, EMPTY_WAIT_S)

    def _after(self, step: StepResult | None) -> None:
        if self.after_step is None:
            return
        try:
            self.after_step(step)
        except Exception:  # bookkeeping must never stop the engine
            log.exception("after-step hook failed")
