"""vid3d's CUDA kernels against its Triton kernels and PyTorch, on the GPU, over the DESIGN shapes.

For each depthwise shape (the reference models' layers at batch 8, X3D-like and large ones), dtype
and layout it times the forward and forward+backward of vid3d.ops.depthwise_conv3d with the "cuda"
and "triton" backends forced, PyTorch's F.conv3d(groups=C) in the same layout (cuDNN for
channels_last_3d, PyTorch's native depthwise kernel for NCDHW) and a clone() of the input as the
bandwidth reference, checking every forward against float64 first. Also the shuffles and the
fused (2+1)D depthwise pair. Writes a JSON list of rows and a markdown table.

Run by bench/gpu_session.sh; alone: python bench/cuda_kernels.py --json out.json --md out.md
[--budget 0.1] [--time-limit 120] [--quick]. --ncu runs each main CUDA kernel a few times on one
large shape and exits (a target for ncu).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

import vid3d
from vid3d.benchmark.environment import environment
from vid3d.benchmark.timing import measure

FORMATS = {"ncdhw": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
# (shape, kernel, stride, padding): DESIGN.md's suite.
DEPTHWISE = [
    ((8, 96, 16, 56, 56), (3, 3, 3), 2, 1),
    ((8, 144, 8, 28, 28), (3, 3, 3), 1, 1),
    ((8, 384, 2, 7, 7), (3, 3, 3), 1, 1),
    ((8, 232, 1, 4, 4), (3, 3, 3), 1, 1),
    ((8, 108, 16, 56, 56), (3, 3, 3), 1, 1),
    ((8, 64, 32, 56, 56), (3, 3, 3), 1, 1),
    ((1, 64, 15, 75, 315), (3, 3, 3), 1, 1),
    ((8, 144, 8, 28, 28), (1, 3, 3), 1, (0, 1, 1)),
    ((8, 144, 8, 28, 28), (3, 1, 1), 1, (1, 0, 0)),
    ((8, 144, 8, 28, 28), (5, 5, 5), 1, 2),
]
QUICK = [DEPTHWISE[1], DEPTHWISE[4], DEPTHWISE[7]]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ROTATE = 3


def rel_err(y, ref):
    return ((y.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def depthwise_rows(shape, kernel, stride, padding, dtype, layout, budget):
    fmt = FORMATS[layout]
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(shape, generator=gen).to("cuda", dtype).contiguous(memory_format=fmt) for _ in range(ROTATE)]
    w = torch.randn(shape[1], 1, *kernel, generator=gen).to("cuda", dtype)
    ref = F.conv3d(xs[0].double(), w.double(), None, stride, padding, 1, shape[1])
    grad = torch.randn(ref.shape, generator=gen).to("cuda", dtype).contiguous(memory_format=fmt)
    in_bytes, out_bytes = xs[0].nbytes, grad.nbytes
    clone = measure(lambda i: xs[i % ROTATE].clone(memory_format=fmt), torch.device("cuda"), budget_s=budget)
    copy_gbps = 2 * in_bytes / (clone.median_ms * 1e-3) / 1e9
    impls = {
        "torch": lambda x, w: F.conv3d(x, w, None, stride, padding, 1, shape[1]),
        "vid3d-cuda": lambda x, w: _vid3d("cuda", x, w, stride, padding),
        "vid3d-triton": lambda x, w: _vid3d("triton", x, w, stride, padding),
    }
    rows = [dict(op="clone", direction="fwd", impl="torch-clone", median_ms=clone.median_ms, gbps=copy_gbps,
                 pct_of_copy=100.0)]
    traffic = {"fwd": in_bytes + out_bytes, "fwdbwd": 2 * in_bytes + 3 * out_bytes + in_bytes}
    leaves = [x.detach().requires_grad_() for x in xs]
    w_leaf = w.detach().requires_grad_()
    for name, conv in impls.items():
        try:
            with torch.no_grad():
                err = rel_err(conv(xs[0], w), ref)
            runs = {
                "fwd": lambda i: _no_grad(conv, xs[i % ROTATE], w),
                "fwdbwd": lambda i: torch.autograd.grad(conv(leaves[i % ROTATE], w_leaf), (leaves[i % ROTATE], w_leaf),
                                                        grad),
            }
            for direction, run in runs.items():
                t = measure(run, torch.device("cuda"), budget_s=budget)
                gbps = traffic[direction] / (t.median_ms * 1e-3) / 1e9
                rows.append(dict(op="depthwise_conv3d", direction=direction, impl=name, median_ms=t.median_ms,
                                 p20_ms=t.p20_ms, p80_ms=t.p80_ms, gbps=gbps, pct_of_copy=100 * gbps / copy_gbps,
                                 max_rel_err=err))
        except Exception as error:  # one failing backend must not hide the others' numbers
            rows.append(dict(op="depthwise_conv3d", direction="error", impl=name, error=repr(error)[:300]))
    for row in rows:
        row.update(shape=list(shape), kernel=list(kernel), stride=stride, padding=padding,
                   dtype=str(dtype).removeprefix("torch."), layout=layout)
    return rows


def _vid3d(backend, x, w, stride, padding):
    with vid3d.backend(backend):
        return vid3d.ops.depthwise_conv3d(x, w, None, stride, padding)


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def shuffle_and_pair_rows(budget):
    rows = []
    shape = (8, 232, 8, 28, 28)
    for layout, fmt in FORMATS.items():
        x = torch.randn(shape, device="cuda").contiguous(memory_format=fmt)
        halves = [x[:, :116].contiguous(memory_format=fmt), x[:, 116:].contiguous(memory_format=fmt)]
        cases = {
            "torch": lambda: F.channel_shuffle(torch.cat(halves, 1), 2),
            "vid3d-cuda": lambda: _backend_call("cuda", vid3d.ops.cat_shuffle3d, halves, 2),
            "vid3d-triton": lambda: _backend_call("triton", vid3d.ops.cat_shuffle3d, halves, 2),
        }
        expected = cases["torch"]()
        for name, run in cases.items():
            ok = torch.equal(run(), expected)
            t = measure(lambda i: run(), torch.device("cuda"), budget_s=budget)
            rows.append(dict(op="cat_shuffle3d", direction="fwd", impl=name, shape=list(shape), layout=layout,
                             dtype="float32", median_ms=t.median_ms, gbps=2 * x.nbytes / (t.median_ms * 1e-3) / 1e9,
                             exact=ok))
        ws = torch.randn(shape[1], 1, 1, 3, 3, device="cuda")
        wt = torch.randn(shape[1], 1, 3, 1, 1, device="cuda")
        pair = {
            "torch": lambda: _backend_call("torch", vid3d.ops.conv2plus1d, x, ws, wt, None, None, 1, 1, 1, "relu"),
            "vid3d-cuda": lambda: _backend_call("cuda", vid3d.ops.conv2plus1d, x, ws, wt, None, None, 1, 1, 1, "relu"),
            "vid3d-triton": lambda: _backend_call("triton", vid3d.ops.conv2plus1d, x, ws, wt, None, None, 1, 1, 1,
                                                  "relu"),
        }
        with torch.no_grad():
            expected = pair["torch"]().double()
            for name, run in pair.items():
                err = rel_err(run(), expected)
                t = measure(lambda i: run(), torch.device("cuda"), budget_s=budget)
                rows.append(dict(op="conv2plus1d_depthwise", direction="fwd", impl=name, shape=list(shape),
                                 layout=layout, dtype="float32", median_ms=t.median_ms,
                                 gbps=2 * x.nbytes / (t.median_ms * 1e-3) / 1e9, max_rel_err=err))
    return rows


def _backend_call(backend, fn, *args):
    with vid3d.backend(backend):
        return fn(*args)


def markdown(rows):
    lines = ["| op | shape | kernel | dtype | layout | dir | impl | ms | GB/s | % copy | rel err |",
             "| --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r.get("op") == "clone":
            continue
        shape = "x".join(map(str, r.get("shape", [])))
        kernel = "x".join(map(str, r.get("kernel", []))) or "-"
        if r.get("direction") == "error":
            lines.append(f"| {r['op']} | {shape} | {kernel} | {r.get('dtype')} | {r.get('layout')} | error | "
                         f"{r['impl']} | | | | {r['error'][:60]} |")
            continue
        pct = f"{r['pct_of_copy']:.0f}%" if "pct_of_copy" in r else ""
        err = f"{r['max_rel_err']:.1e}" if "max_rel_err" in r else ("exact" if r.get("exact") else "MISMATCH")
        lines.append(f"| {r['op']} | {shape} | {kernel} | {r['dtype']} | {r['layout']} | {r['direction']} | "
                     f"{r['impl']} | {r['median_ms']:.3f} | {r['gbps']:.0f} | {pct} | {err} |")
    return "\n".join(lines)


def speedups(rows):
    """Geometric mean over depthwise rows of torch / cuda and triton / cuda, per direction."""
    out = {}
    for direction in ("fwd", "fwdbwd"):
        ratios = {"torch": [], "vid3d-triton": []}
        keys = {(tuple(r["shape"]), tuple(r["kernel"]), r["dtype"], r["layout"]) for r in rows
                if r.get("op") == "depthwise_conv3d" and r.get("direction") == direction}
        for key in keys:
            times = {r["impl"]: r["median_ms"] for r in rows if r.get("op") == "depthwise_conv3d"
                     and r.get("direction") == direction and (tuple(r["shape"]), tuple(r["kernel"]), r["dtype"],
                                                              r["layout"]) == key}
            if "vid3d-cuda" not in times:
                continue
            for other in ratios:
                if other in times:
                    ratios[other].append(times[other] / times["vid3d-cuda"])
        for other, values in ratios.items():
            if values:
                out[f"{direction}: {other} ms / cuda ms"] = math.exp(sum(map(math.log, values)) / len(values))
    return out


def ncu_target():
    """Each main kernel a few times on one large shape, for ncu."""
    for layout, fmt in FORMATS.items():
        x = torch.randn((8, 108, 16, 56, 56), device="cuda", dtype=torch.float16).contiguous(memory_format=fmt)
        w = torch.randn((108, 1, 3, 3, 3), device="cuda", dtype=torch.float16, requires_grad=True)
        xg = x.detach().requires_grad_()
        for _ in range(2):
            y = _vid3d("cuda", xg, w, 1, 1)
            torch.autograd.grad(y, (xg, w), torch.ones_like(y))
            _backend_call("cuda", vid3d.ops.channel_shuffle3d, x, 4)
    torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    parser.add_argument("--md")
    parser.add_argument("--budget", type=float, default=0.1, help="seconds of timing per measurement")
    parser.add_argument("--time-limit", type=float, default=240, help="stop starting new shapes after this")
    parser.add_argument("--quick", action="store_true", help="three shapes, float16 only")
    parser.add_argument("--ncu", action="store_true")
    args = parser.parse_args()
    if args.ncu:
        ncu_target()
        return
    start = time.perf_counter()
    rows = []
    dtypes = {"float16": torch.float16} if args.quick else DTYPES
    for dtype_name, dtype in dtypes.items():
        for shape, kernel, stride, padding in QUICK if args.quick else DEPTHWISE:
            for layout in FORMATS:
                if time.perf_counter() - start > args.time_limit:
                    print(f"time limit reached; skipped {shape} {kernel} {dtype_name} {layout}", flush=True)
                    continue
                rows += depthwise_rows(shape, kernel, stride, padding, dtype, layout, args.budget)
                print(f"done {shape} {kernel} {dtype_name} {layout}", flush=True)
    if time.perf_counter() - start < args.time_limit:
        rows += shuffle_and_pair_rows(args.budget)
    table = markdown(rows)
    summary = speedups(rows)
    print(table)
    for key, value in summary.items():
        print(f"{key:40s} {value:6.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**environment(torch.device("cuda")), "rows": rows, "summary": summary}, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table + "\n\n" + "\n".join(f"- {k}: {v:.2f}x" for k, v in summary.items()) + "\n")


if __name__ == "__main__":
    main()
