"""3D-ShuffleNetV2 of Efficient-3DCNNs (Köpüklü et al. 2019), with the reference state_dict.

Keys: ``conv1.{0,1}``, ``features.0-15.banch1.*`` / ``banch2.*`` (the reference's spelling, which
its checkpoints use), ``conv_last.{0,1}``, ``classifier.1``. Concatenation and channel shuffle run
as one :func:`vid3d.ops.cat_shuffle3d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ._layers import check_choice, check_int, check_multiple, conv_bn_act, depthwise_conv

# Stem, three stage widths and the last 1x1x1 conv's width per width_mult (the reference's table;
# it uses 224 at 2.0x where the paper's Table 6 prints 244).
STAGE_CHANNELS = {0.25: (24, 32, 64, 128, 1024), 0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024),
                  1.5: (24, 176, 352, 704, 1024), 2.0: (24, 224, 488, 976, 2048)}
STAGE_BLOCKS = (4, 8, 4)


def _pointwise_depthwise_pointwise(in_channels: int, channels: int, stride: int) -> nn.Sequential:
    """banch2: 1x1x1, BN, ReLU, depthwise 3x3x3, BN, 1x1x1, BN, ReLU (keys 0, 1, 3, 4, 5, 6)."""
    return nn.Sequential(*conv_bn_act(in_channels, channels, 1), depthwise_conv(channels, stride),
                         nn.BatchNorm3d(channels), *conv_bn_act(channels, channels, 1))


class ShuffleV2Block(nn.Module):
    """Stride 1: split channels, transform one half; stride 2: two branches on the whole input. Then shuffle."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch_channels = out_channels // 2
        if stride == 1:
            self.banch2 = _pointwise_depthwise_pointwise(branch_channels, branch_channels, 1)
        else:
            # banch1: depthwise 3x3x3, BN, 1x1x1, BN, ReLU (keys 0, 1, 2, 3).
            self.banch1 = nn.Sequential(depthwise_conv(in_channels, stride), nn.BatchNorm3d(in_channels),
                                        *conv_bn_act(in_channels, branch_channels, 1))
            self.banch2 = _pointwise_depthwise_pointwise(in_channels, branch_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            half = x.shape[1] // 2
            return ops.cat_shuffle3d([x[:, :half], self.banch2(x[:, half:])], 2)
        return ops.cat_shuffle3d([self.banch1(x), self.banch2(x)], 2)


class ShuffleNetV2_3D(nn.Module):
    """3D-ShuffleNetV2: stem stride (1,2,2), max pool, 4/8/4 blocks, 1x1x1 conv, global average pool, Linear."""

    def __init__(self, num_classes: int = 600, sample_size: int = 112, width_mult: float = 1.0) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_multiple("sample_size", sample_size, 16)
        check_choice("width_mult", width_mult, tuple(STAGE_CHANNELS))
        stem, *stages, last = STAGE_CHANNELS[width_mult]
        self.conv1 = conv_bn_act(3, stem, 3, (1, 2, 2), 1)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        blocks, channels = [], stem
        for out_channels, repeats in zip(stages, STAGE_BLOCKS):
            for index in range(repeats):
                blocks.append(ShuffleV2Block(channels, out_channels, 2 if index == 0 else 1))
                channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.conv_last = conv_bn_act(channels, last, 1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.maxpool(self.conv1(x)))
        x = F.adaptive_avg_pool3d(self.conv_last(x), 1).flatten(1)
        return self.classifier(x)


def shufflenetv2(num_classes: int = 600, sample_size: int = 112, width_mult: float = 1.0) -> ShuffleNetV2_3D:
    """3D-ShuffleNetV2 (reference ``shufflenetv2.get_model``); ``width_mult`` 0.25, 0.5, 1.0, 1.5 or 2.0."""
    return ShuffleNetV2_3D(num_classes, sample_size, width_mult)
