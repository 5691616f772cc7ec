"""The "torch" backend: each op written with plain PyTorch, autograd by PyTorch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._shapes import spatial_conv_args, temporal_conv_args


_ACTIVATIONS = {None: lambda x: x, "relu": F.relu, "relu6": F.relu6}


def depthwise_conv3d(input, weight, bias, stride, padding, dilation, activation=None):
    return _ACTIVATIONS[activation](F.conv3d(input, weight, bias, stride, padding, dilation, groups=input.shape[1]))


def channel_shuffle3d(input, groups):
    return F.channel_shuffle(input, groups)


def cat_shuffle3d(tensors, groups):
    return F.channel_shuffle(torch.cat(list(tensors), 1), groups)


def conv2plus1d(input, spatial_weight, temporal_weight, spatial_bias, temporal_bias, stride, padding, dilation,
                mid_activation):
    spatial_groups = input.shape[1] // spatial_weight.shape[1]
    mid = F.conv3d(input, spatial_weight, spatial_bias, *spatial_conv_args(stride, padding, dilation), spatial_groups)
    if mid_activation == "relu":
        mid = F.relu(mid)
    temporal_groups = mid.shape[1] // temporal_weight.shape[1]
    return F.conv3d(mid, temporal_weight, temporal_bias, *temporal_conv_args(stride, padding, dilation),
                    temporal_groups)
