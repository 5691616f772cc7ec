"""pytest-benchmark suites (not part of the test run): `pytest bench/ --benchmark-only`.

The device is the GPU when there is one, else the CPU; VID3D_BENCH_DEVICE=cpu|cuda overrides.
Compare runs with pytest-benchmark's own tools (--benchmark-autosave, --benchmark-compare).
"""

import os

import pytest
import torch

from vid3d.benchmark.environment import keep_host_memory


@pytest.fixture(scope="session")
def device() -> torch.device:
    keep_host_memory()  # as `vid3d bench` does: freed host memory is reused, not faulted in afresh
    name = os.environ.get("VID3D_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("VID3D_BENCH_DEVICE=cuda but no GPU is present")
    return torch.device(name)

