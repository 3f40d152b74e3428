"""The model zoo: named specs (family, architecture, dataset, training recipe), the demo zoo and its paths.

The demo zoo (``DEMO_MODELS``) is what the live server and ``make demo`` serve: three small models
of clearly different cost on a CPU. Its checkpoints and CPU profile are committed under
``models/zoo_artifacts/`` and ``profiles/demo_cpu.json``; ``ensure_demo_zoo()`` falls back to a
cache (trained and profiled once) when the committed copy is missing or unreadable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler.paths import REPO_ROOT

ARTIFACT_DIR = Path(__file__).resolve().parent / "zoo_artifacts"  # committed demo checkpoints
DEMO_PROFILE = REPO_ROOT / "profiles" / "demo_cpu.json"  # committed CPU profile of the demo zoo
DEMO_PROFILE_NAME = "demo_cpu.json"
DEMO_THREADS = 1  # torch threads the demo profile is measured with (and the live worker should pin)
DEMO_SEED = 0


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry. ``dataset`` None means untrainable here (profiled with random weights only)."""

    name: str
    family: str
    arch: dict[str, Any]
    dataset: str | None
    description: str
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    input_shape: tuple[int, ...] | None = None  # for untrainable specs (trainable ones take the dataset's)
    num_classes: int | None = None
    image_input: bool = False  # an image model: --input-size can change its height and width


ZOO: dict[str, ModelSpec] = {s.name: s for s in (
    # -- the demo zoo: light, medium, heavy on one CPU thread ---------------------------------------
    ModelSpec("cnn1d_mnist1d", "cnn1d",
              {"channels": [32, 48, 64], "blocks": 1, "kernel": 3, "exits": ["stage1", "stage2"]},
              "mnist1d", "1-D residual CNN on mnist1d signals (1x40); exits after stage1 and stage2",
              train={"epochs": 12, "lr": 3e-3, "exit_weights": [0.3, 0.6, 1.0]}),
    ModelSpec("vit_digits", "vit",
              {"patch": 2, "dim": 64, "depth": 8, "heads": 4, "mlp_ratio": 2.0, "exit_every": 2, "conv_stem": 32},
              "digits", "hybrid ViT on 8x8 digits (3x3 conv stem, 2x2 patches, 8 blocks), exits every 2 blocks",
              train={"epochs": 20, "lr": 1e-3, "weight_decay": 0.05, "exit_weights": [0.25, 0.5, 0.75, 1.0]},
              image_input=True),
    ModelSpec("resnet_digits", "resnet",
              {"block": "basic", "layers": [2, 2, 2], "widths": [16, 32, 64], "stem": "cifar", "upsample": 4,
               "exits": ["layer1", "layer2"]},
              "digits", "ResNet (basic blocks, 2-2-2) on digits upsampled to 32x32, exits after layer1 and layer2",
              train={"epochs": 12, "lr": 3e-3, "augment_shift": 1}, image_input=True),
    # -- more zoo members (trainable here) -----------------------------------------------------------
    ModelSpec("resnet_bottleneck_digits", "resnet",
              {"block": "bottleneck", "layers": [1, 1, 1], "widths": [8, 16, 32], "stem": "cifar", "stem_width": 16,
               "upsample": 2, "exits": ["layer1", "layer2"]},
              "digits", "ResNet with bottleneck blocks on digits upsampled to 16x16",
              train={"epochs": 15, "lr": 3e-3, "augment_shift": 1}, image_input=True),
    ModelSpec("transformer_mnist1d", "vit",
              {"patch": 4, "dim": 48, "depth": 4, "heads": 4, "mlp_ratio": 2.0, "exit_after": [1, 2]},
              "mnist1d", "small transformer encoder on mnist1d (tokens of 4 samples), exits after blocks 1 and 2",
              train={"epochs": 20, "lr": 2e-3, "weight_decay": 0.05, "exit_weights": [0.3, 0.6, 1.0]}),
    ModelSpec("cnn1d_breast_cancer", "cnn1d",
              {"channels": [16, 32], "blocks": 1, "kernel": 3, "exits": ["stage1"]},
              "breast_cancer", "1-D CNN over the 30 breast-cancer features",
              train={"epochs": 30, "lr": 3e-3}),
    # -- the seed workload's layouts (ImageNet-size inputs; random weights, profiling only) ------------
    *(ModelSpec(name, "resnet", {"layout": name, "stem": "imagenet", "exits": ["layer1", "layer2", "layer3"]},
                None, f"{name} layout (bottleneck), exits after layer1-3 as in the seed workload",
                input_shape=(3, 224, 224), num_classes=100, image_input=True)
      for name in ("resnet50", "resnet101", "resnet152")),
)}

DEMO_MODELS: tuple[str, ...] = ("cnn1d_mnist1d", "vit_digits", "resnet_digits")  # light, medium, heavy


def spec(name: str) -> ModelSpec:
    try:
        return ZOO[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; the zoo has {sorted(ZOO)}") from None


def parse_models(text: str | None, default: Sequence[str] = DEMO_MODELS) -> list[str]:
    """``"a,b"`` -> ["a", "b"] (each checked); ``"demo"`` or None -> the default; ``"all"`` -> every trainable model."""
    if text is None or text == "demo":
        return list(default)
    if text == "all":
        return [n for n, s in ZOO.items() if s.dataset is not None]
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError(f"no model names in {text!r}; the zoo has {sorted(ZOO)}")
    for n in names:
        spec(n)
    return names


# -- where things live ------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Per-user cache for a trained/profiled demo zoo: $EDGESERVING_CACHE, else ~/.cache/edgeserving."""
    env = os.environ.get("EDGESERVING_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeserving"
    return base / "zoo"


def checkpoint_path(name: str, checkpoint_dir: str | Path = ARTIFACT_DIR) -> Path:
    """The JSON half of model ``name``'s checkpoint in ``checkpoint_dir`` (weights: same stem, ``.pt``)."""
    return Path(checkpoint_dir) / f"{name}.json"


def default_checkpoint_dir(names: Sequence[str]) -> Path:
    """The committed artifact folder when it holds every model in ``names``, else the cache folder."""
    if all(checkpoint_path(n, ARTIFACT_DIR).exists() for n in names):
        return ARTIFACT_DIR
    return cache_dir()


@dataclass(frozen=True, slots=True)
class DemoZoo:
    """Where a usable demo zoo lies: checkpoints (``NAME.json`` + ``NAME.pt``) and the CPU profile."""

    checkpoint_dir: Path
    profile_path: Path
    models: tuple[str, ...]
    source: str  # "committed", "cache" or "trained"

    def checkpoint(self, name: str) -> Path:
        if name not in self.models:
            raise ValueError(f"unknown demo model {name!r}; the demo zoo has {list(self.models)}")
        return checkpoint_path(name, self.checkpoint_dir)


def demo_zoo_paths(root: Path | None = None) -> DemoZoo:
    """The committed demo zoo's paths (without checking them); ``root`` a cache folder instead."""
    if root is None:
        return DemoZoo(ARTIFACT_DIR, DEMO_PROFILE, DEMO_MODELS, "committed")
    return DemoZoo(Path(root), Path(root) / DEMO_PROFILE_NAME, DEMO_MODELS, "cache")


def ensure_demo_zoo(cache: str | Path | None = None, device: str = "cpu", threads: int = DEMO_THREADS,
                    force: bool = False, log: Callable[[str], None] | None = None) -> DemoZoo:
    """A demo zoo that loads: the committed one, else a cached one, else one trained and profiled now.

    ``force`` retrains and re-profiles into the cache. Training takes about a minute on 2 cores.
    """
    from models.build_zoo import demo_zoo_problem, train_and_profile_demo

    say = log or (lambda _msg: None)
    if not force:
        committed = demo_zoo_paths()
        problem = demo_zoo_problem(committed)
        if problem is None:
            return committed
        say(f"committed demo zoo unusable ({problem}); looking in the cache")
    cached = demo_zoo_paths(Path(cache) if cache is not None else cache_dir())
    if not force:
        problem = demo_zoo_problem(cached)
        if problem is None:
            return cached
        say(f"no usable cached demo zoo at {cached.checkpoint_dir} ({problem}); training and profiling it")
    train_and_profile_demo(cached, device=device, threads=threads, log=say)
    return DemoZoo(cached.checkpoint_dir, cached.profile_path, cached.models, "trained")
