"""ViT-style early-exit transformer classifier, for images (C, H, W) or signals (C, L).

Patches become tokens (a strided convolution), a learned class token and position embedding are
added, and pre-norm transformer blocks follow. An exit head (LayerNorm + linear on the class
token) sits after every ``exit_every`` blocks; the last block always carries the ``final`` head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.base import EarlyExitNet


class Block(nn.Module):
    """Pre-norm transformer block: self-attention then an MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"transformer width {dim} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class Embed(nn.Module):
    """Patches to tokens, with a class token in front and a learned position embedding."""

    def __init__(self, input_shape: Sequence[int], patch: int, dim: int, conv_stem: int = 0) -> None:
        super().__init__()
        channels, *spatial = (int(d) for d in input_shape)
        if len(spatial) not in (1, 2) or any(s % patch for s in spatial):
            raise ValueError(f"ViT input_shape must be (C, L) or (C, H, W) with sides divisible by the patch "
                             f"size {patch}, got {tuple(input_shape)}")
        conv = nn.Conv1d if len(spatial) == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if len(spatial) == 1 else nn.BatchNorm2d
        # A convolutional stem (hybrid ViT) gives the tokens local features: on ~1k training images a
        # plain linear patch embedding overfits long before the deeper blocks learn anything.
        self.stem: nn.Module = nn.Identity()
        if conv_stem:
            self.stem = nn.Sequential(conv(channels, conv_stem, 3, 1, 1, bias=False), norm(conv_stem),
                                      nn.ReLU(inplace=True))
            channels = conv_stem
        self.proj = conv(channels, dim, patch, patch)
        tokens = 1
        for s in spatial:
            tokens *= s // patch
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        t = self.proj(self.stem(x)).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos


class TokenHead(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.norm(x[:, 0]))


def build_vit(input_shape: Sequence[int], num_classes: int, patch: int = 2, dim: int = 64, depth: int = 6,
              heads: int = 4, mlp_ratio: float = 2.0, exit_every: int = 2,
              exit_after: Sequence[int] | None = None, conv_stem: int = 0) -> EarlyExitNet:
    """A ViT with exits after every ``exit_every`` blocks, or after the blocks listed in ``exit_after``
    (1-based block counts; the last block's ``final`` exit is always added). ``conv_stem`` > 0 puts a
    3x3 convolution with that many channels before the patch embedding."""
    after = sorted(set(exit_after)) if exit_after is not None else list(range(exit_every, depth, exit_every))
    if any(not 1 <= a < depth for a in after):
        raise ValueError(f"ViT exits must follow blocks 1..{depth - 1} (the final exit follows block {depth}); "
                         f"got {after}")
    after = [*after, depth]
    stages: list[nn.Module] = []
    heads_: list[nn.Module] = []
    names: list[str] = []
    start = 0
    for end in after:
        mods: list[nn.Module] = [Embed(input_shape, patch, dim, conv_stem)] if start == 0 else []
        mods += [Block(dim, heads, mlp_ratio) for _ in range(start, end)]
        stages.append(nn.Sequential(*mods))
        heads_.append(TokenHead(dim, num_classes))
        names.append(f"block{end}" if end != depth else "final")
        start = end
    return EarlyExitNet("vit", stages, heads_, names, input_shape, num_classes)
