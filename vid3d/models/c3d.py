"""C3D with batch norm, as in Efficient-3DCNNs (after Tran et al. 2015), with the reference state_dict.

Keys: ``group1-5.*`` (Conv3d with bias, BatchNorm3d, ReLU, MaxPool3d), ``fc1.{0,1}``, ``fc2.{0,1}``
(Linear, BatchNorm1d) and ``fc.0``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._layers import check_int

# Conv widths per group, and each group's max pool: (kernel, stride, padding).
_GROUPS = (
    ((64,), ((2, 2, 2), (1, 2, 2), 0)),
    ((128,), ((2, 2, 2), (2, 2, 2), 0)),
    ((256, 256), ((2, 2, 2), (2, 2, 2), 0)),
    ((512, 512), ((2, 2, 2), (2, 2, 2), 0)),
    ((512, 512), ((1, 2, 2), (2, 2, 2), (0, 1, 1))),
)


def _conv_group(in_channels: int, widths, pool) -> nn.Sequential:
    layers = []
    for width in widths:
        layers += [nn.Conv3d(in_channels, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers, nn.MaxPool3d(*pool))


def _fc_bn_relu(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features), nn.ReLU(),
                         nn.Dropout(0.5))


class C3D(nn.Module):
    """C3D-BN: five conv groups, two 4096-wide fully connected layers with BN, classifier."""

    def __init__(self, sample_size: int = 112, sample_duration: int = 16, num_classes: int = 600) -> None:
        super().__init__()
        check_int("sample_size", sample_size)
        check_int("sample_duration", sample_duration, minimum=16)
        check_int("num_classes", num_classes)
        in_channels = 3
        for index, (widths, pool) in enumerate(_GROUPS, start=1):
            self.add_module(f"group{index}", _conv_group(in_channels, widths, pool))
            in_channels = widths[-1]
        # The flattened size the reference computes from the clip (exact for 112x112 clips of 16 frames).
        last_duration = sample_duration // 16
        last_size = math.ceil(sample_size / 32)
        self.fc1 = _fc_bn_relu(512 * last_duration * last_size * last_size, 4096)
        self.fc2 = _fc_bn_relu(4096, 4096)
        self.fc = nn.Sequential(nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(1, 6):
            x = getattr(self, f"group{index}")(x)
        return self.fc(self.fc2(self.fc1(x.flatten(1))))


def c3d(sample_size: int = 112, sample_duration: int = 16, num_classes: int = 600) -> C3D:
    """C3D-BN (reference ``c3d.get_model``); the flattened width follows ``sample_size``/``sample_duration``.

    As in the reference, ``sample_duration`` must be >= 16 and the clip must match the one the
    model was built for (112x112 and 48x48 clips of 16 frames work).
    """
    return C3D(sample_size, sample_duration, num_classes)
