"""SEVNet: a documented reconstruction of Wang & Yang, "An Efficient 3D CNN with Channel-wise,
Spatial-grouped, and Temporal Convolutions" (no reference code or exact widths are public).

From the paper: the SEV module is a 1x1x1 channel-wise convolution, then a spatial grouped
convolution, then a temporal convolution, each followed by BatchNorm and ReLU, stacked in a
ResNet-like network trained from scratch. Chosen here (not from the paper):

* the temporal convolution is depthwise ``(3,1,1)`` (one filter per channel, which keeps the
  module cheap and runs on vid3d's depthwise kernels once ``vid3d.convert`` swaps it);
* the spatial convolution is ``(1,3,3)`` with ``channels // group_channels`` groups;
* a residual shortcut (identity, or 1x1x1 conv + BN when the shape changes) is added before the
  last ReLU, as in ResNets;
* stem ``Conv3d(3, 32, 3, stride (1,2,2))`` + BN + ReLU and a ``(1,3,3)`` max pool stride
  (1,2,2); four stages of 2/3/4/2 modules, 64/128/256/512 wide (times ``width_mult``), the
  last three starting with stride 2 in time and space; global average pool, dropout, Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import check_int, check_positive, conv_bn_act, depthwise_conv

STAGES = ((64, 2, 1), (128, 3, 2), (256, 4, 2), (512, 2, 2))  # (width, modules, first stride)
STEM_CHANNELS = 32


class SEVModule(nn.Module):
    """1x1x1 conv, BN, ReLU; (1,3,3) grouped conv, BN, ReLU; (3,1,1) depthwise conv, BN; add shortcut; ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, group_channels: int) -> None:
        super().__init__()
        groups = max(1, out_channels // group_channels)
        self.channel = conv_bn_act(in_channels, out_channels, 1)
        self.spatial = conv_bn_act(out_channels, out_channels, (1, 3, 3), (1, stride, stride), (0, 1, 1),
                                   groups=groups)
        self.temporal = nn.Sequential(depthwise_conv(out_channels, (stride, 1, 1), (3, 1, 1), (1, 0, 0)),
                                      nn.BatchNorm3d(out_channels))
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn_act(in_channels, out_channels, 1, stride, activation=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.temporal(self.spatial(self.channel(x)))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class SEVNet(nn.Module):
    """The reconstruction described in this module's docstring."""

    def __init__(self, num_classes: int = 400, width_mult: float = 1.0, group_channels: int = 8,
                 dropout: float = 0.5) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_positive("width_mult", width_mult)
        check_int("group_channels", group_channels)
        self.stem = nn.Sequential(*conv_bn_act(3, STEM_CHANNELS, 3, (1, 2, 2), 1),
                                  nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        layers, channels = [], STEM_CHANNELS
        for width, modules, first_stride in STAGES:
            out_channels = max(group_channels, int(width * width_mult) // group_channels * group_channels)
            for index in range(modules):
                layers.append(SEVModule(channels, out_channels, first_stride if index == 0 else 1, group_channels))
                channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.stem(x))
        return self.classifier(F.adaptive_avg_pool3d(x, 1).flatten(1))


def sevnet(num_classes: int = 400, width_mult: float = 1.0, group_channels: int = 8, dropout: float = 0.5) -> SEVNet:
    """SEVNet, a documented reconstruction (see :mod:`vid3d.models.sevnet`); no published checkpoints."""
    return SEVNet(num_classes, width_mult, group_channels, dropout)
