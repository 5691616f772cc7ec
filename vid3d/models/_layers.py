"""Layers and argument checks shared by the model families."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_act(in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                activation: type[nn.Module] | None = nn.ReLU, groups: int = 1) -> nn.Sequential:
    """``Sequential(Conv3d (no bias), BatchNorm3d[, activation])``: state_dict keys ``0.weight``, ``1.*``."""
    layers = [nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
              nn.BatchNorm3d(out_channels)]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


def depthwise_conv(channels: int, stride=1, kernel_size=3, padding=1) -> nn.Conv3d:
    """A depthwise convolution, no bias, as a plain ``nn.Conv3d(groups=channels)``.

    Plain ``nn.Conv3d`` keeps the reference state_dict; ``vid3d.convert`` swaps in vid3d's
    ``DepthwiseConv3d`` (same keys and shapes) to run vid3d's kernels.
    """
    return nn.Conv3d(channels, channels, kernel_size, stride, padding, groups=channels, bias=False)


class ZeroPadShortcut(nn.Module):
    """ResNet shortcut 'A': subsample by ``stride`` and append zero channels up to ``out_channels``.

    Parameter-free, so it adds no state_dict keys. The reference implementations build the
    zeros from ``out.data`` (a leftover of the Variable API), which stops the gradient through
    the shortcut; here the gradient flows as in the ResNet paper. The forward values are equal.
    """

    def __init__(self, out_channels: int, stride) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
        return F.pad(out, (0, 0, 0, 0, 0, 0, 0, self.out_channels - out.shape[1]))

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, stride={self.stride}"


def fixed_avg_pool(sample_duration: int, sample_size: int) -> nn.AvgPool3d:
    """The reference heads' ``AvgPool3d`` sized for the clip the model was built for (the networks
    downsample time 16x and space 32x)."""
    last_duration = math.ceil(sample_duration / 16)
    last_size = math.ceil(sample_size / 32)
    return nn.AvgPool3d((last_duration, last_size, last_size), stride=1)


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_positive(name: str, value) -> float:
    """``value`` as a number > 0, else a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_choice(name: str, value, choices: Sequence) -> object:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_multiple(name: str, value, divisor: int) -> int:
    """``value`` as a positive int divisible by ``divisor`` (the reference models assert this)."""
    check_int(name, value)
    if value % divisor:
        raise ValueError(f"{name} must be a multiple of {divisor}, got {value}")
    return value
