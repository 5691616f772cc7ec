"""R(2+1)D ResNets of 3D-ResNets-PyTorch (Tran et al. 2018), with the reference state_dict.

Every 3x3x3 conv of the ResNet becomes a spatial (1,3,3) conv, BN, ReLU and a temporal (3,1,1)
conv with a mid width that keeps the weight count: keys ``convN_s, bnN_s, convN_t, bnN_t``; the
stem is ``conv1_s, bn1_s, conv1_t, bn1_t`` (mid width 110 for the default 7-frame stem).
"""

from __future__ import annotations

import torch
from torch import nn

from .resnet import DEPTHS, RESNET_INPLANES, ResidualBlock, ResNet3D, _depth, conv1x1x1, two_plus_one_mid_planes


class _TwoPlusOneMixin:
    """Adds and runs the ``conv{n}_s, bn{n}_s, conv{n}_t, bn{n}_t`` quartet of a (2+1)D conv."""

    def add_2plus1d(self, index: int, in_planes: int, out_planes: int, stride: int) -> None:
        mid = two_plus_one_mid_planes(in_planes, out_planes, 3, 3)
        setattr(self, f"conv{index}_s", nn.Conv3d(in_planes, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1),
                                                  bias=False))
        setattr(self, f"bn{index}_s", nn.BatchNorm3d(mid))
        setattr(self, f"conv{index}_t", nn.Conv3d(mid, out_planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))
        setattr(self, f"bn{index}_t", nn.BatchNorm3d(out_planes))

    def run_2plus1d(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Spatial conv, BN, ReLU, temporal conv, BN (the caller applies what follows)."""
        x = self.relu(getattr(self, f"bn{index}_s")(getattr(self, f"conv{index}_s")(x)))
        return getattr(self, f"bn{index}_t")(getattr(self, f"conv{index}_t")(x))


class BasicBlock2Plus1D(_TwoPlusOneMixin, ResidualBlock):
    """Two (2+1)D convs (the first strided) with BN and ReLU, add shortcut, ReLU."""

    def __init__(self, in_planes: int, planes: int, stride=1, downsample=None) -> None:
        super().__init__(downsample)
        self.add_2plus1d(1, in_planes, planes, stride)
        self.add_2plus1d(2, planes, planes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.run_2plus1d(1, x))
        out = self.run_2plus1d(2, out)
        return self.relu(out + self.shortcut(x))


class Bottleneck2Plus1D(_TwoPlusOneMixin, ResidualBlock):
    """conv1 1x1x1, bn1, ReLU, (2+1)D conv (strided), ReLU, conv3 1x1x1 to planes * 4, bn3, add, ReLU."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride=1, downsample=None) -> None:
        super().__init__(downsample)
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.add_2plus1d(2, planes, planes, stride)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.run_2plus1d(2, out))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def resnet2p1d(depth: int, n_input_channels: int = 3, conv1_t_size: int = 7, conv1_t_stride: int = 1,
               no_max_pool: bool = False, shortcut_type: str = "B", widen_factor: float = 1.0,
               num_classes: int = 400) -> ResNet3D:
    """3D-ResNets-PyTorch ``resnet2p1d.generate_model(depth, ...)`` (``n_classes`` is ``num_classes`` here)."""
    layers, bottleneck = _depth("resnet2p1d", depth, DEPTHS)
    return ResNet3D(Bottleneck2Plus1D if bottleneck else BasicBlock2Plus1D, layers, RESNET_INPLANES,
                    n_input_channels=n_input_channels, conv1_t_size=conv1_t_size, conv1_t_stride=conv1_t_stride,
                    no_max_pool=no_max_pool, shortcut_type=shortcut_type, widen_factor=widen_factor,
                    num_classes=num_classes, two_plus_one_stem=True)
