"""3D-MobileNetV2 of Efficient-3DCNNs (Köpüklü et al. 2019), with the reference state_dict.

Keys: ``features.0.{0,1}`` (stem), ``features.1-17.conv.*`` (inverted residuals),
``features.18.{0,1}`` (1x1x1 conv to the last width), ``classifier.1`` (Linear).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import check_int, check_multiple, check_positive, conv_bn_act, depthwise_conv

# (expansion, output channels, blocks, stride of the first block) per stage, before width scaling.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """[1x1x1 expand, BN, ReLU6,] depthwise 3x3x3, BN, ReLU6, 1x1x1 project, BN.

    Residual add at stride 1 with equal input and output widths.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(in_channels * expansion)
        self.use_residual = stride == 1 and in_channels == out_channels
        expand = [] if expansion == 1 else list(conv_bn_act(in_channels, hidden, 1, activation=nn.ReLU6))
        self.conv = nn.Sequential(
            *expand,
            depthwise_conv(hidden, stride),
            nn.BatchNorm3d(hidden),
            nn.ReLU6(inplace=True),
            *conv_bn_act(hidden, out_channels, 1, activation=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2_3D(nn.Module):
    """3D-MobileNetV2: stem stride (1,2,2), 17 inverted residuals, 1x1x1 conv, global average pool, Linear."""

    def __init__(self, num_classes: int = 1000, sample_size: int = 224, width_mult: float = 1.0) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_multiple("sample_size", sample_size, 16)
        check_positive("width_mult", width_mult)
        channels = int(STEM_CHANNELS * width_mult)
        # The last width grows with width_mult above 1 only (as in the reference and the 2D paper).
        last_channels = int(LAST_CHANNELS * width_mult) if width_mult > 1.0 else LAST_CHANNELS
        layers = [conv_bn_act(3, channels, 3, (1, 2, 2), 1, activation=nn.ReLU6)]
        for expansion, stage_channels, blocks, first_stride in STAGES:
            out_channels = int(stage_channels * width_mult)
            for index in range(blocks):
                layers.append(InvertedResidual(channels, out_channels, first_stride if index == 0 else 1, expansion))
                channels = out_channels
        layers.append(conv_bn_act(channels, last_channels, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool3d(x, 1).flatten(1)
        return self.classifier(x)


def mobilenetv2(num_classes: int = 1000, sample_size: int = 224, width_mult: float = 1.0) -> MobileNetV2_3D:
    """3D-MobileNetV2 (reference ``mobilenetv2.get_model``); Table 8 widths 0.2, 0.45, 0.7, 1.0."""
    return MobileNetV2_3D(num_classes, sample_size, width_mult)
