"""vid3d's ops as ``torch.library`` custom ops (``torch.ops.vid3d.*``).

Every op takes the resolved backend name as its last argument, so one op, one fake kernel and
one autograd formula serve every backend, and ``torch.compile`` records which backend a traced
call uses. The ops allocate their outputs here, in the layout of their input, and hand them to
the backend's out-style kernels (see ``_kernels``). Arguments are validated by the public
wrappers in ``vid3d.ops`` before these are called.

Backward ops return an empty tensor for a gradient that ``output_mask`` did not ask for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._kernels import kernels
from ._shapes import conv_output_sizes, memory_format_of, spatial_conv_args, temporal_conv_args


def _new_like(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Every output and gradient the ops allocate: x's dtype and device, 5-D ones in x's layout."""
    fmt = memory_format_of(x) if x.dim() == 5 and len(shape) == 5 else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def _nothing(x: Tensor) -> Tensor:
    return x.new_empty(0)


def _conv_shape(x_shape, weight_shape, stride, padding, dilation) -> list:
    sizes = conv_output_sizes(x_shape[2:], weight_shape[2:], stride, padding, dilation)
    return [x_shape[0], weight_shape[0], *sizes]


# The forward ops, by name: (custom op, the function it wraps).
_FORWARD_OPS: dict[str, tuple] = {}


def _forward_op(name: str):
    """Registers ``vid3d::<name>`` as a custom op and keeps the function it wraps (see run)."""

    def register(fn):
        op = torch.library.custom_op(f"vid3d::{name}", fn, mutates_args=())
        _FORWARD_OPS[name] = (op, fn)
        return op

    return register


def run(name: str, differentiable: Sequence[Tensor | None], *args):
    """The forward op ``name`` on ``args``: through its custom op where autograd records the call
    (a tensor of ``differentiable`` requires grad) or torch.compile traces it, else the wrapped
    function directly. Eager inference thus skips the custom op's dispatch, which costs about
    20 us a call on the CPU: as much as a small layer's kernel."""
    op, fn = _FORWARD_OPS[name]
    recorded = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in differentiable)
    if recorded or torch.compiler.is_compiling():
        return op(*args)
    return fn(*args)


# ---------------------------------------------------------------- depthwise_conv3d


@_forward_op("depthwise_conv3d")
def depthwise_conv3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    activation: str | None,
    backend: str,
) -> Tensor:
    output = _new_like(input, _conv_shape(input.shape, weight.shape, stride, padding, dilation))
    kernels(backend).depthwise_conv3d_forward(input, weight, bias, stride, padding, dilation, output, activation)
    return output


@depthwise_conv3d.register_fake
def _(input, weight, bias, stride, padding, dilation, activation, backend):
    return _new_like(input, _conv_shape(input.shape, weight.shape, stride, padding, dilation))


def _activation_grad(grad: Tensor, output: Tensor, activation: str | None) -> Tensor:
    """The gradient before the activation, from the activation's output, as PyTorch's relu and
    relu6 (hardtanh) backward compute it: zero where the activation is flat (even where ``grad``
    is infinite), ``grad`` elsewhere, NaN outputs included."""
    if activation == "relu":
        return torch.where(output <= 0, 0, grad)
    if activation == "relu6":
        return torch.where((output <= 0) | (output >= 6), 0, grad)
    return grad


@torch.library.custom_op("vid3d::depthwise_conv3d_backward", mutates_args=())
def depthwise_conv3d_backward(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    output_mask: Sequence[bool],
    backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    grads = _depthwise_grads(input, weight, output_mask)
    wanted = [g if m else None for g, m in zip(grads, output_mask)]
    kernels(backend).depthwise_conv3d_backward(grad_output, input, weight, stride, padding, dilation, *wanted)
    return grads


def _depthwise_grads(input, weight, output_mask):
    want_input, want_weight, want_bias = output_mask
    return (
        _new_like(input, input.shape) if want_input else _nothing(input),
        _new_like(weight, weight.shape) if want_weight else _nothing(weight),
        _new_like(weight, [weight.shape[0]]) if want_bias else _nothing(weight),
    )


@depthwise_conv3d_backward.register_fake
def _(grad_output, input, weight, stride, padding, dilation, output_mask, backend):
    return _depthwise_grads(input, weight, output_mask)


def _depthwise_setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, activation, backend = inputs
    ctx.save_for_backward(input, weight, output if activation is not None else None)
    ctx.has_bias = bias is not None
    ctx.conv = (stride, padding, dilation)
    ctx.activation = activation
    ctx.backend = backend


def _depthwise_backward(ctx, grad_output):
    input, weight, output = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    grad_output = _activation_grad(grad_output, output, ctx.activation)
    grad_output = grad_output.contiguous(memory_format=memory_format_of(input))
    grads = depthwise_conv3d_backward(grad_output, input, weight, *ctx.conv, mask, ctx.backend)
    return *(g if m else None for g, m in zip(grads, mask)), None, None, None, None, None


depthwise_conv3d.register_autograd(_depthwise_backward, setup_context=_depthwise_setup_context)


def _no_double_backward(op_name: str):
    def backward(ctx, *grads):
        raise NotImplementedError(
            f"vid3d: double backward through {op_name} is not supported; run this computation under "
            "vid3d.backend('torch') to differentiate twice"
        )

    return backward


depthwise_conv3d_backward.register_autograd(_no_double_backward("depthwise_conv3d"))


# ---------------------------------------------------------------- channel shuffle


@_forward_op("channel_shuffle3d")
def channel_shuffle3d(input: Tensor, groups: int, backend: str) -> Tensor:
    output = _new_like(input, input.shape)
    kernels(backend).cat_shuffle3d_forward([input], groups, output)
    return output


@channel_shuffle3d.register_fake
def _(input, groups, backend):
    return _new_like(input, input.shape)


def _shuffle_setup_context(ctx, inputs, output):
    input, groups, backend = inputs
    ctx.inverse_groups = input.shape[1] // groups
    ctx.backend = backend


def _shuffle_backward(ctx, grad_output):
    # Shuffling C channels with g groups is undone by shuffling with C / g groups.
    return channel_shuffle3d(grad_output, ctx.inverse_groups, ctx.backend), None, None


channel_shuffle3d.register_autograd(_shuffle_backward, setup_context=_shuffle_setup_context)


def _cat_shape(tensors: Sequence[Tensor]) -> list:
    first = tensors[0]
    return [first.shape[0], sum(t.shape[1] for t in tensors), *first.shape[2:]]


@_forward_op("cat_shuffle3d")
def cat_shuffle3d(tensors: Sequence[Tensor], groups: int, backend: str) -> Tensor:
    output = _new_like(tensors[0], _cat_shape(tensors))
    kernels(backend).cat_shuffle3d_forward(tensors, groups, output)
    return output


@cat_shuffle3d.register_fake
def _(tensors, groups, backend):
    return _new_like(tensors[0], _cat_shape(tensors))


def _split_like(grad_output: Tensor, channels: Sequence[int]) -> list[Tensor]:
    n, _, *spatial = grad_output.shape
    return [_new_like(grad_output, [n, c, *spatial]) for c in channels]


@torch.library.custom_op("vid3d::cat_shuffle3d_backward", mutates_args=())
def cat_shuffle3d_backward(grad_output: Tensor, groups: int, channels: Sequence[int], backend: str) -> list[Tensor]:
    grads = _split_like(grad_output, channels)
    kernels(backend).cat_shuffle3d_backward(grad_output, groups, grads)
    return grads


@cat_shuffle3d_backward.register_fake
def _(grad_output, groups, channels, backend):
    return _split_like(grad_output, channels)


def _cat_setup_context(ctx, inputs, output):
    tensors, groups, backend = inputs
    ctx.channels = [t.shape[1] for t in tensors]
    ctx.groups = groups
    ctx.backend = backend


def _cat_backward(ctx, grad_output):
    return cat_shuffle3d_backward(grad_output, ctx.groups, ctx.channels, ctx.backend), None, None


cat_shuffle3d.register_autograd(_cat_backward, setup_context=_cat_setup_context)


# ---------------------------------------------------------------- (2+1)D convolution


def _is_depthwise(x: Tensor, weight: Tensor) -> bool:
    return weight.shape[1] == 1 and weight.shape[0] == x.shape[1]


def _stage_forward(backend: str, x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation,
                   layout_of: Tensor):
    """One convolution of a (2+1)D pair, its output in the layout of ``layout_of``: vid3d's
    depthwise kernel, or ATen's convolution for a dense one."""
    if _is_depthwise(x, weight):
        output = _new_like(layout_of, _conv_shape(x.shape, weight.shape, stride, padding, dilation))
        kernels(backend).depthwise_conv3d_forward(x, weight, bias, stride, padding, dilation, output)
        return output
    groups = x.shape[1] // weight.shape[1]
    output = F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    return output.contiguous(memory_format=memory_format_of(layout_of))


def _stage_backward(backend, grad_output, x, weight, has_bias, stride, padding, dilation, mask):
    """(grad_x, grad_weight, grad_bias) of one stage, None where ``mask`` says not wanted."""
    mask = [mask[0], mask[1], mask[2] and has_bias]
    if _is_depthwise(x, weight):
        grads = _depthwise_grads(x, weight, mask)
        wanted = [g if m else None for g, m in zip(grads, mask)]
        kernels(backend).depthwise_conv3d_backward(grad_output, x, weight, stride, padding, dilation, *wanted)
        return wanted
    groups = x.shape[1] // weight.shape[1]
    bias_sizes = [weight.shape[0]] if has_bias else None
    if x.device.type == "cpu" and x.dtype == torch.bfloat16:
        # PyTorch's CPU (oneDNN) weight gradient of a bfloat16 convolution is wrong, about 100%
        # off, for some channels_last_3d dense convolutions (torch 2.13, found by the fuzz
        # tests); on NCDHW copies it is right.
        grad_output, x, weight = grad_output.contiguous(), x.contiguous(), weight.contiguous()
    grad_x, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
        grad_output, x, weight, bias_sizes, stride, padding, dilation, False, [0, 0, 0], groups, mask
    )
    # ATen picks its own layouts; keep the ones the fake kernel promises.
    return (
        None if grad_x is None else grad_x.contiguous(memory_format=memory_format_of(x)),
        None if grad_weight is None else grad_weight.contiguous(memory_format=memory_format_of(weight)),
        grad_bias,
    )


def _conv2plus1d_shape(input, spatial_weight, temporal_weight, stride, padding, dilation) -> list:
    mid_shape = _conv_shape(input.shape, spatial_weight.shape, *spatial_conv_args(stride, padding, dilation))
    return _conv_shape(mid_shape, temporal_weight.shape, *temporal_conv_args(stride, padding, dilation))


@_forward_op("conv2plus1d")
def conv2plus1d(
    input: Tensor,
    spatial_weight: Tensor,
    temporal_weight: Tensor,
    spatial_bias: Tensor | None,
    temporal_bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    mid_activation: str | None,
    backend: str,
) -> Tensor:
    fused = kernels(backend).conv2plus1d_depthwise_forward
    if fused is not None and _is_depthwise(input, spatial_weight) and _is_depthwise(input, temporal_weight):
        output = _new_like(input, _conv2plus1d_shape(input, spatial_weight, temporal_weight, stride, padding, dilation))
        fused(input, spatial_weight, temporal_weight, spatial_bias, temporal_bias, stride, padding, dilation,
              mid_activation, output)
        return output
    spatial, temporal = spatial_conv_args(stride, padding, dilation), temporal_conv_args(stride, padding, dilation)
    mid = _stage_forward(backend, input, spatial_weight, spatial_bias, *spatial, input)
    if mid_activation == "relu":
        mid.relu_()
    return _stage_forward(backend, mid, temporal_weight, temporal_bias, *temporal, input)


@conv2plus1d.register_fake
def _(input, spatial_weight, temporal_weight, spatial_bias, temporal_bias, stride, padding, dilation,
      mid_activation, backend):
    return _new_like(input, _conv2plus1d_shape(input, spatial_weight, temporal_weight, stride, padding, dilation))


@torch.library.custom_op("vid3d::conv2plus1d_backward", mutates_args=())
def conv2plus1d_backward(
    grad_output: Tensor,
    input: Tensor,
    spatial_weight: Tensor,
    temporal_weight: Tensor,
    spatial_bias: Tensor | None,
    has_temporal_bias: bool,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    mid_activation: str | None,
    output_mask: Sequence[bool],
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients for (input, spatial_weight, temporal_weight, spatial_bias, temporal_bias).

    The intermediate is recomputed rather than kept from the forward pass.
    """
    want_x, want_ws, want_wt, want_bs, want_bt = output_mask
    spatial = spatial_conv_args(stride, padding, dilation)
    temporal = temporal_conv_args(stride, padding, dilation)
    mid = _stage_forward(backend, input, spatial_weight, spatial_bias, *spatial, input)
    activated = mid.relu() if mid_activation == "relu" else mid
    want_mid = want_x or want_ws or want_bs
    grad_mid, grad_wt, grad_bt = _stage_backward(
        backend, grad_output, activated, temporal_weight, has_temporal_bias, *temporal, [want_mid, want_wt, want_bt]
    )
    grad_x = grad_ws = grad_bs = None
    if want_mid:
        if mid_activation == "relu":
            grad_mid = _activation_grad(grad_mid, mid, "relu")
        grad_mid = grad_mid.contiguous(memory_format=memory_format_of(mid))
        grad_x, grad_ws, grad_bs = _stage_backward(
            backend, grad_mid, input, spatial_weight, spatial_bias is not None, *spatial, [want_x, want_ws, want_bs]
        )
    grads = (grad_x, grad_ws, grad_wt, grad_bs, grad_bt)
    return tuple(_nothing(input) if g is None else g for g in grads)


@conv2plus1d_backward.register_fake
def _(grad_output, input, spatial_weight, temporal_weight, spatial_bias, has_temporal_bias, stride, padding,
      dilation, mid_activation, output_mask, backend):
    want_x, want_ws, want_wt, want_bs, want_bt = output_mask
    return (
        _new_like(input, input.shape) if want_x else _nothing(input),
        _new_like(spatial_weight, spatial_weight.shape) if want_ws else _nothing(input),
        _new_like(temporal_weight, temporal_weight.shape) if want_wt else _nothing(input),
        _new_like(input, [spatial_weight.shape[0]]) if want_bs and spatial_bias is not None else _nothing(input),
        _new_like(input, [temporal_weight.shape[0]]) if want_bt and has_temporal_bias else _nothing(input),
    )


def _conv2plus1d_setup_context(ctx, inputs, output):
    input, spatial_weight, temporal_weight, spatial_bias, temporal_bias, stride, padding, dilation, act, backend = inputs
    ctx.save_for_backward(input, spatial_weight, temporal_weight, spatial_bias)
    ctx.has_temporal_bias = temporal_bias is not None
    ctx.conv = (stride, padding, dilation, act)
    ctx.backend = backend


def _conv2plus1d_backward(ctx, grad_output):
    input, spatial_weight, temporal_weight, spatial_bias = ctx.saved_tensors
    needs = ctx.needs_input_grad
    mask = [needs[0], needs[1], needs[2], needs[3] and spatial_bias is not None, needs[4] and ctx.has_temporal_bias]
    grad_output = grad_output.contiguous(memory_format=memory_format_of(input))
    grads = conv2plus1d_backward(
        grad_output, input, spatial_weight, temporal_weight, spatial_bias, ctx.has_temporal_bias, *ctx.conv,
        mask, ctx.backend,
    )
    return *(g if m else None for g, m in zip(grads, mask)), None, None, None, None, None


conv2plus1d.register_autograd(_conv2plus1d_backward, setup_context=_conv2plus1d_setup_context)
conv2plus1d_backward.register_autograd(_no_double_backward("conv2plus1d"))
