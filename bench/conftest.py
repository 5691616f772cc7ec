"""pytest-benchmark suites (not part of the test run): `pytest bench/ --benchmark-only`.

The device is the GPU when there is one, else the CPU; VID3D_BENCH_DEVICE=cpu|cuda overrides.
Compare runs with pytest-benchmark's own tools (--benchmark-autosave, --benchmark-compare).
"""

import os

import pytest
import torch


@pytest.fixture(scope="session")
def device() -> torch.device:
    name = os.environ.get("VID3D_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("VID3D_BENCH_DEVICE=cuda but no GPU is present")
    return torch.device(name)

