"""What a worker serves: each model's metadata (from its checkpoint or the config), and the executor.

``executor: torch`` loads every checkpoint with ``models.checkpoint.load_checkpoint`` and runs
slots with ``models.executor.TorchExecutor``; ``executor: profile`` serves a profile without
weights (slot times drawn from it and slept on the real clock), for scheduler experiments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scheduler.clock import Clock
from scheduler.executor import Executor
from scheduler.profile import Profile
from scheduler.serving.config import ConfigError, ServingConfig


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    exits: tuple[str, ...]  # shallowest first, as in the profile
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    num_classes: int
    accuracy: dict[str, float]  # exit -> accuracy on the test split (torch) or as profiled
    default_deadline_ms: float | None
    latency_ms: dict[str, dict[str, float]]  # exit -> batch (str) -> profiled ms at the planning quantile
    platform: str  # "pytorch" or "profile"

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    def describe(self) -> dict[str, Any]:
        """The ``GET /v1/models`` entry of this model."""
        return {"name": self.name, "exits": list(self.exits), "input_shape": list(self.input_shape),
                "dtype": "float32", "num_classes": self.num_classes, "accuracy": dict(self.accuracy),
                "latency_ms": self.latency_ms, "default_deadline_ms": self.default_deadline_ms,
                "platform": self.platform}


def load_catalog(cfg: ServingConfig, profile: Profile) -> tuple[dict[str, ServedModel], dict[str, Any]]:
    """Served models in profile order, and the loaded checkpoints by name, ``(network, meta)``
    (empty with executor: profile)."""
    check_models_in_profile(cfg, profile)
    checkpoints: dict[str, Any] = {}
    metas: dict[str, Any] = {}
    for name, mc in cfg.models.items():
        if cfg.executor == "torch":
            from models.checkpoint import load_checkpoint

            try:
                checkpoints[name] = load_checkpoint(cfg.checkpoint_path(name))
            except ValueError as exc:  # CheckpointError names the file and the problem
                raise ConfigError(f"models.{name}.checkpoint: {exc}") from None
            metas[name] = checkpoints[name][1]
        elif mc.checkpoint and (mc.input_shape is None or mc.num_classes is None):
            from models.checkpoint import read_meta  # the JSON half only: no weights in profile mode

            try:
                metas[name] = read_meta(cfg.checkpoint_path(name))
            except ValueError as exc:
                raise ConfigError(f"models.{name}.checkpoint: {exc}") from None
    catalog = {name: _served(cfg, profile, name, metas.get(name)) for name in profile.model_names if name in cfg.models}
    return catalog, checkpoints


def check_models_in_profile(cfg: ServingConfig, profile: Profile) -> None:
    for name in cfg.models:
        if name not in profile.models:
            raise ConfigError(f"models.{name}: not in the profile {profile.source} "
                              f"(it has {list(profile.model_names)})")


def check_meta(cfg: ServingConfig, profile: Profile, name: str, meta: Any) -> None:
    """A checkpoint's metadata agrees with the profile and the config (exits, input shape)."""
    mp = profile.model(name)
    mc = cfg.models[name]
    where = f"models.{name}.checkpoint ({cfg.checkpoint_path(name)})"
    if tuple(meta.exits) != tuple(mp.exits):
        raise ConfigError(f"{where}: exits {list(meta.exits)} differ from the profile's {list(mp.exits)} "
                          f"({profile.source}); re-run `edgeserving profile` for this zoo")
    if mc.input_shape is not None and tuple(mc.input_shape) != tuple(meta.input_shape):
        raise ConfigError(f"models.{name}.input_shape {mc.input_shape} differs from the checkpoint's "
                          f"{list(meta.input_shape)}; drop the key or fix it")


def _served(cfg: ServingConfig, profile: Profile, name: str, meta: Any) -> ServedModel:
    mp = profile.model(name)
    table = {e: {str(b): round(profile.latency_ms(name, e, b, cfg.quantile), 4) for b in mp.batch_sizes}
             for e in mp.exits}
    mc = cfg.models[name]
    if meta is None:
        assert mc.input_shape is not None and mc.num_classes is not None  # the config validator ensures it
        return ServedModel(name, mp.exits, tuple(mc.input_shape), mc.num_classes, dict(mp.accuracy),
                           mc.default_deadline_ms, table, "profile")
    check_meta(cfg, profile, name, meta)
    accuracy = {e: float(meta.accuracy.get(e, mp.accuracy[e])) for e in mp.exits}
    return ServedModel(name, mp.exits, tuple(int(d) for d in meta.input_shape), int(meta.num_classes),
                       accuracy, mc.default_deadline_ms, table, "pytorch" if cfg.executor == "torch" else "profile")


def make_executor(cfg: ServingConfig, profile: Profile, checkpoints: dict[str, Any], clock: Clock
                  ) -> tuple[Executor, str]:
    """The executor for ``cfg.executor`` (warmed up) and a description of the device it runs on."""
    if cfg.executor == "profile":
        import numpy as np

        from scheduler.executor import ProfileExecutor

        rng = np.random.default_rng(cfg.seed)
        return ProfileExecutor(profile, clock, rng, report_measured=True), f"profile ({profile.device or 'simulated'})"
    from models.device import device_name, pick_device
    from models.executor import executor_from_checkpoints

    device = pick_device(cfg.device)
    executor = executor_from_checkpoints(checkpoints, device, clock, confidence_models=cfg.confidence_exit,
                                         criterion=cfg.confidence_criterion, threads=cfg.torch_threads)
    executor.warmup(batch_sizes=range(1, cfg.bmax + 1), repeats=2)
    return executor, device_name(device)
