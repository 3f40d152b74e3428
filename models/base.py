"""The early-exit network: backbone stages plus one classifier head per exit.

Stage ``k`` is the part of the backbone between exit ``k-1`` and exit ``k``; head ``k`` turns the
hidden state after stage ``k`` into logits. Running to exit ``k`` therefore runs stages ``0..k``
and head ``k`` and nothing past it, which is what makes a shallow exit cheaper on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.confidence import Criterion, is_confident


@dataclass(frozen=True, slots=True)
class ConfidentOutput:
    """Result of a confidence-exit pass: per sample, the logits of the head it left at."""

    logits: Tensor  # (batch, num_classes), row i from the head sample i exited at
    exit_indices: Tensor  # (batch,) long, index into ``exits`` of the head each sample took
    stage_batches: tuple[int, ...]  # batch size each stage actually ran with (shows the compaction)


class EarlyExitNet(nn.Module):
    """A backbone cut into stages, one classifier head after each stage.

    ``exits`` names the heads, shallowest first; ``input_shape`` is one sample's shape (no batch
    dimension). Inputs are normalised inside the network with ``input_mean``/``input_std``
    buffers, set from the training split, so callers feed raw data exactly as the dataset has it.
    """

    def __init__(self, family: str, stages: Sequence[nn.Module], heads: Sequence[nn.Module],
                 exits: Sequence[str], input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if len(stages) != len(heads) or len(stages) != len(exits) or not exits:
            raise ValueError(f"an early-exit net needs one stage and one head per exit; got {len(stages)} "
                             f"stages, {len(heads)} heads and exits {list(exits)}")
        if len(set(exits)) != len(exits):
            raise ValueError(f"duplicate exit names in {list(exits)}")
        self.family = family
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)
        self.exits: tuple[str, ...] = tuple(exits)
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.register_buffer("input_mean", torch.zeros(self.input_shape))
        self.register_buffer("input_std", torch.ones(self.input_shape))

    # -- exits -----------------------------------------------------------------------------

    def exit_index(self, exit: str | int | None) -> int:
        """Index of ``exit`` (a name, an index, or None for the final exit)."""
        if exit is None:
            return len(self.exits) - 1
        if isinstance(exit, int) and not isinstance(exit, bool):
            if 0 <= exit < len(self.exits):
                return exit
            raise ValueError(f"exit index {exit} out of range; this model has exits {list(self.exits)}")
        try:
            return self.exits.index(exit)
        except ValueError:
            raise ValueError(f"unknown exit {exit!r}; valid exits are {list(self.exits)}") from None

    def set_normalization(self, mean: Tensor, std: Tensor) -> None:
        """Fix the input normalisation (per-element mean and std over the training split)."""
        self.input_mean.copy_(mean.reshape(self.input_shape))
        self.input_std.copy_(std.reshape(self.input_shape).clamp_min(1e-6))

    # -- the per-stage API (a preemptive executor drives these one at a time) ---------------

    def run_stage(self, k: int, h: Tensor) -> Tensor:
        """Run stage ``k`` on ``h`` (the raw input batch when ``k == 0``, else stage ``k-1``'s output)."""
        if k == 0:
            h = (h - self.input_mean) / self.input_std
        return self.stages[k](h)

    def head(self, k: int, h: Tensor) -> Tensor:
        """Logits of head ``k`` from the hidden state after stage ``k``."""
        return self.heads[k](h)

    def iter_exits(self, x: Tensor, cap: str | int | None = None) -> Iterator[tuple[str, Tensor]]:
        """Yield ``(exit_name, logits)`` after each stage, up to and including ``cap``.

        Stopping the iteration early leaves the deeper stages unrun.
        """
        last = self.exit_index(cap)
        h = x
        for k in range(last + 1):
            h = self.run_stage(k, h)
            yield self.exits[k], self.head(k, h)

    # -- whole passes ----------------------------------------------------------------------

    def forward(self, x: Tensor, exit: str | int | None = None) -> Tensor:
        """Logits at ``exit`` (default: the final one); stages past the exit are never run."""
        last = self.exit_index(exit)
        h = x
        for k in range(last + 1):
            h = self.run_stage(k, h)
        return self.head(last, h)

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """Every head's logits, shallowest first (the training pass)."""
        return [logits for _, logits in self.iter_exits(x)]

    def forward_confident(self, x: Tensor, cap: str | int | None, thresholds: Sequence[float],
                          criterion: Criterion = "max_softmax") -> ConfidentOutput:
        """BranchyNet exit under a cap: each sample leaves at the first confident head, never past ``cap``.

        ``thresholds[k]`` applies to head ``k`` (entries at or past the cap are ignored: the cap
        takes every sample still running). Samples that exit are removed from the batch before
        the next stage runs, so deeper stages only see the samples still undecided.
        """
        last = self.exit_index(cap)
        if len(thresholds) < last:
            raise ValueError(f"need a threshold for each exit before the cap {self.exits[last]!r} "
                             f"({last}), got {len(thresholds)}")
        batch = x.shape[0]
        out = torch.empty(batch, self.num_classes, dtype=x.dtype, device=x.device)
        exit_indices = torch.full((batch,), last, dtype=torch.long, device=x.device)
        alive = torch.arange(batch, device=x.device)
        stage_batches = []
        h = x
        for k in range(last + 1):
            stage_batches.append(int(alive.numel()))
            h = self.run_stage(k, h)
            logits = self.head(k, h)
            if k == last:
                out[alive] = logits
                break
            done = is_confident(logits, criterion, thresholds[k])
            out[alive[done]] = logits[done]
            exit_indices[alive[done]] = k
            keep = ~done
            alive, h = alive[keep], h[keep]
            if alive.numel() == 0:
                break
        return ConfidentOutput(out, exit_indices, tuple(stage_batches))
