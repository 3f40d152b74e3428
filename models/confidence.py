"""Per-sample confidence for BranchyNet exits, and threshold calibration on a validation split.

Two criteria: ``max_softmax`` (confident when the top class probability is at least the
threshold) and ``entropy`` (confident when the softmax entropy, divided by log(num_classes) so it
lies in [0, 1], is at most the threshold).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Criterion = Literal["max_softmax", "entropy"]
CRITERIA: tuple[str, ...] = ("max_softmax", "entropy")

# Thresholds no sample can pass: a head that never reaches the target accuracy never lets one out.
NEVER = {"max_softmax": 2.0, "entropy": -1.0}


def check_criterion(criterion: str) -> Criterion:
    if criterion not in CRITERIA:
        raise ValueError(f"unknown confidence criterion {criterion!r}; choose one of {list(CRITERIA)}")
    return criterion  # type: ignore[return-value]


def score(logits: Tensor, criterion: Criterion) -> Tensor:
    """Per-sample confidence score; for ``entropy`` this is the normalised entropy (lower = surer)."""
    probs = torch.softmax(logits.float(), dim=-1)
    if criterion == "max_softmax":
        return probs.max(dim=-1).values
    if criterion == "entropy":
        ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1)
        return ent / math.log(max(logits.shape[-1], 2))
    raise ValueError(f"unknown confidence criterion {criterion!r}; choose one of {list(CRITERIA)}")


def is_confident(logits: Tensor, criterion: Criterion, threshold: float) -> Tensor:
    """Boolean mask of the samples confident enough to leave at this head."""
    s = score(logits, criterion)
    return s >= threshold if criterion == "max_softmax" else s <= threshold


def calibrate_threshold(logits: Tensor, labels: Tensor, criterion: Criterion, target_accuracy: float) -> float:
    """The loosest threshold at which the samples this head lets out are at least ``target_accuracy`` correct.

    Sorting the validation samples from most to least confident, the threshold is the score of
    the last sample of the longest prefix whose accuracy meets the target: it lets out as many
    samples as possible while the ones it lets out keep the target accuracy. A head that never
    meets the target gets a threshold no sample passes.
    """
    if not 0.0 < target_accuracy <= 1.0:
        raise ValueError(f"target accuracy must be in (0, 1], got {target_accuracy}")
    s = score(logits, criterion)
    correct = (logits.argmax(dim=-1) == labels).float()
    order = torch.argsort(s, descending=(criterion == "max_softmax"), stable=True)
    s_sorted, c_sorted = s[order], correct[order]
    prefix_acc = torch.cumsum(c_sorted, 0) / torch.arange(1, len(c_sorted) + 1)
    # A prefix must not split samples with equal scores: the threshold would let them all out.
    boundary = torch.ones_like(s_sorted, dtype=torch.bool)
    boundary[:-1] = s_sorted[:-1] != s_sorted[1:]
    ok = torch.nonzero((prefix_acc >= target_accuracy - 1e-9) & boundary).flatten()
    if ok.numel() == 0:
        return NEVER[criterion]
    return float(s_sorted[int(ok[-1])])
