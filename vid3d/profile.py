"""Multiply-add and parameter counts, the way the Efficient-3DCNNs paper counted them.

The paper's Table 8 comes from the counter in its repository (``thop/count_hooks.py``, run by
``calculate_FLOP.py`` on a batch-1 clip): forward hooks on leaf modules. :func:`profile` applies
the same rules, with the quirks the table's numbers show, so it reproduces the table:

* convolution: ``kernel_volume * in_channels / groups`` (+1 with a bias) per output element
  (the counter as stored in the repository also divides each output size by the stride; the
  table was not computed that way: with that division every row comes out 20-60% low);
* BatchNorm: 2 per input element; ReLU / ReLU6: 1 per input element;
* max pooling: ``prod(kernel_size) - 1`` per output element, where an int ``kernel_size`` counts
  as a single number (``MaxPool3d(3)`` counts 2, ``MaxPool3d((3, 3, 3))`` 26);
* average pooling: ``prod(kernel_size)`` per output element (same int rule); adaptive pooling,
  which that counter left out, counts its effective kernel the same way;
* Linear: ``2 * in_features - 1`` per output element;
* functional calls (``F.relu``, ``F.avg_pool3d``, vid3d's functional ops), element-wise adds and
  concatenations, dropout: nothing.

Parameters are all the model's parameters (Table 8's "Params").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TABLE_8", "profile"]

# Table 8 of Köpüklü et al., "Resource Efficient 3D Convolutional Neural Networks" (Kinetics-600,
# 3x16x112x112 clips): (vid3d model name, keywords, MFLOPs, params in millions). The ResNet rows
# use the configurations of the reference repository's calculate_FLOP.py.
TABLE_8 = (
    ("shufflenet", {"groups": 3, "width_mult": 0.5}, 78, 0.55),
    ("shufflenetv2", {"width_mult": 0.25}, 116, 0.83),
    ("mobilenet", {"width_mult": 0.5}, 98, 1.17),
    ("mobilenetv2", {"width_mult": 0.2}, 63, 0.96),
    ("shufflenet", {"groups": 3, "width_mult": 1.0}, 199, 1.52),
    ("shufflenetv2", {"width_mult": 1.0}, 195, 1.91),
    ("mobilenet", {"width_mult": 1.0}, 241, 3.91),
    ("mobilenetv2", {"width_mult": 0.45}, 177, 1.40),
    ("shufflenet", {"groups": 3, "width_mult": 1.5}, 347, 2.92),
    ("shufflenetv2", {"width_mult": 1.5}, 291, 3.16),
    ("mobilenet", {"width_mult": 1.5}, 429, 8.22),
    ("mobilenetv2", {"width_mult": 0.7}, 325, 2.05),
    ("shufflenet", {"groups": 3, "width_mult": 2.0}, 538, 4.76),
    ("shufflenetv2", {"width_mult": 2.0}, 438, 6.64),
    ("mobilenet", {"width_mult": 2.0}, 662, 14.10),
    ("mobilenetv2", {"width_mult": 1.0}, 561, 3.12),
    ("squeezenet", {"version": 1.1}, 926, 2.15),
    ("efficient_resnet18", {"shortcut_type": "A"}, 8323, 33.36),
    ("efficient_resnet50", {"shortcut_type": "A"}, 9835, 44.54),
    ("efficient_resnet101", {"shortcut_type": "A"}, 13664, 83.58),
    ("efficient_resnext101", {"shortcut_type": "B", "cardinality": 32}, 9652, 48.75),
)


def _kernel_volume(kernel_size) -> int:
    # The paper's counter multiplies the values of torch.Tensor([kernel_size]): an int is one value.
    return math.prod(kernel_size) if isinstance(kernel_size, (tuple, list)) else int(kernel_size)


def _conv(module: nn.modules.conv._ConvNd, inputs, output) -> int:
    per_element = math.prod(module.kernel_size) * module.in_channels // module.groups
    return output.numel() * (per_element + (module.bias is not None))


def _batch_norm(module, inputs, output) -> int:
    return 2 * inputs[0].numel()


def _activation(module, inputs, output) -> int:
    return inputs[0].numel()


def _max_pool(module, inputs, output) -> int:
    return (_kernel_volume(module.kernel_size) - 1) * output.numel()


def _avg_pool(module, inputs, output) -> int:
    return _kernel_volume(module.kernel_size) * output.numel()


def _adaptive_kernel(inputs, output) -> int:
    in_sizes, out_sizes = inputs[0].shape[2:], output.shape[2:]
    return math.prod(math.ceil(i / o) for i, o in zip(in_sizes, out_sizes))


def _adaptive_max_pool(module, inputs, output) -> int:
    return (_adaptive_kernel(inputs, output) - 1) * output.numel()


def _adaptive_avg_pool(module, inputs, output) -> int:
    return _adaptive_kernel(inputs, output) * output.numel()


def _linear(module: nn.Linear, inputs, output) -> int:
    return (2 * module.in_features - 1) * output.numel()


# Checked in order with isinstance, so subclasses (vid3d's DepthwiseConv3d is an nn.Conv3d
# look-alike) count like their base.
_COUNTERS = (
    (nn.modules.conv._ConvNd, _conv),
    (nn.modules.batchnorm._BatchNorm, _batch_norm),
    ((nn.ReLU, nn.ReLU6), _activation),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), _max_pool),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), _avg_pool),
    ((nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d), _adaptive_max_pool),
    ((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), _adaptive_avg_pool),
    (nn.Linear, _linear),
)


def _counter(module: nn.Module):
    for kinds, count in _COUNTERS:
        if isinstance(module, kinds):
            return count
    if _is_conv_like(module):
        return _conv
    return None


def _is_conv_like(module: nn.Module) -> bool:
    """A module that mirrors ``nn.ConvNd`` (attributes and a ``weight`` of the conv's shape) without
    subclassing it, as a drop-in replacement may. A fused pair such as a (2+1)D module, whose weights
    have other names and shapes, does not match."""
    try:
        out_channels, in_channels, groups = module.out_channels, module.in_channels, module.groups
        kernel_size = tuple(module.kernel_size)
        weight = module.weight
    except (AttributeError, TypeError):
        return False
    return (isinstance(weight, torch.Tensor) and hasattr(module, "stride")
            and tuple(weight.shape) == (out_channels, in_channels // groups, *kernel_size))


def _input_shape(input_size) -> tuple[int, ...]:
    if isinstance(input_size, torch.Size):
        input_size = tuple(input_size)
    if (not isinstance(input_size, Sequence) or not input_size
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_size)):
        raise ValueError(f"input_size must be a sequence of positive ints, e.g. (3, 16, 112, 112), got {input_size!r}")
    return tuple(input_size)


def profile(model: nn.Module, input_size: Sequence[int]) -> dict[str, int]:
    """Count ``model``'s multiply-adds on one clip of ``input_size`` and its parameters.

    Args:
        model: any module; the leaf modules listed in this module's docstring are counted, the
            rest (and functional calls) count nothing. Its training mode is restored afterwards.
        input_size: one sample's shape, without the batch dimension, e.g. ``(3, 16, 112, 112)``
            (the paper's script passes ``(1, 3, 16, 112, 112)``; the 1 is added here).

    Returns:
        ``{"flops": multiply-adds for a batch of one, "params": number of parameters}``, counted
        as the Efficient-3DCNNs paper counted them (see the module docstring).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    shape = (1, *_input_shape(input_size))
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32

    total = 0
    handles = []

    def hook(count):
        def run(module, inputs, output):
            nonlocal total
            total += count(module, inputs, output)
        return run

    for module in model.modules():
        count = _counter(module)
        # Leaves only, as the paper's counter, so a conv wrapper holding a conv counts once.
        if count is not None and next(module.children(), None) is None:
            handles.append(module.register_forward_hook(hook(count)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return {"flops": int(total), "params": int(params)}
