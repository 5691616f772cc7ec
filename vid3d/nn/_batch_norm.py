"""Folding an inference-mode BatchNorm3d into the convolution before it."""

from __future__ import annotations

from torch import Tensor, nn


def is_foldable(norm: nn.Module, channels: int) -> bool:
    """Whether ``norm`` is an nn.BatchNorm3d over ``channels`` that normalises with fixed statistics.

    That is eval mode with running statistics: then it is a per-channel affine map that can be
    folded into the convolution before it. In training mode, or without running statistics, it
    normalises with the statistics of each batch, which no fixed weights reproduce.
    """
    return (
        type(norm) is nn.BatchNorm3d  # not a subclass: its forward may differ
        and not norm.training
        and norm.running_mean is not None
        and norm.num_features == channels
    )


def fold_batch_norm(weight: Tensor, bias: Tensor | None, norm: nn.BatchNorm3d) -> tuple[Tensor, Tensor]:
    """Weight and bias of one convolution computing ``norm(conv(x, weight, bias))``.

    ``norm`` must pass :func:`is_foldable`. The result is differentiable in the convolution's and
    the norm's parameters, and computed in the promoted dtype of the arguments (pass float64
    tensors for an exact fold).
    """
    scale = (norm.running_var + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    folded_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    folded_bias = shift if bias is None else bias * scale + shift
    return folded_weight, folded_bias
