"""Every test runs with NaN-poisoned outputs. Without a GPU, Triton runs under its interpreter.

Hypothesis profiles (HYPOTHESIS_PROFILE picks one): "ci", the default, derandomized so that every
run draws the same examples; "long" (`make fuzz`), many more examples, with the example database
in .hypothesis/ (not in git) so failures found once are replayed first.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import vid3d
import vid3d.ops._custom_ops as custom_ops

# Examples are whole convolutions with their backward passes (slow by Hypothesis' standards), and
# the poisoning fixture below is meant to stay in force for every example of a test.
_HYPOTHESIS_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", max_examples=100, derandomize=True, print_blob=True, **_HYPOTHESIS_COMMON)
settings.register_profile("long", max_examples=2000, **_HYPOTHESIS_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
