"""Shape and layout arithmetic shared by the argument checks, the ops and the choice of a backend."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def conv_output_sizes(input_sizes: Sequence, kernel: Sequence, stride, padding, dilation) -> list:
    """Output (T, H, W) of a convolution, as ``torch.nn.functional.conv3d`` computes it."""
    return [
        (i + 2 * p - d * (k - 1) - 1) // s + 1
        for i, k, s, p, d in zip(input_sizes, kernel, stride, padding, dilation)
    ]


def spatial_conv_args(stride, padding, dilation):
    """stride, padding, dilation of the (1, kh, kw) stage of a (2+1)D conv."""
    return (1, stride[1], stride[2]), (0, padding[1], padding[2]), (1, dilation[1], dilation[2])


def temporal_conv_args(stride, padding, dilation):
    """stride, padding, dilation of the (kt, 1, 1) stage of a (2+1)D conv."""
    return (stride[0], 1, 1), (padding[0], 0, 0), (dilation[0], 1, 1)


def memory_format_of(x: Tensor) -> torch.memory_format:
    """channels_last_3d when ``x``'s strides are laid out NDHWC (size-1 dims ignored), else contiguous."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    order = [d for d in (1, 4, 3, 2, 0) if x.shape[d] != 1]
    strides = [x.stride(d) for d in order]
    channels_inner = x.shape[1] != 1 and strides == sorted(strides)
    return torch.channels_last_3d if channels_inner else torch.contiguous_format
