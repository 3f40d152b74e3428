"""The worker's configuration: the ``args`` of the application in ``ray_config.yaml``.

A pydantic model, so a typo or a bad value fails at start-up with the key's path and what is
expected (``ConfigError``). Relative paths resolve against ``base_dir`` (default: the repository
root, where ``ray_config.yaml`` lives), so the same file works from any working directory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scheduler.paths import REPO_ROOT
from scheduler.policies import DEFAULT_POLICY
from scheduler.profile import MAX_BATCH

QUANTILE_NAMES = ("mean", "p50", "p90", "p95", "p99")


class ConfigError(ValueError):
    """The serving configuration is invalid; the message names each bad key and what it expects."""


class ModelConfig(BaseModel):
    """One served model."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = Field(
        None, description="checkpoint file (executor: torch); relative paths resolve against base_dir")
    default_deadline_ms: float | None = Field(
        None, gt=0, description="deadline used when a request names none; without it a deadline is required")
    input_shape: list[int] | None = Field(
        None, description="one sample's shape (default: the checkpoint's; required with executor: profile and no "
                          "checkpoint)")
    num_classes: int | None = Field(None, ge=1, description="classes (default: the checkpoint's, as input_shape)")

    @field_validator("input_shape")
    @classmethod
    def _shape_positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(d < 1 for d in v)):
            raise ValueError(f"input_shape must be a non-empty list of positive sizes, got {v}")
        return v

    @field_validator("default_deadline_ms")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("default_deadline_ms must be a finite number of milliseconds")
        return v


class ServingConfig(BaseModel):
    """Everything one worker replica needs. Every replica of the deployment gets the same copy."""

    model_config = ConfigDict(extra="forbid")

    executor: Literal["torch", "profile"] = Field(
        "torch", description="torch: run the zoo's checkpoints; profile: sleep profiled slot times (no weights)")
    profile: str = Field(description="profile JSON the policy plans with (and, with executor: profile, draws from)")
    models: dict[str, ModelConfig] = Field(description="served models by name; each must be in the profile")
    policy: str = Field(DEFAULT_POLICY, description="scheduling policy by registry name")
    policy_options: dict[str, Any] = Field(
        {}, description="extra options of the policy's constructor, e.g. {preempt: true} (exit-boundary "
                        "preemption) or {shed: drop} for lookahead; see the policy's docstring")
    bmax: int = Field(8, ge=1, le=MAX_BATCH, description="largest batch one slot may run")
    quantile: Literal["mean", "p50", "p90", "p95", "p99"] = Field(
        "p95", description="profile quantile the policy predicts slot times with")
    queue_bound: int = Field(64, ge=1, description="per-model queue bound; a full queue answers 503 queue_full")
    reject_infeasible: bool = Field(
        False, description="refuse (503 deadline_infeasible) requests even the shallowest exit cannot meet")
    max_payload_bytes: int = Field(1 << 20, ge=256, description="largest request body; larger answers 413")
    max_deadline_ms: float = Field(60_000.0, gt=0, description="largest accepted deadline; larger answers 422")
    body_timeout_ms: float = Field(
        2000.0, gt=0, description="a request body not fully received this long after its headers answers 408 "
                                  "body_timeout: a stalled client, or a call Serve's proxy re-sent to this replica "
                                  "after its first replica died (its body went to the dead one)")
    max_samples_per_request: int = Field(
        16, ge=1, description="largest batch dimension of an Open Inference Protocol request")
    answer_grace_s: float = Field(
        30.0, gt=0, description="a request unanswered this long after its deadline ends FAILED (timeout)")
    device: str = Field("auto", description="torch device: auto (cuda when visible, else cpu), cpu, cuda, cuda:N")
    confidence_exit: list[str] = Field(
        [], description="models whose samples may leave at their first confident head (never past the planned exit)")
    confidence_criterion: Literal["max_softmax", "entropy"] = Field(
        "max_softmax", description="confidence measure of the calibrated thresholds in the checkpoints")
    torch_threads: int | None = Field(
        1, ge=1, description="torch intra-op threads per replica (leave cores to the HTTP proxy)")
    gil_switch_interval_ms: float | None = Field(
        None, gt=0, description="the worker process's GIL switch interval (sys.setswitchinterval; null: Python's, "
                                "5 ms): how long the engine thread may wait for the request thread after a torch op")
    seed: int = Field(0, description="seed of the profile executor's slot-time draws")
    metrics_dir: str | None = Field(
        None, description="prometheus multiprocess directory shared by the node's workers (default: per cluster)")
    base_dir: str | None = Field(None, description="directory relative paths resolve against (default: repo root)")

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, v: str) -> str:
        from scheduler.policies import policy_names

        if v not in policy_names():
            raise ValueError(f"unknown policy {v!r}; known policies are {', '.join(policy_names())}")
        return v

    @field_validator("models")
    @classmethod
    def _some_models(cls, v: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        if not v:
            raise ValueError("at least one model is required")
        return v

    @model_validator(mode="after")
    def _policy_builds(self) -> ServingConfig:
        from scheduler.policies import make_policy

        reserved = {"bmax", "quantile"} & set(self.policy_options)
        if reserved:
            raise ValueError(f"policy_options may not set {sorted(reserved)}: they are top-level settings")
        try:
            make_policy(self.policy, bmax=self.bmax, quantile=self.quantile, **self.policy_options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"policy_options {self.policy_options} do not fit policy {self.policy!r}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _executor_needs(self) -> ServingConfig:
        unknown = [m for m in self.confidence_exit if m not in self.models]
        if unknown:
            raise ValueError(f"confidence_exit names {unknown}, which are not served models {list(self.models)}")
        if self.confidence_exit and self.executor != "torch":
            raise ValueError("confidence_exit needs executor: torch (a profile has no confidences)")
        for name, m in self.models.items():
            if self.executor == "torch" and not m.checkpoint:
                raise ValueError(f"models.{name}.checkpoint is required with executor: torch")
            if self.executor == "profile" and (m.input_shape is None or m.num_classes is None) and not m.checkpoint:
                raise ValueError(f"models.{name}: input_shape and num_classes (or a checkpoint to read them from) "
                                 "are required with executor: profile")
            if m.default_deadline_ms is not None and m.default_deadline_ms > self.max_deadline_ms:
                raise ValueError(f"models.{name}.default_deadline_ms ({m.default_deadline_ms:g}) exceeds "
                                 f"max_deadline_ms ({self.max_deadline_ms:g})")
        return self

    # -- paths ---------------------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir or REPO_ROOT) / p

    @property
    def profile_path(self) -> Path:
        return self.resolve(self.profile)

    def checkpoint_path(self, model: str) -> Path:
        ckpt = self.models[model].checkpoint
        assert ckpt is not None, f"model {model!r} has no checkpoint"
        return self.resolve(ckpt)

    def missing_files(self) -> list[str]:
        """Files the config names that do not exist, each as ``key: path``."""
        missing = []
        if not self.profile_path.is_file():
            missing.append(f"profile: {self.profile_path}")
        for name, m in self.models.items():
            if m.checkpoint and not self.checkpoint_path(name).is_file():
                missing.append(f"models.{name}.checkpoint: {self.checkpoint_path(name)}")
        return missing


def parse_config(args: Any, source: str = "serving config") -> ServingConfig:
    """Validate ``args`` (the application's ``args`` mapping); raise ``ConfigError`` naming each bad key."""
    if isinstance(args, ServingConfig):
        return args
    if not isinstance(args, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(args).__name__}")
    try:
        return ServingConfig.model_validate(args)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``key.path: what is wrong (got VALUE)``."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<top level>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the README's Serving section for the keys)"
        elif err["type"] != "missing" and "input" in err and not isinstance(err["input"], dict):
            msg += f" (got {err['input']!r})"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)
