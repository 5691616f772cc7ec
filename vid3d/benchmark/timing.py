"""Timing of one callable on CPU or GPU: warm-up, then the median of many runs.

On CUDA each run is bracketed by CUDA events; on the CPU by ``time.perf_counter``. Callers
rotate several input copies (``run(i)`` gets the run index) so caches do not hold them.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


def _quantile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def measure(run: Callable[[int], object], device: torch.device, *, min_runs: int = 5,
            max_runs: int = 200, budget_s: float = 0.5, warmup: int = 2) -> Timing:
    """Times ``run(i)``: ``warmup`` calls, then runs until ``budget_s`` or ``max_runs`` (at least ``min_runs``)."""
    for i in range(warmup):
        run(i)
    cuda = device.type == "cuda"
    times_ms = []
    start_all = time.perf_counter()
    while len(times_ms) < max_runs and (len(times_ms) < min_runs or time.perf_counter() - start_all < budget_s):
        i = len(times_ms) + warmup
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            run(i)
            end.record()
            end.synchronize()
            times_ms.append(begin.elapsed_time(end))
        else:
            begin_s = time.perf_counter()
            run(i)
            times_ms.append((time.perf_counter() - begin_s) * 1e3)
    times_ms.sort()
    return Timing(statistics.median(times_ms), _quantile(times_ms, 0.2), _quantile(times_ms, 0.8))


def geomean(values: list[float]) -> float:
    """The geometric mean (nan for no values): how speedups over a suite are summarized."""
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """fn, then a wait for the GPU on CUDA devices, so a wall clock times the kernels too."""
    if device.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run
