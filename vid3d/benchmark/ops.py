"""Depthwise conv3d against PyTorch, side by side in one process, on the present device.

For each shape and memory layout it times PyTorch's ``F.conv3d(groups=C)`` and vid3d's op
(forward, backward, forward+backward), a ``clone()`` of the input as the bandwidth
reference, and checks each implementation's forward against a float64 reference. Rows
follow the record schema of ``bench/results`` (see bench/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import vid3d
from vid3d.ops._kernels import native_backend

from .timing import measure

# The foundation issue's CPU suite: 3x3x3 kernel, padding 1, float32.
CPU_SHAPES = ((4, 64, 16, 28, 28), (8, 240, 4, 14, 14), (8, 960, 2, 4, 4), (4, 32, 16, 56, 56))
LAYOUTS = {"ncdhw": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
DIRECTIONS = ("fwd", "bwd", "fwdbwd")
ROTATE = 3  # input copies cycled through so caches do not hold one


@dataclass(frozen=True)
class Impl:
    name: str
    conv: Callable  # (x, weight) -> y


def _impls(device: torch.device) -> list[Impl]:
    def torch_conv(x, w):
        return F.conv3d(x, w, None, 1, 1, 1, x.shape[1])

    impls = [Impl("torch-eager", torch_conv)]
    backend = native_backend(device)
    if backend is not None:
        def vid3d_conv(x, w, backend=backend):
            with vid3d.backend(backend):
                return vid3d.ops.depthwise_conv3d(x, w, None, 1, 1, 1)

        impls.append(Impl(f"vid3d-{backend}", vid3d_conv))
    return impls


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def _row(op, direction, shape, dtype, layout, impl, timing, nbytes, copy_gbps, err):
    gbps = nbytes / (timing.median_ms * 1e-3) / 1e9
    return {
        "op": op, "direction": direction, "shape": list(shape), "dtype": str(dtype).removeprefix("torch."),
        "layout": layout, "impl": impl, "median_ms": timing.median_ms, "p20_ms": timing.p20_ms,
        "p80_ms": timing.p80_ms, "gbps": gbps, "pct_of_copy": 100.0 * gbps / copy_gbps, "max_rel_err": err,
    }


def bench_depthwise(shape, layout: str, dtype: torch.dtype, device: torch.device, budget_s: float) -> list[dict]:
    """Rows for one shape and layout: every impl and direction, plus the clone reference."""
    fmt = LAYOUTS[layout]
    gen = torch.Generator(device="cpu").manual_seed(0)
    xs = [torch.randn(shape, generator=gen).to(device=device, dtype=dtype).contiguous(memory_format=fmt)
          for _ in range(ROTATE)]
    w = torch.randn(shape[1], 1, 3, 3, 3, generator=gen).to(device=device, dtype=dtype)
    reference = F.conv3d(xs[0].double(), w.double(), None, 1, 1, 1, shape[1])
    grad = torch.randn(reference.shape, generator=gen).to(device=device, dtype=dtype).contiguous(memory_format=fmt)
    act_bytes = xs[0].numel() * xs[0].element_size()

    clone = measure(lambda i: xs[i % ROTATE].clone(memory_format=fmt), device, budget_s=budget_s)
    copy_gbps = 2 * act_bytes / (clone.median_ms * 1e-3) / 1e9
    rows = [_row("clone", "fwd", shape, dtype, layout, "torch-clone", clone, 2 * act_bytes, copy_gbps, 0.0)]

    bytes_moved = {"fwd": 2 * act_bytes, "bwd": 3 * act_bytes, "fwdbwd": 5 * act_bytes}
    for impl in _impls(device):
        with torch.no_grad():
            err = _rel_err(impl.conv(xs[0], w), reference)
        leaves = [x.detach().requires_grad_() for x in xs]
        w_leaf = w.detach().requires_grad_()

        def fwd(i):
            with torch.no_grad():
                impl.conv(xs[i % ROTATE], w)

        outputs = [impl.conv(x, w_leaf) for x in leaves]

        def bwd(i):
            torch.autograd.grad(outputs[i % ROTATE], (leaves[i % ROTATE], w_leaf), grad, retain_graph=True)

        def fwdbwd(i):
            x = leaves[i % ROTATE]
            torch.autograd.grad(impl.conv(x, w_leaf), (x, w_leaf), grad)

        for direction, run in zip(DIRECTIONS, (fwd, bwd, fwdbwd)):
            timing = measure(run, device, budget_s=budget_s)
            rows.append(_row("depthwise_conv3d", direction, shape, dtype, layout, impl.name, timing,
                             bytes_moved[direction], copy_gbps, err))
    return rows


def run_suite(device: torch.device, shapes: Iterable = CPU_SHAPES, dtype: torch.dtype = torch.float32,
              budget_s: float = 0.5, progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    cases = [(shape, layout) for shape in shapes for layout in LAYOUTS]
    rows = []
    for shape, layout in tqdm(cases, desc="depthwise_conv3d", disable=not progress, leave=False):
        rows += bench_depthwise(shape, layout, dtype, device, budget_s)
    return rows


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def summarize(rows: list[dict]) -> dict:
    """Speedups of vid3d over PyTorch (geometric means over shapes) per direction and layout.

    Keys: "<direction>/<layout>" (vid3d against PyTorch in the same layout) and
    "<direction>/best" (vid3d's faster layout against PyTorch's faster layout).
    """
    times = {}
    for r in rows:
        if r["op"] == "depthwise_conv3d":
            kind = "vid3d" if r["impl"].startswith("vid3d") else "torch"
            times[(tuple(r["shape"]), r["layout"], r["direction"], kind)] = r["median_ms"]
    shapes = sorted({key[0] for key in times})
    summary = {}
    for direction in DIRECTIONS:
        for layout in LAYOUTS:
            ratios = [times[(s, layout, direction, "torch")] / times[(s, layout, direction, "vid3d")]
                      for s in shapes if (s, layout, direction, "vid3d") in times]
            summary[f"{direction}/{layout}"] = _geomean(ratios)
        best = [min(times[(s, lay, direction, "torch")] for lay in LAYOUTS)
                / min(times[(s, lay, direction, "vid3d")] for lay in LAYOUTS)
                for s in shapes if all((s, lay, direction, "vid3d") in times for lay in LAYOUTS)]
        summary[f"{direction}/best"] = _geomean(best)
    return summary


def format_table(rows: list[dict]) -> str:
    """A markdown table: per shape, layout and direction, PyTorch and vid3d times and the speedup."""
    lines = ["| shape | layout | dir | torch ms | vid3d ms | speedup | vid3d % of copy | vid3d rel err |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    by_key = {}
    for r in rows:
        if r["op"] == "depthwise_conv3d":
            by_key.setdefault((tuple(r["shape"]), r["layout"], r["direction"]), {})[r["impl"]] = r
    for (shape, layout, direction), impls in by_key.items():
        ours = next((r for name, r in impls.items() if name.startswith("vid3d")), None)
        theirs = impls["torch-eager"]
        shape_text = "x".join(map(str, shape))
        if ours is None:
            lines.append(f"| {shape_text} | {layout} | {direction} | {theirs['median_ms']:.3f} | - | - | - | - |")
            continue
        lines.append(
            f"| {shape_text} | {layout} | {direction} | {theirs['median_ms']:.3f} | {ours['median_ms']:.3f} | "
            f"{theirs['median_ms'] / ours['median_ms']:.2f}x | {ours['pct_of_copy']:.0f}% | {ours['max_rel_err']:.1e} |"
        )
    return "\n".join(lines)
