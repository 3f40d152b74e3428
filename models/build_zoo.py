"""Putting the zoo together: train a spec into a checkpoint, load models for profiling, profile them,
and build or check the demo zoo (checkpoints + CPU profile)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.base import EarlyExitNet
from models.checkpoint import CheckpointError, ModelMeta, load_checkpoint, save_checkpoint
from models.data import load_dataset
from models.families import build
from models.profiler import ModelInfo, build_profile, measure
from models.train import TrainConfig, TrainResult, init_model, train
from models.zoo import DEMO_SEED, DemoZoo, ModelSpec, checkpoint_path, spec
from scheduler.profile import Profile, ProfileError

DEMO_BATCH_SIZES = tuple(range(1, 11))
DEMO_WARMUP = 5
DEMO_REPEATS = 40
STORE_DTYPE = torch.float16  # checkpoints are stored in half precision (the demo zoo stays well under 2 MB)


def train_spec(s: ModelSpec, out_dir: str | Path, seed: int, epochs: int | None = None,
               distill: bool | None = None, threads: int | None = 1,
               on_epoch: Callable[[int, float], None] | None = None,
               target_accuracy: float | None = None) -> tuple[Path, ModelMeta, TrainResult]:
    """Train zoo entry ``s`` on its dataset and write its checkpoint; returns (json path, meta, result)."""
    if s.dataset is None:
        raise ValueError(f"model {s.name!r} has no bundled dataset to train on (it is for profiling with "
                         f"--random-weights only)")
    overrides = dict(s.train)
    if epochs is not None:
        overrides["epochs"] = epochs
    if distill is not None:
        overrides["distill"] = distill
    config = TrainConfig(threads=threads, **overrides)
    data = load_dataset(s.dataset, seed)
    model = init_model(lambda: build(s.family, data.input_shape, data.num_classes, s.arch), seed)
    result = train(model, data, config, seed, target_accuracy=target_accuracy, round_to=STORE_DTYPE,
                   on_epoch=on_epoch)
    meta = ModelMeta(
        name=s.name, family=s.family, arch=dict(s.arch), input_shape=data.input_shape,
        num_classes=data.num_classes, exits=model.exits, accuracy=_rounded(result.test_accuracy),
        val_accuracy=_rounded(result.val_accuracy), thresholds=result.thresholds,
        target_accuracy=round(result.target_accuracy, 6), dataset=s.dataset, seed=seed,
        extra={"description": s.description, "params": sum(p.numel() for p in model.parameters()),
               "train_s": round(result.train_s, 2), "train_threads": threads,
               "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
               "train_config": {k: v for k, v in asdict(config).items() if k != "threads"},
               "loss_per_epoch": [round(v, 5) for v in result.history], "torch_version": torch.__version__})
    path = save_checkpoint(model, meta, out_dir, weights_dtype=STORE_DTYPE)
    return path, meta, result


def _rounded(acc: Mapping[str, float]) -> dict[str, float]:
    return {e: round(v, 6) for e, v in acc.items()}


def model_for_profile(name: str, checkpoint_dir: str | Path | None, random_weights: bool, seed: int,
                      input_size: int | None = None,
                      seed_accuracy: Mapping[str, Mapping[str, float]] | None = None) -> tuple[EarlyExitNet, ModelInfo]:
    """A network to time and what the profile records about it.

    With ``random_weights`` the network is built from the zoo spec (``input_size`` resizes an image
    model's height and width) and its accuracy is the seed profile's where the seed profile has
    the model, else chance; otherwise the checkpoint in ``checkpoint_dir`` gives weights and accuracy.
    """
    s = spec(name)
    if not random_weights:
        if input_size is not None:
            raise ValueError("--input-size changes the architecture's input; it needs --random-weights")
        if checkpoint_dir is None:
            raise ValueError("profiling trained models needs a checkpoint folder")
        path = checkpoint_path(name, checkpoint_dir)
        if not path.exists():
            raise ValueError(f"{path}: no checkpoint of {name!r}; train it with `edgeserving train --models {name} "
                             f"--out {checkpoint_dir}`, or time random weights with --random-weights")
        model, meta = load_checkpoint(path)
        return model, ModelInfo(dict(meta.accuracy), {
            "input_shape": list(meta.input_shape), "num_classes": meta.num_classes, "family": meta.family,
            "dataset": meta.dataset, "weights": "trained", "accuracy_source": "checkpoint (test split)",
            "params": sum(p.numel() for p in model.parameters())})
    shape, num_classes = _shape_of(s, input_size)
    model = init_model(lambda: build(s.family, shape, num_classes, s.arch), seed).eval()
    seed_acc = (seed_accuracy or {}).get(name)
    if seed_acc is not None and all(e in seed_acc for e in model.exits):
        accuracy, source = {e: float(seed_acc[e]) for e in model.exits}, "seed profile (published CIFAR-100 figures)"
    else:
        accuracy, source = {e: 1.0 / num_classes for e in model.exits}, "chance (random weights)"
    return model, ModelInfo(accuracy, {
        "input_shape": list(shape), "num_classes": num_classes, "family": s.family, "weights": "random",
        "accuracy_source": source, "params": sum(p.numel() for p in model.parameters())})


def _shape_of(s: ModelSpec, input_size: int | None) -> tuple[tuple[int, ...], int]:
    if s.dataset is not None:
        data = load_dataset(s.dataset, DEMO_SEED)
        shape, num_classes = data.input_shape, data.num_classes
    else:
        assert s.input_shape is not None and s.num_classes is not None, f"spec {s.name} lacks an input shape"
        shape, num_classes = s.input_shape, s.num_classes
    if input_size is not None:
        if not s.image_input:
            raise ValueError(f"--input-size applies to image models; {s.name!r} takes {list(shape)}")
        if input_size < 1:
            raise ValueError(f"--input-size must be a positive number of pixels, got {input_size}")
        shape = (shape[0], input_size, input_size)
    return tuple(shape), num_classes


def profile_models(models: Mapping[str, tuple[EarlyExitNet, ModelInfo]], device: torch.device,
                   batch_sizes: Sequence[int], warmup: int, repeats: int, threads: int, name: str, seed: int,
                   tick: Callable[[], None] | None = None, description: str = "") -> dict[str, Any]:
    """Time every (model, exit, batch) with the torch executor and return the profile JSON object."""
    from models.executor import TorchExecutor

    old_threads = torch.get_num_threads()
    try:
        executor = TorchExecutor({n: m for n, (m, _) in models.items()}, device, threads=threads)
        samples = measure(executor, batch_sizes, warmup, repeats, np.random.default_rng(seed), tick)
    finally:
        torch.set_num_threads(old_threads)
    return build_profile(name, executor, samples, {n: info for n, (_, info) in models.items()}, threads,
                         warmup, repeats, description)


def write_profile(data: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    Profile.load(path)  # what the engine will read must load
    return path


# -- the demo zoo ------------------------------------------------------------------------------------

def demo_zoo_problem(zoo: DemoZoo) -> str | None:
    """Why ``zoo`` cannot be served (a missing/corrupt checkpoint, a profile that does not fit), or None."""
    metas = {}
    for name in zoo.models:
        try:
            metas[name] = load_checkpoint(zoo.checkpoint(name))[1]
        except CheckpointError as exc:
            return str(exc)
    try:
        profile = Profile.load(zoo.profile_path)
    except ProfileError as exc:
        return str(exc)
    for name, meta in metas.items():
        if name not in profile.models:
            return f"{zoo.profile_path}: has no entry for model {name!r}"
        if profile.models[name].exits != meta.exits:
            return (f"{zoo.profile_path}: exits of {name!r} are {list(profile.models[name].exits)} but its "
                    f"checkpoint has {list(meta.exits)}")
    return None


def train_and_profile_demo(zoo: DemoZoo, device: str = "cpu", threads: int = 1,
                           log: Callable[[str], None] | None = None) -> None:
    """Train the demo zoo into ``zoo.checkpoint_dir`` and write its profile to ``zoo.profile_path``."""
    from models.device import pick_device

    say = log or (lambda _msg: None)
    for name in zoo.models:
        say(f"training {name}")
        _, meta, result = train_spec(spec(name), zoo.checkpoint_dir, DEMO_SEED)
        say(f"  {name}: test accuracy {meta.accuracy} in {result.train_s:.1f} s")
    say(f"profiling the demo zoo ({threads} thread(s))")
    models = {n: model_for_profile(n, zoo.checkpoint_dir, False, DEMO_SEED) for n in zoo.models}
    data = profile_models(models, pick_device(device), DEMO_BATCH_SIZES, DEMO_WARMUP, DEMO_REPEATS, threads,
                          "demo-zoo-cpu", DEMO_SEED)
    write_profile(data, zoo.profile_path)
