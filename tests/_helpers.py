"""Test helpers: layouts to test and the relative-error check against a float64 reference."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import vid3d
from vid3d import ops

# Relative-norm tolerances against a float64 reference.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}

LAYOUTS = ("ncdhw", "channels_last_3d", "strided", "permuted")


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


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual.double() - expected.double()).norm()
    return (diff / expected.double().norm().clamp_min(1e-30)).item()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    assert torch.isfinite(actual).all(), f"{what}: non-finite values (an element was not written?)"
    err = rel_err(actual, expected)
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

    x = make_layout(x64.to(dtype), layout).to(device).requires_grad_()
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
