"""Checkpoints: a ``state_dict`` file (``NAME.pt``) plus a small JSON of architecture and metadata
(``NAME.json``) beside it.

Weights load with ``torch.load(..., weights_only=True)``: no pickled code ever runs. The JSON
records the weights file's SHA-256, so a truncated or replaced file is caught before loading.
Every error names the file and says what was expected.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.base import EarlyExitNet
from models.confidence import CRITERIA, NEVER, Criterion, check_criterion
from models.families import build

FORMAT = "edgeserving-checkpoint/1"
_REQUIRED = ("name", "family", "arch", "input_shape", "num_classes", "exits", "accuracy", "weights")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match its architecture; the message names the file."""


@dataclass(frozen=True)
class ModelMeta:
    """Everything about a trained model except its weights (the JSON half of a checkpoint)."""

    name: str
    family: str  # key of models.families.FAMILIES
    arch: dict[str, Any]  # keyword arguments of the family's builder
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    num_classes: int
    exits: tuple[str, ...]  # shallowest first
    accuracy: dict[str, float]  # exit -> top-1 accuracy on the held-out test split
    val_accuracy: dict[str, float] = field(default_factory=dict)  # exit -> accuracy on the validation split
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)  # criterion -> exit -> threshold
    target_accuracy: float | None = None  # what the thresholds were calibrated for, on validation
    dataset: str = ""
    seed: int = 0
    weights: str = ""  # weights file name, in the same folder as the JSON
    weights_sha256: str = ""
    weights_dtype: str = "float32"  # dtype the weights are stored in; they load as float32
    extra: dict[str, Any] = field(default_factory=dict)  # training config, timings, parameter count

    @property
    def dtype(self) -> str:
        """The input dtype the model takes (always float32)."""
        return "float32"

    def exit_index(self, exit: str) -> int:
        try:
            return self.exits.index(exit)
        except ValueError:
            raise ValueError(f"model {self.name!r} has no exit {exit!r}; valid exits are {list(self.exits)}") from None

    def threshold_list(self, criterion: Criterion = "max_softmax") -> list[float]:
        """Per exit (all but the final one) the calibrated threshold, for ``forward_confident``."""
        check_criterion(criterion)
        per_exit = self.thresholds.get(criterion, {})
        return [float(per_exit.get(e, NEVER[criterion])) for e in self.exits[:-1]]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "family": self.family, "arch": self.arch,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes, "exits": list(self.exits),
                "accuracy": self.accuracy, "val_accuracy": self.val_accuracy, "thresholds": self.thresholds,
                "target_accuracy": self.target_accuracy, "dataset": self.dataset, "seed": self.seed,
                "weights": self.weights, "weights_sha256": self.weights_sha256,
                "weights_dtype": self.weights_dtype, "extra": self.extra}

    @classmethod
    def from_json(cls, data: Any, source: str) -> ModelMeta:
        def fail(problem: str) -> CheckpointError:
            return CheckpointError(f"{source}: {problem}")

        if not isinstance(data, dict):
            raise fail("expected a JSON object of checkpoint metadata")
        if data.get("format", FORMAT) != FORMAT:
            raise fail(f"unsupported checkpoint format {data.get('format')!r}; expected {FORMAT!r}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise fail(f"missing key(s) {missing}; a checkpoint's JSON needs {list(_REQUIRED)}")
        exits = data["exits"]
        if not isinstance(exits, list) or not exits or not all(isinstance(e, str) for e in exits):
            raise fail(f"'exits' must be a non-empty list of names, got {exits!r}")
        shape = data["input_shape"]
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise fail(f"'input_shape' must be a list of positive integers, got {shape!r}")
        if not isinstance(data["num_classes"], int) or data["num_classes"] < 2:
            raise fail(f"'num_classes' must be an integer >= 2, got {data['num_classes']!r}")
        if not isinstance(data["arch"], dict):
            raise fail(f"'arch' must be an object of builder arguments, got {data['arch']!r}")
        accuracy = _exit_floats(data["accuracy"], exits, "accuracy", fail, required=True)
        val_accuracy = _exit_floats(data.get("val_accuracy") or {}, exits, "val_accuracy", fail, required=False)
        thresholds = data.get("thresholds") or {}
        if not isinstance(thresholds, dict) or any(c not in CRITERIA for c in thresholds):
            raise fail(f"'thresholds' must map criteria {list(CRITERIA)} to exit -> threshold, got {thresholds!r}")
        thresholds = {c: _exit_floats(t, exits, f"thresholds.{c}", fail, required=False, bounded=False)
                      for c, t in thresholds.items()}
        weights = data["weights"]
        if not isinstance(weights, str) or not weights or Path(weights).name != weights:
            raise fail(f"'weights' must be a plain file name beside the JSON, got {weights!r}")
        return cls(name=str(data["name"]), family=str(data["family"]), arch=dict(data["arch"]),
                   input_shape=tuple(shape), num_classes=int(data["num_classes"]), exits=tuple(exits),
                   accuracy=accuracy, val_accuracy=val_accuracy, thresholds=thresholds,
                   target_accuracy=data.get("target_accuracy"), dataset=str(data.get("dataset", "")),
                   seed=int(data.get("seed", 0)), weights=weights,
                   weights_sha256=str(data.get("weights_sha256", "")),
                   weights_dtype=str(data.get("weights_dtype", "float32")), extra=dict(data.get("extra") or {}))


def _exit_floats(values: Any, exits: list[str], key: str, fail, required: bool,
                 bounded: bool = True) -> dict[str, float]:
    if not isinstance(values, dict):
        raise fail(f"'{key}' must be an object of exit -> number, got {values!r}")
    unknown = [e for e in values if e not in exits]
    if unknown:
        raise fail(f"'{key}' names unknown exit(s) {unknown}; exits are {exits}")
    out = {}
    for e in exits:
        if e not in values:
            if required:
                raise fail(f"'{key}' lacks exit {e!r}")
            continue
        v = values[e]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (bounded and not 0.0 <= v <= 1.0):
            raise fail(f"'{key}.{e}' must be a {'number in [0, 1]' if bounded else 'finite number'}, got {v!r}")
        out[e] = float(v)
    return out


def metadata_path(path: str | Path) -> Path:
    """The JSON half of a checkpoint given either half's path (or the path without a suffix)."""
    path = Path(path)
    return path if path.suffix == ".json" else path.with_suffix(".json")


def read_meta(path: str | Path) -> ModelMeta:
    """Only the metadata of a checkpoint (no torch work): exits, accuracy, thresholds, input shape."""
    meta_path = metadata_path(path)
    try:
        text = meta_path.read_text()
    except OSError as exc:
        raise CheckpointError(f"{meta_path}: cannot read checkpoint metadata: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata, not valid JSON "
                              f"(line {exc.lineno}, column {exc.colno}): {exc.msg}") from exc
    return ModelMeta.from_json(data, str(meta_path))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[EarlyExitNet, ModelMeta]:
    """Load ``NAME.pt`` + ``NAME.json`` (either path works) as an eval-mode float32 network on ``device``."""
    meta_path = metadata_path(path)
    meta = read_meta(meta_path)
    weights_path = meta_path.parent / meta.weights
    try:
        blob = weights_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{weights_path}: cannot read weights named in {meta_path}: "
                              f"{exc.strerror or exc}") from exc
    if meta.weights_sha256 and hashlib.sha256(blob).hexdigest() != meta.weights_sha256:
        raise CheckpointError(f"{weights_path}: corrupt weights: SHA-256 differs from the one recorded in "
                              f"{meta_path} (truncated, edited or replaced file)")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad archive
        raise CheckpointError(f"{weights_path}: corrupt weights, not a state_dict saved by torch.save "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights_path}: expected a state_dict (name -> tensor), got {type(state).__name__}")
    try:
        model = build(meta.family, meta.input_shape, meta.num_classes, meta.arch)
    except ValueError as exc:
        raise CheckpointError(f"{meta_path}: cannot build the architecture it describes: {exc}") from None
    if model.exits != meta.exits:
        raise CheckpointError(f"{meta_path}: the architecture has exits {list(model.exits)} but the metadata "
                              f"lists {list(meta.exits)}")
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise CheckpointError(f"{weights_path}: weights do not match the architecture in {meta_path} "
                              f"(family {meta.family!r}, arch {meta.arch}): {detail}") from None
    return model.to(device).eval(), meta


def save_checkpoint(model: EarlyExitNet, meta: ModelMeta, out_dir: str | Path,
                    weights_dtype: torch.dtype = torch.float32) -> Path:
    """Write ``NAME.pt`` and ``NAME.json`` into ``out_dir``; returns the JSON path.

    Floating tensors are stored as ``weights_dtype`` (float16 halves the file) and load back as float32.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{meta.name}.pt"
    state = {k: (v.detach().to("cpu", weights_dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
             for k, v in model.state_dict().items()}
    tmp = weights_path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, weights_path)
    final = ModelMeta(**{**meta.__dict__, "weights": weights_path.name, "weights_sha256": digest,
                         "weights_dtype": str(weights_dtype).removeprefix("torch."),
                         "exits": tuple(model.exits), "input_shape": tuple(model.input_shape),
                         "num_classes": model.num_classes, "family": model.family})
    meta_path = metadata_path(weights_path)
    tmp_meta = meta_path.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(final.to_json(), indent=1, sort_keys=False) + "\n")
    os.replace(tmp_meta, meta_path)
    return meta_path


def load_zoo(checkpoint_dir: str | Path, names: Iterable[str],
             device: str | torch.device = "cpu") -> dict[str, tuple[EarlyExitNet, ModelMeta]]:
    """Load ``NAME.json``/``NAME.pt`` for each name from one folder."""
    return {n: load_checkpoint(Path(checkpoint_dir) / f"{n}.json", device) for n in names}
