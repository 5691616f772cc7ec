"""Shape arithmetic shared by the argument checks and the fake kernels."""

from __future__ import annotations

from collections.abc import Sequence


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
