"""1-D residual CNN with early exits, for signal inputs shaped (channels, length), e.g. mnist1d.

The backbone is a stem convolution and ``len(channels)`` stages of residual conv blocks; every
stage but the first halves the length. A head (global average pooling + linear) follows each
stage named in ``exits`` and the last stage (``final``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from models.base import EarlyExitNet
from models.resnet import PoolHead


class ConvBlock1d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(in_ch, out_ch, kernel, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm1d(out_ch)
        self.conv2 = nn.Conv1d(out_ch, out_ch, kernel, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm1d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv1d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm1d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def build_cnn1d(input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64, 96),
                blocks: int = 1, kernel: int = 5, exits: Sequence[str] = ("stage1", "stage2")) -> EarlyExitNet:
    if len(input_shape) != 2:
        raise ValueError(f"a 1-D CNN takes (channels, length) inputs, got input_shape {tuple(input_shape)}")
    names = [f"stage{i + 1}" for i in range(len(channels))]
    bad = [e for e in exits if e not in names[:-1]]
    if bad:
        raise ValueError(f"1-D CNN exits {bad} must name stages before the last one ({names[:-1]}); "
                         f"the final exit follows {names[-1]} and is always present")
    stem = nn.Sequential(nn.Conv1d(int(input_shape[0]), channels[0], kernel, 1, kernel // 2, bias=False),
                         nn.BatchNorm1d(channels[0]), nn.ReLU(inplace=True))
    stages: list[nn.Module] = []
    heads: list[nn.Module] = []
    exit_names: list[str] = []
    pending: list[nn.Module] = [stem]
    ch = channels[0]
    for i, (name, width) in enumerate(zip(names, channels)):
        for j in range(blocks):
            pending.append(ConvBlock1d(ch, width, kernel, 2 if (i > 0 and j == 0) else 1))
            ch = width
        if name in exits or i == len(channels) - 1:
            stages.append(nn.Sequential(*pending))
            heads.append(PoolHead(ch, num_classes, pool_dims=1))
            exit_names.append(name if i < len(channels) - 1 else "final")
            pending = []
    return EarlyExitNet("cnn1d", stages, heads, exit_names, input_shape, num_classes)
