"""Argument checks of the public ops, run before any kernel.

Each check raises TypeError (wrong kind of value or dtype) or ValueError (wrong shape or
value) with a message that names the op, the argument, what was expected and what was
given. Device and dtype agreement are checked too, so no kernel ever sees mixed inputs.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

from ._shapes import conv_output_sizes

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _fail(exc: type[Exception], op: str, message: str):
    raise exc(f"vid3d.ops.{op}: {message}")


def check_tensor(op: str, name: str, value, *, dim: int | None = None, floating: bool = False) -> None:
    if not isinstance(value, torch.Tensor):
        _fail(TypeError, op, f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dim is not None and value.dim() != dim:
        _fail(ValueError, op, f"{name} must be {dim}-D, got {value.dim()}-D with shape {tuple(value.shape)}")
    if floating and value.dtype not in FLOAT_DTYPES:
        _fail(TypeError, op, f"{name} must be float32, float64, float16 or bfloat16, got {value.dtype}")


def check_has_channels(op: str, input: torch.Tensor) -> None:
    # A convolution over zero channels has zero groups, which F.conv3d refuses too.
    if input.shape[1] == 0:
        _fail(ValueError, op, f"input must have at least one channel, got shape {tuple(input.shape)}")


def check_same(op: str, reference_name: str, reference: torch.Tensor, name: str, other: torch.Tensor) -> None:
    if other.device != reference.device:
        _fail(RuntimeError, op, f"{name} is on {other.device} but {reference_name} is on {reference.device}")
    if other.dtype != reference.dtype:
        _fail(TypeError, op, f"{name} has dtype {other.dtype} but {reference_name} has {reference.dtype}")


def as_int(value):
    """value as an int if it is an integer (int, numpy integer, 0-d integer tensor), not a bool, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.dtype == torch.bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def as_triple(value) -> tuple[int, int, int] | None:
    """An integer or a sequence of 3 integers as a 3-tuple, else None."""
    single = as_int(value)
    if single is not None:
        return (single,) * 3
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        values = tuple(as_int(v) for v in value)
        return None if None in values else values
    return None


def triple(op: str, name: str, value, minimum: int) -> tuple[int, int, int]:
    """An integer or 3 integers as a 3-tuple, each at least ``minimum``."""
    values = as_triple(value)
    if values is None:
        _fail(TypeError, op, f"{name} must be an int or a sequence of 3 ints, got {value!r}")
    if min(values) < minimum:
        _fail(ValueError, op, f"every {name} must be at least {minimum}, got {values}")
    return values


def padding_triple(op: str, padding, kernel: Sequence[int], stride, dilation) -> tuple[int, int, int]:
    """padding as a 3-tuple; "valid" means 0 and "same" the padding that keeps the size at stride 1."""
    if padding == "valid":
        return (0, 0, 0)
    if padding == "same":
        if stride != (1, 1, 1):
            _fail(ValueError, op, f"padding='same' needs stride 1, got stride {stride}")
        spans = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if any(span % 2 for span in spans):
            _fail(
                ValueError,
                op,
                f"padding='same' with kernel {tuple(kernel)} and dilation {dilation} needs uneven padding, "
                "which is not supported; pad the input with F.pad first",
            )
        return tuple(span // 2 for span in spans)
    if isinstance(padding, str):
        _fail(ValueError, op, f"padding must be an int, 3 ints, 'same' or 'valid', got {padding!r}")
    return triple(op, "padding", padding, 0)


def conv_arguments(op: str, stride, padding, dilation, kernel: Sequence[int]):
    """stride, padding and dilation of a convolution with this kernel, checked, as 3-tuples."""
    stride = triple(op, "stride", stride, 1)
    dilation = triple(op, "dilation", dilation, 1)
    return stride, padding_triple(op, padding, kernel, stride, dilation), dilation


def check_kernel_sizes(op: str, name: str, weight: torch.Tensor) -> None:
    if min(weight.shape[2:]) < 1:
        _fail(ValueError, op, f"{name} kernel sizes must be >= 1, got {tuple(weight.shape[2:])}")


def conv_output_size(
    op: str, input_size: Sequence[int], kernel: Sequence[int], stride, padding, dilation
) -> tuple[int, int, int]:
    out = tuple(conv_output_sizes(input_size, kernel, stride, padding, dilation))
    if min(out) < 1:
        _fail(
            ValueError,
            op,
            f"the output would be {tuple(out)} for input (T, H, W) = {tuple(input_size)}, kernel "
            f"{tuple(kernel)}, stride {stride}, padding {padding}, dilation {dilation}: every size must be >= 1",
        )
    return out


def check_bias(op: str, name: str, bias, channels: int, like: torch.Tensor) -> None:
    if bias is None:
        return
    check_tensor(op, name, bias)
    if bias.shape != (channels,):
        _fail(ValueError, op, f"{name} must have shape ({channels},), got {tuple(bias.shape)}")
    check_same(op, "input", like, name, bias)


def check_depthwise_conv3d(op: str, input, weight, bias, stride, padding, dilation):
    """Checks the arguments of depthwise_conv3d; returns (stride, padding, dilation) as 3-tuples."""
    check_tensor(op, "input", input, dim=5, floating=True)
    check_has_channels(op, input)
    check_tensor(op, "weight", weight, dim=5)
    check_same(op, "input", input, "weight", weight)
    channels = input.shape[1]
    if weight.shape[0] != channels or weight.shape[1] != 1:
        _fail(
            ValueError,
            op,
            f"weight must have shape (C, 1, kt, kh, kw) with C = input channels = {channels} "
            f"(a depthwise weight), got {tuple(weight.shape)}",
        )
    check_kernel_sizes(op, "weight", weight)
    check_bias(op, "bias", bias, channels, input)
    stride, padding, dilation = conv_arguments(op, stride, padding, dilation, weight.shape[2:])
    conv_output_size(op, input.shape[2:], weight.shape[2:], stride, padding, dilation)
    return stride, padding, dilation


def check_activation(op: str, name: str, activation, allowed: Sequence[str]) -> None:
    if activation is not None and activation not in allowed:
        names = " or ".join(repr(a) for a in allowed)
        _fail(ValueError, op, f"{name} must be None or {names}, got {activation!r}")


def check_groups(op: str, groups, channels: int) -> None:
    if not isinstance(groups, int) or isinstance(groups, bool):
        _fail(TypeError, op, f"groups must be an int, got {groups!r}")
    if groups < 1 or channels % groups != 0:
        _fail(ValueError, op, f"groups must be a positive divisor of the channel count {channels}, got {groups}")


def check_channel_shuffle3d(op: str, input, groups) -> None:
    check_tensor(op, "input", input, dim=5)
    check_groups(op, groups, input.shape[1])


def check_cat_shuffle3d(op: str, tensors, groups) -> None:
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence) or len(tensors) == 0:
        _fail(TypeError, op, f"tensors must be a non-empty list or tuple of tensors, got {type(tensors).__name__}")
    first = tensors[0]
    check_tensor(op, "tensors[0]", first, dim=5)
    for i, t in enumerate(tensors[1:], start=1):
        name = f"tensors[{i}]"
        check_tensor(op, name, t, dim=5)
        check_same(op, "tensors[0]", first, name, t)
        if t.shape[0] != first.shape[0] or t.shape[2:] != first.shape[2:]:
            _fail(
                ValueError,
                op,
                f"{name} has shape {tuple(t.shape)}, which does not match tensors[0] {tuple(first.shape)} "
                "outside the channel dimension",
            )
    check_groups(op, groups, sum(t.shape[1] for t in tensors))


def check_conv2plus1d(
    op: str, input, spatial_weight, temporal_weight, spatial_bias, temporal_bias, stride, padding, dilation,
    mid_activation,
):
    """Checks the arguments of conv2plus1d; returns (stride, padding, dilation) as 3-tuples."""
    check_tensor(op, "input", input, dim=5, floating=True)
    check_has_channels(op, input)
    check_tensor(op, "spatial_weight", spatial_weight, dim=5)
    check_tensor(op, "temporal_weight", temporal_weight, dim=5)
    check_same(op, "input", input, "spatial_weight", spatial_weight)
    check_same(op, "input", input, "temporal_weight", temporal_weight)
    if spatial_weight.shape[2] != 1:
        _fail(ValueError, op, f"spatial_weight must have shape (C_mid, C_in/g, 1, kh, kw), got {tuple(spatial_weight.shape)}")
    if temporal_weight.shape[3:] != (1, 1):
        _fail(ValueError, op, f"temporal_weight must have shape (C_out, C_mid/g, kt, 1, 1), got {tuple(temporal_weight.shape)}")
    in_channels, mid_channels = input.shape[1], spatial_weight.shape[0]
    for name, weight, channels in (
        ("spatial_weight", spatial_weight, in_channels),
        ("temporal_weight", temporal_weight, mid_channels),
    ):
        per_group = weight.shape[1]
        if not 1 <= per_group <= channels or channels % per_group or weight.shape[0] % (channels // per_group):
            _fail(
                ValueError,
                op,
                f"{name} of shape {tuple(weight.shape)} does not fit {channels} input channels: its dim 1 must "
                f"divide {channels} and the group count {channels} / dim 1 must divide its dim 0",
            )
        if weight.shape[0] == 0:  # zero groups for F.conv3d
            _fail(ValueError, op, f"{name} must have at least one output channel, got shape {tuple(weight.shape)}")
        check_kernel_sizes(op, name, weight)
    check_bias(op, "spatial_bias", spatial_bias, mid_channels, input)
    check_bias(op, "temporal_bias", temporal_bias, temporal_weight.shape[0], input)
    check_activation(op, "mid_activation", mid_activation, ("relu",))
    kernel = (temporal_weight.shape[2], spatial_weight.shape[3], spatial_weight.shape[4])
    stride, padding, dilation = conv_arguments(op, stride, padding, dilation, kernel)
    t, h, w = input.shape[2:]
    spatial = conv_output_size(
        op, (t, h, w), spatial_weight.shape[2:], (1,) + stride[1:], (0,) + padding[1:], (1,) + dilation[1:]
    )
    conv_output_size(
        op, spatial, temporal_weight.shape[2:], stride[:1] + (1, 1), padding[:1] + (0, 0), dilation[:1] + (1, 1)
    )
    return stride, padding, dilation
