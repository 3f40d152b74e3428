"""Joint training of every exit (BranchyNet), optional self-distillation, evaluation and calibration.

The loss is ``sum_k w_k * CE(head_k, y)``; with distillation each earlier head also matches the
final head's softened prediction (KL at temperature T, the final head detached). Everything that
draws random numbers uses a private ``torch.Generator`` seeded from ``seed``, so a run is
reproducible and leaves torch's global generator untouched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from models.base import EarlyExitNet
from models.confidence import CRITERIA, calibrate_threshold
from models.data import Dataset, Split


@dataclass(frozen=True, slots=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    exit_weights: tuple[float, ...] | None = None  # per exit; None = all 1.0
    distill: bool = False  # self-distillation from the final exit to the earlier ones
    distill_weight: float = 0.5
    temperature: float = 3.0
    label_smoothing: float = 0.0
    augment_shift: int = 0  # random translation of each training sample by up to this many positions per axis
    threads: int | None = None  # torch intra-op threads while training; None leaves torch's setting


@dataclass(slots=True)
class TrainResult:
    val_accuracy: dict[str, float]
    test_accuracy: dict[str, float]
    thresholds: dict[str, dict[str, float]]  # criterion -> non-final exit -> threshold
    target_accuracy: float
    train_s: float
    history: list[float] = field(default_factory=list)  # mean training loss per epoch


def init_model(build: Callable[[], EarlyExitNet], seed: int) -> EarlyExitNet:
    """Build a network with weights initialised from ``seed`` (torch's global RNG is restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def train(model: EarlyExitNet, data: Dataset, config: TrainConfig, seed: int,
          target_accuracy: float | None = None, round_to: torch.dtype | None = None,
          on_epoch: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data.train``, then measure every exit on validation and test.

    ``round_to`` (e.g. ``torch.float16``) rounds the trained weights to the dtype they will be
    stored in before measuring, so the reported accuracy is the stored checkpoint's.
    ``target_accuracy`` (default: the final exit's validation accuracy minus one point) is what
    the confidence thresholds are calibrated for.
    """
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}")
    n_exits = len(model.exits)
    weights = config.exit_weights or (1.0,) * n_exits
    if len(weights) != n_exits:
        raise ValueError(f"need one exit weight per exit {list(model.exits)}, got {list(weights)}")
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        start = time.perf_counter()
        history = _fit(model, data.train, config, weights, seed, on_epoch, data.tabular)
        if round_to is not None:
            with torch.no_grad():
                for t in model.state_dict().values():
                    if t.is_floating_point():
                        t.copy_(t.to(round_to).to(t.dtype))
        train_s = time.perf_counter() - start
        val_logits = predict_all(model, data.val)
        test_logits = predict_all(model, data.test)
    finally:
        torch.set_num_threads(old_threads)
    val_y, test_y = torch.from_numpy(np.array(data.val.y)), torch.from_numpy(np.array(data.test.y))
    val_acc = {e: _accuracy(lg, val_y) for e, lg in zip(model.exits, val_logits)}
    test_acc = {e: _accuracy(lg, test_y) for e, lg in zip(model.exits, test_logits)}
    target = target_accuracy if target_accuracy is not None else max(val_acc[model.exits[-1]] - 0.01, 0.01)
    thresholds = {c: {e: calibrate_threshold(lg, val_y, c, target)
                      for e, lg in zip(model.exits[:-1], val_logits[:-1])} for c in CRITERIA}
    return TrainResult(val_acc, test_acc, thresholds, target, train_s, history)


def _fit(model: EarlyExitNet, split: Split, config: TrainConfig, weights: Sequence[float], seed: int,
         on_epoch: Callable[[int, float], None] | None, per_feature: bool) -> list[float]:
    x_all, y_all = torch.from_numpy(np.array(split.x)), torch.from_numpy(np.array(split.y))
    if per_feature:
        mean, std = x_all.mean(dim=0), x_all.std(dim=0)
    else:
        # One mean/std per channel: per-pixel statistics explode on pixels that are always blank in
        # training (std ~ 0) as soon as a test or shifted sample has ink there.
        dims = [0, *range(2, x_all.dim())]
        mean = x_all.mean(dim=dims, keepdim=True)[0].expand(x_all.shape[1:])
        std = x_all.std(dim=dims, keepdim=True)[0].expand(x_all.shape[1:])
    model.set_normalization(mean, std)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(split) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
                                                pct_start=0.15)
    history = []
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(split), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(split), config.batch_size):
            idx = order[i:i + config.batch_size]
            x, y = x_all[idx], y_all[idx]
            if config.augment_shift:
                x = _shift(x, config.augment_shift, gen)
            loss = _loss(model.forward_all(x), y, weights, config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / count)
        if on_epoch is not None:
            on_epoch(epoch + 1, history[-1])
    model.eval()
    return history


def _shift(x: Tensor, max_shift: int, gen: torch.Generator) -> Tensor:
    """Translate each sample by a random offset in [-max_shift, max_shift] per spatial axis, zero-filled."""
    spatial = x.dim() - 2
    s = max_shift
    padded = F.pad(x, (s, s) * spatial)
    offsets = torch.randint(0, 2 * s + 1, (len(x), spatial), generator=gen)
    out = torch.empty_like(x)
    size = x.shape[2:]
    # One slice per distinct offset (at most (2s+1)^spatial), not one per sample.
    for off in torch.unique(offsets, dim=0).tolist():
        rows = (offsets == torch.tensor(off)).all(dim=1)
        window = tuple(slice(o, o + n) for o, n in zip(off, size))
        out[rows] = padded[(rows, slice(None), *window)]
    return out


def _loss(all_logits: list[Tensor], y: Tensor, weights: Sequence[float], config: TrainConfig) -> Tensor:
    loss = sum(w * F.cross_entropy(lg, y, label_smoothing=config.label_smoothing)
               for w, lg in zip(weights, all_logits))
    if config.distill and len(all_logits) > 1:
        t = config.temperature
        teacher = F.softmax(all_logits[-1].detach() / t, dim=-1)
        for w, lg in zip(weights[:-1], all_logits[:-1]):
            kl = F.kl_div(F.log_softmax(lg / t, dim=-1), teacher, reduction="batchmean") * t * t
            loss = loss + config.distill_weight * w * kl
    return loss / sum(weights)


@torch.inference_mode()
def predict_all(model: EarlyExitNet, split: Split, batch_size: int = 256) -> list[Tensor]:
    """Every exit's logits over a whole split, in eval mode."""
    model.eval()
    x = torch.from_numpy(np.array(split.x))
    chunks = [model.forward_all(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return [torch.cat([c[k] for c in chunks]) for k in range(len(model.exits))]


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(dim=-1) == y).float().mean())
