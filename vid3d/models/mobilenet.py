"""3D-MobileNet (V1) of Efficient-3DCNNs (Köpüklü et al. 2019), with the reference state_dict.

Keys: ``features.0.{0,1}`` (stem conv, BN), ``features.i.{conv1,bn1,conv2,bn2}`` for the 13
depthwise-separable blocks, ``classifier.1`` (Linear).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import check_int, check_positive, conv_bn_act, depthwise_conv

# (output channels, blocks, stride of the first block) per stage, before width scaling.
STAGES = ((64, 1, 2), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 1))
STEM_CHANNELS = 32


class DepthwiseSeparableBlock(nn.Module):
    """Depthwise 3x3x3 conv, BN, ReLU, pointwise conv, BN, ReLU (the ReLUs are functional, as in the reference)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = depthwise_conv(in_channels, stride)
        self.bn1 = nn.BatchNorm3d(in_channels)
        self.conv2 = nn.Conv3d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)))


class MobileNet3D(nn.Module):
    """3D-MobileNetV1: stem conv stride (1,2,2), 13 blocks, global average pool, dropout 0.2, Linear."""

    def __init__(self, num_classes: int = 600, sample_size: int = 224, width_mult: float = 1.0) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("sample_size", sample_size)  # unused by the network, as in the reference
        check_positive("width_mult", width_mult)
        channels = int(STEM_CHANNELS * width_mult)
        layers = [conv_bn_act(3, channels, 3, (1, 2, 2), 1)]
        for stage_channels, blocks, first_stride in STAGES:
            out_channels = int(stage_channels * width_mult)
            for index in range(blocks):
                layers.append(DepthwiseSeparableBlock(channels, out_channels, first_stride if index == 0 else 1))
                channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool3d(x, 1).flatten(1)
        return self.classifier(x)


def mobilenet(num_classes: int = 600, sample_size: int = 224, width_mult: float = 1.0) -> MobileNet3D:
    """3D-MobileNetV1 (reference ``mobilenet.get_model``); Table 8 widths 0.5, 1.0, 1.5, 2.0."""
    return MobileNet3D(num_classes, sample_size, width_mult)
