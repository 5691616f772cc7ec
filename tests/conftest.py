"""Every test runs with NaN-poisoned outputs. Without a GPU, Triton runs under its interpreter."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import vid3d
import vid3d.ops._custom_ops as custom_ops


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Every output the ops allocate starts as NaN, so an element a kernel fails to write shows."""
    allocate = custom_ops._new_like

    def poisoned(x, shape):
        out = allocate(x, shape)
        if out.is_floating_point():
            out.fill_(float("nan"))
        return out

    monkeypatch.setattr(custom_ops, "_new_like", poisoned)


@pytest.fixture(params=["cpu", "torch"])
def vid3d_backend(request):
    """Runs the test on vid3d's C++ kernels ("cpu") and on the plain PyTorch reference ("torch")."""
    with vid3d.backend(request.param):
        yield request.param
