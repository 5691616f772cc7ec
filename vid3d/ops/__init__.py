"""vid3d's functional ops: depthwise conv3d, 3D channel shuffle and (2+1)D convolution.

Each function checks its arguments, applies ``torch.autocast`` the way ``nn.Conv3d`` does
(floating inputs other than float64 run in the autocast dtype), picks the backend (see
:func:`vid3d.set_backend`) and runs the matching ``torch.ops.vid3d`` custom op, which has
autograd, a fake kernel for ``torch.compile`` and passes ``torch.library.opcheck``. Under the
"torch" backend the plain PyTorch reference runs instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import _custom_ops, _reference
from ._kernels import resolve
from ._validation import (
    check_activation,
    check_cat_shuffle3d,
    check_channel_shuffle3d,
    check_conv2plus1d,
    check_depthwise_conv3d,
    check_tensor,
)

__all__ = ["depthwise_conv3d", "channel_shuffle3d", "cat_shuffle3d", "conv2plus1d"]

IntOrTriple = int | Sequence[int]


@torch.compiler.assume_constant_result
def _autocast_available(device_type: str) -> bool:
    """Whether autocast exists for this device type. A constant for torch.compile, which cannot trace
    the query itself in torch 2.11 (a graph break that fails fullgraph=True)."""
    return torch.amp.is_autocast_available(device_type)


def _autocast(*tensors):
    """Cast like autocast casts a convolution's arguments, when autocast is on for their device."""
    device_type = tensors[0].device.type
    # Devices without autocast (meta: shape inference) would make the query itself raise.
    if not _autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(
        t.to(dtype) if t is not None and t.is_floating_point() and t.dtype != torch.float64 else t for t in tensors
    )


def depthwise_conv3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTriple = 1,
    padding: IntOrTriple | str = 0,
    dilation: IntOrTriple = 1,
    activation: str | None = None,
) -> Tensor:
    """Depthwise 3D convolution: ``F.conv3d(input, weight, bias, stride, padding, dilation, groups=C)``.

    Args:
        input: ``(N, C, T, H, W)``, float32/float64/float16/bfloat16, any strides; NCDHW and
            channels_last_3d are read in place.
        weight: ``(C, 1, kt, kh, kw)``, same dtype and device as ``input``.
        bias: ``(C,)`` or None.
        stride, padding, dilation: an int or a ``(t, h, w)`` triple; stride and dilation >= 1,
            padding >= 0. padding may also be ``"valid"`` (0) or ``"same"`` (stride 1, even
            ``dilation * (kernel - 1)``), as in ``F.conv3d``.
        activation: None, ``"relu"`` or ``"relu6"``, applied to the output (fused into the kernel
            where the backend can, as the Triton one does), for BN-folded inference blocks.

    Returns:
        ``(N, C, To, Ho, Wo)`` in the memory format of ``input`` (channels_last_3d stays
        channels_last_3d). Accumulation is in float32 (float64 for float64 input).
    """
    op = "depthwise_conv3d"
    check_tensor(op, "input", input)
    input, weight, bias = _autocast(input, weight, bias)
    stride, padding, dilation = check_depthwise_conv3d(op, input, weight, bias, stride, padding, dilation)
    check_activation(op, "activation", activation, ("relu", "relu6"))
    backend = resolve(op, (input, weight, bias))
    if backend == "torch":
        return _reference.depthwise_conv3d(input, weight, bias, stride, padding, dilation, activation)
    return _custom_ops.run("depthwise_conv3d", (input, weight, bias), input, weight, bias, stride, padding,
                           dilation, activation, backend)


def channel_shuffle3d(input: Tensor, groups: int) -> Tensor:
    """3D channel shuffle: ``F.channel_shuffle(input, groups)`` for a 5-D ``input``.

    Output channel ``j * groups + i`` is input channel ``i * (C // groups) + j``. Any dtype;
    the output keeps ``input``'s memory format. ``groups`` must divide ``C``.
    """
    op = "channel_shuffle3d"
    check_channel_shuffle3d(op, input, groups)
    backend = resolve(op, (input,), groups=groups)
    if backend == "torch":
        return _reference.channel_shuffle3d(input, groups)
    return _custom_ops.run("channel_shuffle3d", (input,), input, groups, backend)


def cat_shuffle3d(tensors: Sequence[Tensor], groups: int) -> Tensor:
    """Concatenate along channels and shuffle, in one pass over memory.

    Equals ``F.channel_shuffle(torch.cat(tensors, 1), groups)``. The tensors must be 5-D with
    the same N, T, H, W, dtype and device; ``groups`` must divide their total channel count.
    The output takes the memory format of ``tensors[0]``.
    """
    op = "cat_shuffle3d"
    check_cat_shuffle3d(op, tensors, groups)
    tensors = list(tensors)
    backend = resolve(op, tensors, groups=groups)
    if backend == "torch":
        return _reference.cat_shuffle3d(tensors, groups)
    return _custom_ops.run("cat_shuffle3d", tensors, tensors, groups, backend)


def conv2plus1d(
    input: Tensor,
    spatial_weight: Tensor,
    temporal_weight: Tensor,
    spatial_bias: Tensor | None = None,
    temporal_bias: Tensor | None = None,
    stride: IntOrTriple = (1, 1, 1),
    padding: IntOrTriple | str = (0, 0, 0),
    dilation: IntOrTriple = (1, 1, 1),
    mid_activation: str | None = None,
) -> Tensor:
    """(2+1)D convolution: a spatial ``(1, kh, kw)`` conv, optional ReLU, a temporal ``(kt, 1, 1)`` conv.

    Args:
        input: ``(N, C_in, T, H, W)``.
        spatial_weight: ``(C_mid, C_in // g_s, 1, kh, kw)``; ``g_s = C_in // spatial_weight.shape[1]``.
        temporal_weight: ``(C_out, C_mid // g_t, kt, 1, 1)``; ``g_t = C_mid // temporal_weight.shape[1]``.
        spatial_bias, temporal_bias: ``(C_mid,)`` / ``(C_out,)`` or None.
        stride, padding, dilation: ``(t, h, w)`` triples (or ints; padding also ``"same"`` or
            ``"valid"`` over the (kt, kh, kw) of the pair); the spatial conv uses
            ``(1, h, w)`` / ``(0, h, w)`` / ``(1, h, w)``, the temporal conv ``(t, 1, 1)`` /
            ``(t, 0, 0)`` / ``(t, 1, 1)``.
        mid_activation: None or ``"relu"``, applied between the two convs.

    Depthwise stages run vid3d's depthwise kernels, dense ones ATen's convolution; the backward
    recomputes the intermediate instead of storing it.
    """
    op = "conv2plus1d"
    check_tensor(op, "input", input)
    input, spatial_weight, temporal_weight, spatial_bias, temporal_bias = _autocast(
        input, spatial_weight, temporal_weight, spatial_bias, temporal_bias
    )
    stride, padding, dilation = check_conv2plus1d(
        op, input, spatial_weight, temporal_weight, spatial_bias, temporal_bias, stride, padding, dilation,
        mid_activation,
    )
    depthwise = spatial_weight.shape[1] == 1 or temporal_weight.shape[1] == 1
    params = (input, spatial_weight, temporal_weight, spatial_bias, temporal_bias)
    backend = resolve(op, params, depthwise)
    args = (*params, stride, padding, dilation, mid_activation)
    if backend == "torch":
        return _reference.conv2plus1d(*args)
    return _custom_ops.run("conv2plus1d", params, *args, backend)
