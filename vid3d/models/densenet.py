"""3D DenseNets (DenseNet-BC) of 3D-ResNets-PyTorch, with the reference (2020 code) state_dict.

Keys: ``features.{conv1,norm1}`` (stem), ``features.denseblockN.denselayerM.{norm1,conv1,norm2,conv2}``,
``features.transitionN.{norm,conv}``, ``features.norm5``, ``classifier``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import check_choice, check_int

# Dense layers per block for each depth; all use 64 stem channels and growth rate 32.
BLOCK_CONFIGS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32), 264: (6, 12, 64, 48)}


class DenseLayer(nn.Sequential):
    """BN, ReLU, 1x1x1 conv to ``bn_size * growth_rate``, BN, ReLU, 3x3x3 conv to ``growth_rate``; concat to input."""

    def __init__(self, in_features: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        bottleneck = bn_size * growth_rate
        super().__init__(OrderedDict([
            ("norm1", nn.BatchNorm3d(in_features)), ("relu1", nn.ReLU(inplace=True)),
            ("conv1", nn.Conv3d(in_features, bottleneck, 1, bias=False)),
            ("norm2", nn.BatchNorm3d(bottleneck)), ("relu2", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv3d(bottleneck, growth_rate, 3, padding=1, bias=False)),
        ]))
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new_features = super().forward(x)
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return torch.cat([x, new_features], 1)


def _transition(in_features: int, out_features: int) -> nn.Sequential:
    """BN, ReLU, 1x1x1 conv, 2x2x2 average pool (stride 2)."""
    return nn.Sequential(OrderedDict([
        ("norm", nn.BatchNorm3d(in_features)), ("relu", nn.ReLU(inplace=True)),
        ("conv", nn.Conv3d(in_features, out_features, 1, bias=False)), ("pool", nn.AvgPool3d(2, stride=2)),
    ]))


class DenseNet3D(nn.Module):
    """DenseNet-BC: stem (t,7,7) conv, optional max pool, dense blocks with transitions, BN, ReLU, pool, Linear."""

    def __init__(self, block_config, growth_rate: int = 32, num_init_features: int = 64, bn_size: int = 4,
                 drop_rate: float = 0.0, n_input_channels: int = 3, conv1_t_size: int = 7, conv1_t_stride: int = 1,
                 no_max_pool: bool = False, num_classes: int = 1000) -> None:
        super().__init__()
        for name, value in (("n_input_channels", n_input_channels), ("conv1_t_size", conv1_t_size),
                            ("conv1_t_stride", conv1_t_stride), ("bn_size", bn_size), ("num_classes", num_classes)):
            check_int(name, value)
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        stem = [
            ("conv1", nn.Conv3d(n_input_channels, num_init_features, (conv1_t_size, 7, 7), (conv1_t_stride, 2, 2),
                                (conv1_t_size // 2, 3, 3), bias=False)),
            ("norm1", nn.BatchNorm3d(num_init_features)),
            ("relu1", nn.ReLU(inplace=True)),
        ]
        if not no_max_pool:
            stem.append(("pool1", nn.MaxPool3d(kernel_size=3, stride=2, padding=1)))
        self.features = nn.Sequential(OrderedDict(stem))
        features = num_init_features
        for index, num_layers in enumerate(block_config, start=1):
            block = nn.Sequential(OrderedDict(
                (f"denselayer{layer + 1}", DenseLayer(features + layer * growth_rate, growth_rate, bn_size, drop_rate))
                for layer in range(num_layers)
            ))
            self.features.add_module(f"denseblock{index}", block)
            features += num_layers * growth_rate
            if index != len(block_config):
                self.features.add_module(f"transition{index}", _transition(features, features // 2))
                features //= 2
        self.features.add_module("norm5", nn.BatchNorm3d(features))
        self.classifier = nn.Linear(features, num_classes)
        for module in self.modules():
            # The reference's initialisation.
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x))
        return self.classifier(F.adaptive_avg_pool3d(out, 1).flatten(1))


def densenet(depth: int, n_input_channels: int = 3, conv1_t_size: int = 7, conv1_t_stride: int = 1,
             no_max_pool: bool = False, bn_size: int = 4, drop_rate: float = 0.0,
             num_classes: int = 1000) -> DenseNet3D:
    """3D-ResNets-PyTorch ``densenet.generate_model(depth, ...)`` (depth 121, 169, 201 or 264).

    The reference's command-line path cannot build it at its head (it passes ``n_classes`` to a
    constructor whose keyword is ``num_classes``); this is the reference ``DenseNet`` class itself,
    which takes ``num_classes`` (default 1000, as there).
    """
    check_choice("densenet depth", depth, tuple(BLOCK_CONFIGS))
    return DenseNet3D(BLOCK_CONFIGS[depth], n_input_channels=n_input_channels, conv1_t_size=conv1_t_size,
                      conv1_t_stride=conv1_t_stride, no_max_pool=no_max_pool, bn_size=bn_size, drop_rate=drop_rate,
                      num_classes=num_classes)
