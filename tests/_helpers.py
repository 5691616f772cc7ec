"""Test helpers: the backends and layouts to test, the relative-error checks against a float64
reference, the ops' PyTorch references, and model-level checks (same function and gradients,
BatchNorms with non-trivial statistics, vid3d modules paired with the PyTorch layers they replace)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vid3d
from vid3d import ops
from vid3d.nn import Conv2Plus1d, DepthwiseConv3d
from vid3d.ops._kernels import unavailable_reason

# Relative-norm tolerances against a float64 reference.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}

LAYOUTS = ("ncdhw", "channels_last_3d", "strided", "permuted")


def backend_params() -> list:
    """(backend, device) of each of vid3d's own kernel sets, as pytest params, skipped where not
    usable here: the CPU kernels; Triton on the GPU, else under its interpreter on the CPU (see
    conftest.py); the CUDA kernels."""
    gpu = torch.cuda.is_available()
    params = []
    for backend, device in (("cpu", "cpu"), ("triton", "cuda" if gpu else "cpu"), ("cuda", "cuda")):
        reason = "no CUDA device" if device == "cuda" and not gpu else unavailable_reason(backend, torch.device(device))
        params.append(pytest.param(
            backend, device, id=f"{backend}-{device}",
            marks=pytest.mark.skipif(reason is not None, reason=f"{backend} on {device}: {reason}"),
        ))
    return params


def make_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The values of x (a contiguous tensor) in the given memory layout."""
    if layout == "ncdhw":
        return x.contiguous()
    if layout == "channels_last_3d":
        return x.contiguous(memory_format=torch.channels_last_3d)
    if layout == "strided":  # every other element of a wider tensor, along W and C
        n, c, t, h, w = x.shape
        wide = torch.zeros(n, 2 * c, t, h, 2 * w, dtype=x.dtype, device=x.device)
        wide[:, ::2, :, :, ::2] = x
        return wide[:, ::2, :, :, ::2]
    if layout == "permuted":  # H and W swapped in memory
        return x.transpose(3, 4).contiguous().transpose(3, 4)
    raise ValueError(layout)


def rel_err(actual: torch.Tensor, expected: torch.Tensor, scale: float = 0.0) -> float:
    """The norm of the error relative to expected's, or to ``scale`` where that is larger."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual.double() - expected.double()).norm()
    return (diff / expected.double().norm().clamp_min(max(scale, 1e-30))).item()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "",
                 scale: float = 0.0) -> None:
    assert torch.isfinite(actual).all(), f"{what}: non-finite values (an element was not written?)"
    err = rel_err(actual, expected, scale)
    assert err <= TOLERANCE[dtype], f"{what}: relative error {err:.3g} > {TOLERANCE[dtype]:g}"


def rounding_tolerance(dtype: torch.dtype, terms: int) -> float:
    """Norm-wise error bound, relative to the magnitude of a result (the same sums over absolute
    values), of a result in ``dtype`` accumulated in float32 (float64 for float64) over at most
    ``terms`` terms: a few roundings to ``dtype`` (inputs of a later stage, the output) plus the
    accumulation's error, which grows like sqrt(terms) for rounding errors of random sign."""
    accumulation = torch.float64 if dtype == torch.float64 else torch.float32
    return 4 * torch.finfo(dtype).eps + 4 * torch.finfo(accumulation).eps * math.sqrt(max(terms, 1))


def randn(shape, dtype, seed, device="cpu"):
    """Seeded normal values, drawn in float64 on the CPU, then cast and moved."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def triple(value):
    """A stride, padding, dilation or kernel size (an int or 3 ints) as 3 values."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3


def check_depthwise(case, layout, dtype, backend, with_bias=True, device="cpu"):
    """depthwise_conv3d on `backend` against F.conv3d in float64: output, layout, every gradient."""
    shape, kernel, stride, padding, dilation = case
    x64 = randn(shape, torch.float64, 0)
    w64 = randn((shape[1], 1, *kernel), torch.float64, 1)
    b64 = randn((shape[1],), torch.float64, 2) if with_bias else None
    leaves64 = [t.clone().requires_grad_() for t in (x64, w64, b64) if t is not None]
    ref = F.conv3d(leaves64[0], leaves64[1], leaves64[2] if with_bias else None, stride, padding, dilation, shape[1])
    grad = randn(ref.shape, torch.float64, 3)
    ref_grads = torch.autograd.grad(ref, leaves64, grad)

    x = make_layout(x64.to(device=device, dtype=dtype), layout).requires_grad_()  # the layout made on the device
    w = w64.to(device=device, dtype=dtype).requires_grad_()
    b = b64.to(device=device, dtype=dtype).requires_grad_() if with_bias else None
    leaves = [t for t in (x, w, b) if t is not None]
    with vid3d.backend(backend):
        y = ops.depthwise_conv3d(x, w, b, stride, padding, dilation)
    expect_cl = layout == "channels_last_3d" and shape[1] > 1 and shape[2] * shape[3] * shape[4] > 1
    assert y.is_contiguous(memory_format=torch.channels_last_3d if expect_cl else torch.contiguous_format)
    assert y.dtype == dtype
    assert_close(y.cpu(), ref, dtype, "output")
    grads = torch.autograd.grad(y, leaves, grad.to(device=device, dtype=dtype))
    for name, g, r in zip(("grad_input", "grad_weight", "grad_bias"), grads, ref_grads):
        assert_close(g.cpu(), r, dtype, name)


def same_layout_copy(x: torch.Tensor) -> torch.Tensor:
    """A copy of x with x's strides (clone() makes non-dense views contiguous)."""
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device).copy_(x)


def assert_same_function(model: nn.Module, reference: nn.Module, x: torch.Tensor, dtype=torch.float64,
                         gradients_may_vanish: bool = False) -> None:
    """model(x) against reference(x): the output and the gradients of x and of every parameter, matched by name.

    ``gradients_may_vanish``: some gradients are zero, or nearly, in exact arithmetic and rounding noise
    in both models (a BatchNorm in training mode cancels the gradient of the bias before it): errors
    are then measured relative to the output gradient's norm where that is larger."""
    inputs = [same_layout_copy(x).requires_grad_(), same_layout_copy(x).requires_grad_()]
    outputs = [model(inputs[0]), reference(inputs[1])]
    assert_close(outputs[0], outputs[1], dtype, "output")
    params = [dict(m.named_parameters()) for m in (model, reference)]
    assert params[0].keys() == params[1].keys()
    names = list(params[1])
    grad = randn(outputs[1].shape, torch.float64, 1234).to(dtype)
    grads = [torch.autograd.grad(out, [inp, *(p[n] for n in names)], grad)
             for out, inp, p in zip(outputs, inputs, params)]
    scale = grad.double().norm().item() if gradients_may_vanish else 0.0
    for name, actual, expected in zip(["input", *names], *grads):
        assert_close(actual, expected, dtype, f"gradient of {name}", scale)


def randomize_batch_norms(model: nn.Module, seed: int) -> nn.Module:
    """Random running statistics and affine parameters in every BatchNorm, so that folding one is no no-op."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                channels = module.num_features
                module.running_mean.copy_(torch.randn(channels, generator=gen))
                module.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(channels, generator=gen) + 0.5)
                    module.bias.copy_(torch.randn(channels, generator=gen))
    return model


def depthwise_pair(channels: int, kwargs: dict, seed: int = 0):
    """A DepthwiseConv3d and the nn.Conv3d(groups=C) it replaces, with the same (float64) parameters."""
    torch.manual_seed(seed)
    reference = nn.Conv3d(channels, channels, groups=channels, dtype=torch.float64, **kwargs)
    module = DepthwiseConv3d(channels, channels, groups=channels, dtype=torch.float64, **kwargs)
    module.load_state_dict(reference.state_dict())
    return module, reference


def conv2plus1d_pair(case, seed: int = 0):
    """A Conv2Plus1d and the plain nn.Sequential it stands for (torchvision's layout), with the same
    parameters and random BatchNorm statistics (float64). ``case``: in and out channels, kernel,
    stride, padding, dilation, and the other keyword arguments of Conv2Plus1d."""
    c_in, c_out, kernel, stride, padding, dilation, kwargs = case
    torch.manual_seed(seed)
    module = Conv2Plus1d(c_in, c_out, kernel, stride, padding, dilation, dtype=torch.float64, **kwargs)
    (kt, kh, kw), (st, sh, sw), (dt, dh, dw) = triple(kernel), triple(stride), triple(dilation)
    if isinstance(padding, str):
        spatial_padding = temporal_padding = padding
    else:
        pt, ph, pw = triple(padding)
        spatial_padding, temporal_padding = (0, ph, pw), (pt, 0, 0)
    mid = kwargs.get("mid_channels", c_out)
    bias = kwargs.get("bias", True)
    layers = [nn.Conv3d(c_in, mid, (1, kh, kw), (1, sh, sw), spatial_padding, (1, dh, dw),
                        kwargs.get("spatial_groups", 1), bias, dtype=torch.float64)]
    if kwargs.get("norm"):
        layers.append(nn.BatchNorm3d(mid, dtype=torch.float64))
    if kwargs.get("mid_activation"):
        layers.append(nn.ReLU())
    layers.append(nn.Conv3d(mid, c_out, (kt, 1, 1), (st, 1, 1), temporal_padding, (dt, 1, 1),
                            kwargs.get("temporal_groups", 1), bias, dtype=torch.float64))
    reference = nn.Sequential(*layers)
    reference.load_state_dict(randomize_batch_norms(module, seed + 1).state_dict(), strict=True)
    return module, reference


def spy_kernels(monkeypatch) -> list:
    """The names of the kernel sets the ops look up from now on (one per op call that runs vid3d's kernels)."""
    calls = []
    real = vid3d.ops._kernels.kernels
    monkeypatch.setattr(vid3d.ops._custom_ops, "kernels", lambda name: calls.append(name) or real(name))
    return calls


# ---------------------------------------------------------------- PyTorch references of the ops
# Written with F.conv3d and F.channel_shuffle only, independent of vid3d (its "torch" backend included).
# Each takes the arguments of its op, by the same names.


def reference_depthwise_conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, activation=None):
    y = F.conv3d(input, weight, bias, stride, padding, dilation, groups=input.shape[1])
    if activation == "relu":
        return F.relu(y)
    return F.relu6(y) if activation == "relu6" else y


def reference_conv2plus1d(input, spatial_weight, temporal_weight, spatial_bias=None, temporal_bias=None, stride=1,
                          padding=0, dilation=1, mid_activation=None):
    """Two F.conv3d calls: (1, kh, kw) over H and W, then (kt, 1, 1) over T."""
    (st, sh, sw), (dt, dh, dw) = triple(stride), triple(dilation)
    kernel = (temporal_weight.shape[2], spatial_weight.shape[3], spatial_weight.shape[4])
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, (dt, dh, dw)))
    pt, ph, pw = (0, 0, 0) if padding == "valid" else triple(padding)
    mid = F.conv3d(input, spatial_weight, spatial_bias, (1, sh, sw), (0, ph, pw), (1, dh, dw),
                   groups=input.shape[1] // spatial_weight.shape[1])
    if mid_activation == "relu":
        mid = F.relu(mid)
    return F.conv3d(mid, temporal_weight, temporal_bias, (st, 1, 1), (pt, 0, 0), (dt, 1, 1),
                    groups=mid.shape[1] // temporal_weight.shape[1])


def reference_cat_shuffle3d(tensors, groups):
    return F.channel_shuffle(torch.cat(list(tensors), 1), groups)


def invoke(fn, op: str, tensors, kwargs):
    """fn (the vid3d op or its reference) on the tensor arguments, the way ``op`` takes them."""
    return fn(list(tensors), **kwargs) if op == "cat_shuffle3d" else fn(*tensors, **kwargs)


REFERENCES = {
    "depthwise_conv3d": reference_depthwise_conv3d,
    "conv2plus1d": reference_conv2plus1d,
    "channel_shuffle3d": F.channel_shuffle,
    "cat_shuffle3d": reference_cat_shuffle3d,
}


def one_intra_op_thread():
    """Fixture body: one intra-op thread for the module (small layers; on a shared CPU OpenMP threads mostly wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
