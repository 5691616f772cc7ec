"""Shape arithmetic shared by the argument checks and the fake kernels."""

from __future__ import annotations

from collections.abc import Sequence


def conv_output_sizes(input_sizes: Sequence, kernel: Sequence, stride, padding, dilation) -> list:
    """Output (T, H, W) of a convolution, as ``torch.nn.functional.conv3d`` computes it."""
    return [
        (i + 2 * p - d * (k - 1) - 1) // s + 1
        for i, k, s, p, d in zip(input_sizes, kernel, stride, padding, dilation)
    ]
