"""The torch executor: runs one plan (one time-division slot) on the device and measures it.

``run(plan)`` stacks the requests' payloads into one batch, runs the model up to the plan's exit
(or, with a confidence exit enabled for that model, lets each sample leave at its first confident
head, never past the plan's exit), and reports the predictions, the confidences (max softmax),
the exit each sample actually took and the measured slot time. A bad payload raises before any
compute; the engine then fails exactly that slot's requests. ``run_preemptible(plan, should_stop)``
does the same one stage at a time and can stop the batch at an exit boundary (exit-boundary
preemption, used by the engine when the policy asks for it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.base import EarlyExitNet
from models.checkpoint import ModelMeta
from models.confidence import Criterion, check_criterion, is_confident
from models.device import synchronize
from scheduler.clock import Clock
from scheduler.executor import StopCheck
from scheduler.types import Plan, Request, SlotResult


@dataclass(frozen=True, slots=True)
class ConfidenceExit:
    """Per-sample early exit for one model: leave at head k when it is confident by ``thresholds[k]``."""

    thresholds: tuple[float, ...]  # one per exit except the final one, shallowest first
    criterion: Criterion = "max_softmax"

    def __post_init__(self) -> None:
        check_criterion(self.criterion)

    @classmethod
    def from_meta(cls, meta: ModelMeta, criterion: Criterion = "max_softmax") -> ConfidenceExit:
        """The thresholds calibrated at training time (stored in the checkpoint's JSON)."""
        return cls(tuple(meta.threshold_list(criterion)), criterion)


class TorchExecutor:
    """Implements ``scheduler.executor.Executor`` with real networks on a torch device.

    ``clock`` is the engine's clock: on a real clock the slot's time has passed by itself; on a
    virtual clock the executor advances it by the measured slot time, so the torch executor can
    also run under the simulator. ``threads`` pins torch's intra-op threads (process-wide) so
    measured slot times match a profile taken with the same setting.
    """

    def __init__(self, models: Mapping[str, EarlyExitNet], device: torch.device | str = "cpu",
                 clock: Clock | None = None, confidence: Mapping[str, ConfidenceExit] | None = None,
                 threads: int | None = None) -> None:
        if not models:
            raise ValueError("a TorchExecutor needs at least one model")
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.clock = clock
        self.models = {name: m.to(self.device).eval() for name, m in models.items()}
        self._confidence: dict[str, ConfidenceExit] = {}
        for name, conf in (confidence or {}).items():
            self.set_confidence(name, conf)

    # -- configuration ---------------------------------------------------------------------

    def model(self, name: str) -> EarlyExitNet:
        try:
            return self.models[name]
        except KeyError:
            raise ValueError(f"unknown model {name!r}; this executor holds {sorted(self.models)}") from None

    def set_confidence(self, name: str, conf: ConfidenceExit | None) -> None:
        """Enable (or with None, disable) the confidence exit for model ``name``."""
        model = self.model(name)
        if conf is None:
            self._confidence.pop(name, None)
            return
        if len(conf.thresholds) != len(model.exits) - 1:
            raise ValueError(f"model {name!r} has exits {list(model.exits)}: need {len(model.exits) - 1} "
                             f"thresholds (all but the final exit), got {len(conf.thresholds)}")
        self._confidence[name] = conf

    def confidence(self, name: str) -> ConfidenceExit | None:
        return self._confidence.get(name)

    # -- the slot --------------------------------------------------------------------------

    def _open(self, plan: Plan) -> tuple[EarlyExitNet, int, ConfidenceExit | None]:
        """The plan's network, its exit cap's index and its confidence exit (None when off)."""
        if plan.model is None or plan.exit is None or not plan.requests:
            raise ValueError("cannot run an idle plan: it has no model, exit or requests")
        model = self.model(plan.model)
        return model, model.exit_index(plan.exit), self._confidence.get(plan.model)

    def run(self, plan: Plan) -> SlotResult:
        model, cap, conf = self._open(plan)
        c0 = self.clock.now() if self.clock is not None else 0.0
        t0 = time.perf_counter()
        x = self._batch(plan.model, model, plan.requests)
        with torch.inference_mode():
            if conf is not None and cap > 0:
                out = model.forward_confident(x, cap, conf.thresholds, conf.criterion)
                logits, exit_idx = out.logits, out.exit_indices.tolist()
            else:
                logits, exit_idx = model(x, exit=cap), [cap] * len(plan.requests)
            top, pred = torch.softmax(logits.float(), dim=-1).max(dim=-1)
            predictions, confidences = pred.tolist(), top.tolist()  # .tolist() waits for the device
        synchronize(self.device)
        slot_ms = (time.perf_counter() - t0) * 1000.0
        self._catch_up(c0, t0, slot_ms)
        return SlotResult(slot_ms=slot_ms, exits=tuple(model.exits[i] for i in exit_idx),
                          predictions=tuple(int(p) for p in predictions),
                          confidences=tuple(float(c) for c in confidences))

    def run_preemptible(self, plan: Plan, should_stop: StopCheck) -> SlotResult:
        """``run``, one stage at a time with the network's per-stage API (``run_stage``/``head``). After each
        stage short of the plan's exit it asks ``should_stop(exit)``; on yes, every sample still running is
        answered from that exit's head and the slot ends, ``preempted``. Confidence exits, where enabled,
        still let samples leave at a confident head first. On a virtual clock the measured time so far has
        passed before each question. The slot time includes the questions (the cost of preemptibility)."""
        model, cap, conf = self._open(plan)
        c0 = self.clock.now() if self.clock is not None else 0.0
        t0 = time.perf_counter()
        x = self._batch(plan.model, model, plan.requests)
        n = x.shape[0]
        preempted = False
        with torch.inference_mode():
            out = torch.empty(n, model.num_classes, device=self.device)
            exit_idx = torch.full((n,), cap, dtype=torch.long, device=self.device)
            alive = torch.arange(n, device=self.device)
            h = x
            for k in range(cap + 1):
                h = model.run_stage(k, h)
                if k == cap:
                    out[alive] = model.head(k, h).float()
                    break
                logits = None
                if conf is not None:
                    logits = model.head(k, h).float()
                    done = is_confident(logits, conf.criterion, conf.thresholds[k])
                    out[alive[done]] = logits[done]
                    exit_idx[alive[done]] = k
                    keep = ~done
                    alive, h, logits = alive[keep], h[keep], logits[keep]
                    if alive.numel() == 0:
                        break
                self._catch_up(c0, t0)
                if should_stop(model.exits[k]):
                    out[alive] = logits if logits is not None else model.head(k, h).float()
                    exit_idx[alive] = k
                    preempted = True
                    break
            top, pred = torch.softmax(out, dim=-1).max(dim=-1)
            predictions, confidences, taken = pred.tolist(), top.tolist(), exit_idx.tolist()
        synchronize(self.device)
        slot_ms = (time.perf_counter() - t0) * 1000.0
        self._catch_up(c0, t0, slot_ms)
        return SlotResult(slot_ms=slot_ms, exits=tuple(model.exits[i] for i in taken),
                          predictions=tuple(int(p) for p in predictions),
                          confidences=tuple(float(c) for c in confidences), preempted=preempted)

    def _catch_up(self, c0: float, t0: float, elapsed_ms: float | None = None) -> None:
        """On a virtual clock, let the time measured since ``t0`` pass (a real clock has seen it pass)."""
        if self.clock is None:
            return
        if elapsed_ms is None:
            synchronize(self.device)
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
        behind_s = elapsed_ms / 1000.0 - (self.clock.now() - c0)  # read after the measurement: <= 0 on a real clock
        if behind_s > 0:
            self.clock.sleep(behind_s)

    def _batch(self, name: str, model: EarlyExitNet, requests: Sequence[Request]) -> torch.Tensor:
        shape = model.input_shape
        tensors = []
        for r in requests:
            p = r.payload
            if isinstance(p, np.ndarray):
                p = torch.from_numpy(p if p.flags.writeable else p.copy())  # torch warns on read-only arrays
            if not isinstance(p, torch.Tensor):
                raise ValueError(f"request {r.id!r}: payload is {type(p).__name__}; model {name!r} expects a "
                                 f"float32 tensor of shape {list(shape)}")
            if tuple(p.shape) != shape or p.dtype != torch.float32:
                raise ValueError(f"request {r.id!r}: payload is {p.dtype} of shape {list(p.shape)}; model "
                                 f"{name!r} expects a float32 tensor of shape {list(shape)}")
            tensors.append(p)
        x = torch.stack(tensors).to(self.device)
        if not bool(torch.isfinite(x).all()):
            bad = [r.id for r, t in zip(requests, tensors) if not bool(torch.isfinite(t).all())]
            raise ValueError(f"payload of request(s) {bad} holds NaN or infinite values")
        return x

    # -- helpers for drivers ---------------------------------------------------------------

    def warmup(self, batch_sizes: Iterable[int] = (1,), repeats: int = 3) -> None:
        """Run every (model, exit, batch) a few times so first requests do not pay for allocation."""
        with torch.inference_mode():
            for model in self.models.values():
                for b in batch_sizes:
                    x = torch.zeros(b, *model.input_shape, device=self.device)
                    for k in range(len(model.exits)):
                        for _ in range(repeats):
                            model(x, exit=k)
        synchronize(self.device)


def executor_from_checkpoints(checkpoints: Mapping[str, tuple[EarlyExitNet, ModelMeta]],
                              device: torch.device | str = "cpu", clock: Clock | None = None,
                              confidence_models: Iterable[str] = (), criterion: Criterion = "max_softmax",
                              threads: int | None = None) -> TorchExecutor:
    """A TorchExecutor over loaded checkpoints, with the confidence exit on for ``confidence_models``
    using each checkpoint's calibrated thresholds."""
    models = {name: model for name, (model, _) in checkpoints.items()}
    confidence = {}
    for name in confidence_models:
        if name not in checkpoints:
            raise ValueError(f"confidence exit asked for unknown model {name!r}; models are {sorted(checkpoints)}")
        confidence[name] = ConfidenceExit.from_meta(checkpoints[name][1], criterion)
    return TorchExecutor(models, device, clock, confidence, threads)
