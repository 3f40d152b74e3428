"""Model families by name: each builds an ``EarlyExitNet`` from an input shape, a class count and
architecture keyword arguments (the ``arch`` of a checkpoint's metadata)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from models.base import EarlyExitNet
from models.cnn1d import build_cnn1d
from models.resnet import build_resnet
from models.vit import build_vit

FAMILIES: dict[str, Callable[..., EarlyExitNet]] = {
    "resnet": build_resnet,
    "vit": build_vit,
    "cnn1d": build_cnn1d,
}


def build(family: str, input_shape: Sequence[int], num_classes: int, arch: Mapping[str, Any]) -> EarlyExitNet:
    """Build a fresh (untrained) network of ``family``; unknown names or arguments raise ``ValueError``."""
    try:
        builder = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known families are {sorted(FAMILIES)}") from None
    try:
        return builder(tuple(input_shape), int(num_classes), **dict(arch))
    except TypeError as exc:  # an unexpected keyword in arch
        raise ValueError(f"bad architecture for family {family!r}: {exc}") from None
