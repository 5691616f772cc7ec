"""Timing of callables on CPU or GPU: warm-up, then the median of many runs.

On CUDA each run is bracketed by CUDA events; on the CPU by ``time.perf_counter``. Callers
rotate several input copies (``run(i)`` gets the run index) so caches do not hold them.
The op benchmarks time the implementations they compare together (:func:`measure_alternating`), in
stretches that take turns, so a slow spell of the machine falls on all of them alike.
"""

from __future__ import annotations

import contextlib
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
    return measure_alternating({"": run}, device, rounds=1, min_runs=min_runs, max_runs=max_runs,
                               budget_s=budget_s, warmup=warmup)[""]


def measure_alternating(runs: dict[str, Callable[[int], object]], device: torch.device, *,
                        contexts: dict[str, Callable[[], contextlib.AbstractContextManager]] | None = None,
                        rounds: int = 4, min_runs: int = 5, max_runs: int = 200, budget_s: float = 0.5,
                        warmup: int = 2) -> dict[str, Timing]:
    """Times each of ``runs`` as :func:`measure` does, in ``rounds`` stretches per callable that take
    turns, each with a share of ``budget_s``, ``min_runs`` and ``max_runs``.

    Each callable runs alone within a stretch, so it does not meet the buffers the others freed
    call by call; a stretch starts with ``warmup`` calls (the first) or ``min(warmup, 1)`` (the later
    ones, after the other callables' stretches). The order reverses every other round (A B, B A,
    A B, ...), so a machine that speeds up or slows down steadily does not favour one side.
    Spreading every callable over the same span of time makes their ratio robust to the machine
    slowing down for seconds at a time, which on a shared virtual machine would otherwise fall on
    one side of the comparison only. ``contexts`` maps a callable's name to a context manager
    factory entered around each of its stretches (such as the vid3d backend it runs on).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    contexts = contexts or {}
    cuda = device.type == "cuda"
    names = list(runs)
    times_ms = {name: [] for name in names}
    calls = dict.fromkeys(names, 0)  # run indices handed out so far, warm-ups included
    for round_index in range(rounds):
        # The runs each callable must have by the end of this round.
        least = math.ceil(min_runs * (round_index + 1) / rounds)
        most = math.ceil(max_runs * (round_index + 1) / rounds)
        for name in names if round_index % 2 == 0 else reversed(names):
            run, taken = runs[name], times_ms[name]
            if len(taken) >= most:
                continue
            with contexts.get(name, contextlib.nullcontext)():
                for _ in range(warmup if round_index == 0 else min(warmup, 1)):
                    run(calls[name])
                    calls[name] += 1
                start = time.perf_counter()
                while len(taken) < most and (len(taken) < least or time.perf_counter() - start < budget_s / rounds):
                    i = calls[name]
                    calls[name] += 1
                    if cuda:
                        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        begin.record()
                        run(i)
                        end.record()
                        end.synchronize()
                        taken.append(begin.elapsed_time(end))
                    else:
                        begin_s = time.perf_counter()
                        run(i)
                        taken.append((time.perf_counter() - begin_s) * 1e3)
    timings = {}
    for name, taken in times_ms.items():
        taken.sort()
        timings[name] = Timing(statistics.median(taken), _quantile(taken, 0.2), _quantile(taken, 0.8))
    return timings


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
