"""vid3d's ops against PyTorch, side by side in one process, on the present device.

For each shape and memory layout it times PyTorch's ``F.conv3d(groups=C)`` and vid3d's
depthwise op (forward, backward, forward+backward), the channel shuffles (forward) against
``F.channel_shuffle`` (after ``torch.cat``), and a ``clone()`` of the input as the bandwidth
reference, and checks each implementation's forward against PyTorch in float64. vid3d's own
kernels are timed (its native backend forced), not "auto". Rows follow the record schema of
``bench/results`` (see bench/README.md).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import vid3d
from vid3d.ops._kernels import unavailable_reason

from .timing import geomean, measure, measure_alternating

# The foundation issue's CPU suite: 3x3x3 kernel, padding 1, float32.
CPU_SHAPES = ((4, 64, 16, 28, 28), (8, 240, 4, 14, 14), (8, 960, 2, 4, 4), (4, 32, 16, 56, 56))
# The GPU suite (DESIGN.md): depthwise layers of the reference models at batch 8, an X3D-M-like
# layer and two large ones.
GPU_SHAPES = ((8, 96, 16, 56, 56), (8, 144, 8, 28, 28), (8, 384, 2, 7, 7), (8, 232, 1, 4, 4),
              (8, 108, 16, 56, 56), (8, 64, 32, 56, 56), (1, 64, 15, 75, 315))


def default_shapes(device: torch.device) -> tuple:
    """The shape suite for ``device``: the GPU suite on CUDA, the (smaller) CPU suite elsewhere."""
    return GPU_SHAPES if device.type == "cuda" else CPU_SHAPES
LAYOUTS = {"ncdhw": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
DIRECTIONS = ("fwd", "bwd", "fwdbwd")
ROTATE = 3  # input copies cycled through so caches do not hold one


@dataclass(frozen=True)
class Impl:
    name: str
    conv: Callable  # (x, weight) -> y


def vid3d_backends(device: torch.device) -> list[str]:
    """vid3d's own backends that run tensors on ``device`` here, each timed on its own ("cuda" and
    "triton" on a GPU; "cpu" on the CPU, where Triton only runs interpreted)."""
    names = ("cuda", "triton") if device.type == "cuda" else ("cpu",)
    return [name for name in names if unavailable_reason(name, device) is None]


def _impls(device: torch.device) -> list[Impl]:
    def torch_conv(x, w):
        return F.conv3d(x, w, None, 1, 1, 1, x.shape[1])

    def vid3d_conv(backend):
        def conv(x, w):
            with vid3d.backend(backend):
                return vid3d.ops.depthwise_conv3d(x, w, None, 1, 1, 1)
        return conv

    return [Impl("torch-eager", torch_conv)] + [Impl(f"vid3d-{b}", vid3d_conv(b)) for b in vid3d_backends(device)]


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
    impls = _impls(device)
    errors = {}
    runs = {direction: {} for direction in DIRECTIONS}  # direction -> impl name -> run(i)
    for impl in impls:
        with torch.no_grad():
            errors[impl.name] = _rel_err(impl.conv(xs[0], w), reference)
        for direction, run in zip(DIRECTIONS, _depthwise_runs(impl, xs, w, grad)):
            runs[direction][impl.name] = run
    for direction in DIRECTIONS:
        timings = measure_alternating(runs[direction], device, budget_s=budget_s)
        rows += [_row("depthwise_conv3d", direction, shape, dtype, layout, impl.name, timings[impl.name],
                      bytes_moved[direction], copy_gbps, errors[impl.name]) for impl in impls]
    return rows


def _depthwise_runs(impl: Impl, xs: list[torch.Tensor], w: torch.Tensor, grad: torch.Tensor) -> tuple:
    """run(i) of each direction (DIRECTIONS' order) for one implementation; the backward differentiates
    graphs built here, one per input copy."""
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

    return fwd, bwd, fwdbwd


def bench_shuffles(shape, layout: str, dtype: torch.dtype, device: torch.device, budget_s: float,
                   copy_gbps: float) -> list[dict]:
    """Forward rows of channel_shuffle3d (4 groups) and cat_shuffle3d (the two channel halves, 2 groups)."""
    fmt = LAYOUTS[layout]
    gen = torch.Generator(device="cpu").manual_seed(1)
    xs = [torch.randn(shape, generator=gen).to(device=device, dtype=dtype).contiguous(memory_format=fmt)
          for _ in range(ROTATE)]
    halves = [[x[:, : shape[1] // 2].contiguous(memory_format=fmt), x[:, shape[1] // 2 :].contiguous(memory_format=fmt)]
              for x in xs]
    act_bytes = xs[0].numel() * xs[0].element_size()
    cases = {
        "channel_shuffle3d": (lambda i: F.channel_shuffle(xs[i % ROTATE], 4),
                              lambda i: vid3d.ops.channel_shuffle3d(xs[i % ROTATE], 4)),
        "cat_shuffle3d": (lambda i: F.channel_shuffle(torch.cat(halves[i % ROTATE], 1), 2),
                          lambda i: vid3d.ops.cat_shuffle3d(halves[i % ROTATE], 2)),
    }
    rows = []
    for op, (reference, ours) in cases.items():
        backends = {f"vid3d-{b}": b for b in vid3d_backends(device)}
        runs = {"torch-eager": reference} | dict.fromkeys(backends, ours)
        contexts = {name: functools.partial(vid3d.backend, b) for name, b in backends.items()}
        with torch.no_grad():
            expected = reference(0).double()
            errors = {}
            for name, run in runs.items():
                with contexts.get(name, contextlib.nullcontext)():
                    errors[name] = _rel_err(run(0), expected)
            timings = measure_alternating(runs, device, contexts=contexts, budget_s=budget_s)
        rows += [_row(op, "fwd", shape, dtype, layout, name, timings[name], 2 * act_bytes, copy_gbps, errors[name])
                 for name in runs]
    return rows


def run_suite(device: torch.device, shapes: Iterable | None = None, dtype: torch.dtype = torch.float32,
              budget_s: float = 0.5, progress: bool = True) -> list[dict]:
    """Record rows for every shape (default: :func:`default_shapes`) and layout."""
    from tqdm import tqdm

    shapes = default_shapes(device) if shapes is None else shapes

    cases = [(shape, layout) for shape in shapes for layout in LAYOUTS]
    rows = []
    for shape, layout in tqdm(cases, desc="vid3d bench ops", disable=not progress, leave=False):
        depthwise = bench_depthwise(shape, layout, dtype, device, budget_s)
        copy_gbps = depthwise[0]["gbps"]  # the clone row
        rows += depthwise + bench_shuffles(shape, layout, dtype, device, budget_s, copy_gbps)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Speedups of vid3d over PyTorch (geometric means over shapes) per op, direction and layout.

    Keys: "<op> <direction>/<layout>" (vid3d against PyTorch in the same layout) and
    "<op> <direction>/best" (vid3d's faster layout against PyTorch's faster layout).
    """
    times = {}
    for r in rows:
        if r["op"] != "clone":
            kind = "vid3d" if r["impl"].startswith("vid3d") else "torch"
            key = (r["op"], r["direction"], tuple(r["shape"]), r["layout"], kind)
            times[key] = min(times.get(key, float("inf")), r["median_ms"])  # each side's fastest impl
    summary = {}
    for op, direction in dict.fromkeys((key[0], key[1]) for key in times):
        shapes = sorted({key[2] for key in times if key[:2] == (op, direction)})

        def ratio(shape, layouts):
            if not all((op, direction, shape, lay, "vid3d") in times for lay in layouts):
                return None
            return (min(times[(op, direction, shape, lay, "torch")] for lay in layouts)
                    / min(times[(op, direction, shape, lay, "vid3d")] for lay in layouts))

        for name, layouts in [*((lay, (lay,)) for lay in LAYOUTS), ("best", tuple(LAYOUTS))]:
            ratios = [r for r in (ratio(shape, layouts) for shape in shapes) if r is not None]
            summary[f"{op} {direction}/{name}"] = geomean(ratios)
    return summary


def format_table(rows: list[dict]) -> str:
    """A markdown table: per op, shape, layout and direction, PyTorch and vid3d times and the speedup."""
    lines = ["| op | shape | layout | dir | torch ms | vid3d ms | speedup | vid3d % of copy | vid3d rel err |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    by_key = {}
    for r in rows:
        if r["op"] != "clone":
            by_key.setdefault((r["op"], tuple(r["shape"]), r["layout"], r["direction"]), {})[r["impl"]] = r
    for (op, shape, layout, direction), impls in by_key.items():
        ours = min((r for name, r in impls.items() if name.startswith("vid3d")), key=lambda r: r["median_ms"],
                   default=None)
        theirs = impls["torch-eager"]
        head = f"| {op} | {'x'.join(map(str, shape))} | {layout} | {direction} | {theirs['median_ms']:.3f} |"
        if ours is None:
            lines.append(f"{head} - | - | - | - |")
            continue
        lines.append(
            f"{head} {ours['median_ms']:.3f} ({ours['impl']}) | {theirs['median_ms'] / ours['median_ms']:.2f}x | "
            f"{ours['pct_of_copy']:.0f}% | {ours['max_rel_err']:.1e} |"
        )
    return "\n".join(lines)
