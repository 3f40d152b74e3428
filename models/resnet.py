"""ResNet-style early-exit CNNs (basic and bottleneck blocks), written from scratch.

``LAYOUTS`` holds the ImageNet ResNet-50/101/152 layouts (bottleneck blocks, 3-4-6-3, 3-4-23-3,
3-8-36-3) with exits after layer1, layer2 and layer3 plus the final classifier, as in the seed
workload; small variants for 8x8 digits use the CIFAR-style stem (3x3 conv, no max-pool).
Each exit head is global average pooling plus a linear classifier, like the final one.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from models.base import EarlyExitNet

# name -> (block, blocks per layer); widths are the standard 64-128-256-512 (times 4 for bottleneck).
LAYOUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride on the 3x3, as torchvision v1.5
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class PoolHead(nn.Sequential):
    """Global average pooling, then a linear classifier (the shape of every exit head here)."""

    def __init__(self, channels: int, num_classes: int, pool_dims: int = 2) -> None:
        pool = nn.AdaptiveAvgPool2d(1) if pool_dims == 2 else nn.AdaptiveAvgPool1d(1)
        super().__init__(pool, nn.Flatten(), nn.Linear(channels, num_classes))


def build_resnet(input_shape: Sequence[int], num_classes: int, block: str = "basic",
                 layers: Sequence[int] = (1, 1, 1), widths: Sequence[int] | None = None, stem: str = "cifar",
                 stem_width: int | None = None, exits: Sequence[str] = ("layer1", "layer2"),
                 layout: str | None = None, upsample: int = 1) -> EarlyExitNet:
    """An early-exit ResNet. ``exits`` lists the layers with a head after them; ``final`` is always added.

    ``layout`` (one of ``LAYOUTS``) overrides ``block``/``layers``/``widths`` with a standard ResNet.
    ``upsample`` > 1 enlarges small images bilinearly before the stem (8x8 digits to CIFAR's 32x32
    with 4): more spatial positions per filter, so more compute per parameter.
    """
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown ResNet layout {layout!r}; known layouts are {sorted(LAYOUTS)}")
        block, layers = LAYOUTS[layout]
        widths = (64, 128, 256, 512)
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"unknown ResNet block {block!r}; choose 'basic' or 'bottleneck'")
    layers = tuple(int(n) for n in layers)
    widths = tuple(widths) if widths is not None else tuple(16 * 2**i for i in range(len(layers)))
    if len(widths) != len(layers) or not layers or min(layers) < 1:
        raise ValueError(f"need one width per layer and at least one block per layer; got layers {layers}, "
                         f"widths {widths}")
    layer_names = [f"layer{i + 1}" for i in range(len(layers))]
    bad = [e for e in exits if e not in layer_names[:-1]]
    if bad:
        raise ValueError(f"ResNet exits {bad} must name layers before the last one ({layer_names[:-1]}); "
                         f"the final exit follows {layer_names[-1]} and is always present")
    if len(input_shape) != 3:
        raise ValueError(f"a ResNet takes (channels, height, width) inputs, got input_shape {tuple(input_shape)}")
    block_cls = BasicBlock if block == "basic" else Bottleneck
    in_ch = int(input_shape[0])
    stem_ch = stem_width or widths[0]
    if stem == "imagenet":
        stem_mod = nn.Sequential(nn.Conv2d(in_ch, stem_ch, 7, 2, 3, bias=False), nn.BatchNorm2d(stem_ch),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    elif stem == "cifar":
        stem_mod = nn.Sequential(nn.Conv2d(in_ch, stem_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_ch),
                                 nn.ReLU(inplace=True))
    else:
        raise ValueError(f"unknown ResNet stem {stem!r}; choose 'imagenet' or 'cifar'")
    if upsample > 1:
        stem_mod = nn.Sequential(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False),
                                 *stem_mod)
    elif upsample != 1:
        raise ValueError(f"upsample must be a positive integer factor, got {upsample}")

    ch = stem_ch
    layer_mods: list[nn.Module] = []
    layer_out: list[int] = []
    for i, (n, w) in enumerate(zip(layers, widths)):
        blocks = []
        for j in range(n):
            blocks.append(block_cls(ch, w, 2 if (i > 0 and j == 0) else 1))
            ch = w * block_cls.expansion
        layer_mods.append(nn.Sequential(*blocks))
        layer_out.append(ch)

    stages: list[nn.Module] = []
    heads: list[nn.Module] = []
    exit_names: list[str] = []
    pending: list[nn.Module] = [stem_mod]
    for name, mod, out_ch in zip(layer_names, layer_mods, layer_out):
        pending.append(mod)
        if name in exits or name == layer_names[-1]:
            stages.append(nn.Sequential(*pending))
            heads.append(PoolHead(out_ch, num_classes))
            exit_names.append(name if name != layer_names[-1] else "final")
            pending = []
    return EarlyExitNet("resnet", stages, heads, exit_names, input_shape, num_classes)
