"""3D-ShuffleNet (V1) of Efficient-3DCNNs (Köpüklü et al. 2019), with the reference state_dict.

Keys: ``conv1.{0,1}`` (stem), ``layer{1,2,3}.i.{conv1,bn1,conv2,bn2,conv3,bn3}``, ``classifier.1``.
The channel shuffle runs on :func:`vid3d.ops.channel_shuffle3d` (no parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ._layers import check_choice, check_int, check_positive, conv_bn_act, depthwise_conv

# Stem width then the three stage widths, per number of groups (the reference's table; 567 for
# one group is the reference's value and its checkpoints' shape).
STAGE_CHANNELS = {1: (24, 144, 288, 567), 2: (24, 200, 400, 800), 3: (24, 240, 480, 960),
                  4: (24, 272, 544, 1088), 8: (24, 384, 768, 1536)}
STAGE_BLOCKS = (4, 8, 4)
REFERENCE_STEM_CHANNELS = 24


class ShuffleBottleneck(nn.Module):
    """Grouped 1x1x1, BN, ReLU, shuffle, depthwise 3x3x3, BN, grouped 1x1x1, BN; add (stride 1) or concat (stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        self.groups = groups
        mid_channels = out_channels // 4
        if stride == 2:
            out_channels -= in_channels  # the pooled input is concatenated to make up the rest
        # The reference leaves the first 1x1x1 conv ungrouped when it reads the 24-channel stem,
        # which happens at width 1.0 only (the comparison is on the scaled width).
        first_groups = 1 if in_channels == REFERENCE_STEM_CHANNELS else groups
        self.conv1 = nn.Conv3d(in_channels, mid_channels, 1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm3d(mid_channels)
        self.conv2 = depthwise_conv(mid_channels, stride)
        self.bn2 = nn.BatchNorm3d(mid_channels)
        self.conv3 = nn.Conv3d(mid_channels, out_channels, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride == 2:
            self.shortcut = nn.AvgPool3d(kernel_size=(2, 3, 3), stride=2, padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = ops.channel_shuffle3d(out, self.groups)
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return self.relu(torch.cat([out, self.shortcut(x)], 1))
        return self.relu(out + x)


class ShuffleNet3D(nn.Module):
    """3D-ShuffleNetV1: stem stride (1,2,2), max pool, stages of 4/8/4 blocks, global average pool, Linear."""

    def __init__(self, groups: int = 3, width_mult: float = 1.0, num_classes: int = 400) -> None:
        super().__init__()
        check_choice("groups", groups, tuple(STAGE_CHANNELS))
        check_positive("width_mult", width_mult)
        check_int("num_classes", num_classes)
        widths = [int(c * width_mult) for c in STAGE_CHANNELS[groups]]
        self.groups = groups
        self.conv1 = conv_bn_act(3, widths[0], 3, (1, 2, 2), 1)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        channels = widths[0]
        for stage, (out_channels, blocks) in enumerate(zip(widths[1:], STAGE_BLOCKS), start=1):
            layer = []
            for index in range(blocks):
                layer.append(ShuffleBottleneck(channels, out_channels, 2 if index == 0 else 1, groups))
                channels = out_channels
            self.add_module(f"layer{stage}", nn.Sequential(*layer))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool3d(x, 1).flatten(1)
        return self.classifier(x)


def shufflenet(groups: int = 3, width_mult: float = 1.0, num_classes: int = 400) -> ShuffleNet3D:
    """3D-ShuffleNetV1 (reference ``shufflenet.get_model``; ``groups`` 1, 2, 3, 4 or 8).

    The reference requires ``groups``; the default 3 is the paper's choice. Table 8 lists
    groups 3 at widths 0.5, 1.0, 1.5, 2.0. Some group/width pairs give widths the grouped
    convolutions cannot split (e.g. 8 groups at 0.5x); those raise, as in the reference.
    """
    return ShuffleNet3D(groups, width_mult, num_classes)
