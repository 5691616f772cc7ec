"""Test helpers: layouts to test and the relative-error check against a float64 reference."""

from __future__ import annotations

import torch

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
        wide = torch.zeros(n, 2 * c, t, h, 2 * w, dtype=x.dtype)
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
