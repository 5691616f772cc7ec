"""The CUDA kernels' index math (csrc/cuda/index_math.h), tested on the host: compiles
tests/cpp/test_cuda_index_math.cpp with the system C++ compiler and runs it. It replays every
kernel's tiling in float64 against naive convolutions (see the file's header). Needs no GPU."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "cpp" / "test_cuda_index_math.cpp"
COMPILER = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@pytest.mark.skipif(COMPILER is None, reason="no C++ compiler")
@pytest.mark.skipif(not SOURCE.exists(), reason="not a source checkout")
def test_cuda_index_math(tmp_path):
    binary = tmp_path / "test_cuda_index_math"
    subprocess.run([COMPILER, "-std=c++17", "-O2", f"-I{ROOT / 'csrc'}", str(SOURCE), "-o", str(binary)], check=True,
                   capture_output=True, text=True, timeout=300)
    result = subprocess.run([str(binary), "25"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failures" in result.stdout, result.stdout
