"""Whole-network benchmarks: clips per second of the papers' models, vid3d against PyTorch.

Each model is built once with :func:`vid3d.models.create` and timed side by side in one process:

- ``torch-eager``: the same network with every vid3d op running PyTorch's own implementation
  (``vid3d.backend("torch")``: ``F.conv3d(groups=C)``, ``F.channel_shuffle``, two convs for
  (2+1)D), in eval mode for inference: what the model costs in plain PyTorch.
- ``torch-compile``: that network under ``torch.compile`` (where it compiles; off by default on
  the CPU, where compiling the default models takes longer than timing them).
- ``vid3d``: the network on vid3d's kernels (``"auto"``), for inference after
  :func:`vid3d.optimize` (BatchNorm folded, activations fused).
- ``vid3d-unoptimized`` (inference only): the network on vid3d's kernels without
  :func:`vid3d.optimize`, so the record shows what the fusion itself is worth.

Inference is a forward pass under ``torch.inference_mode``; a training step is forward,
cross-entropy loss, backward and an SGD step. Rows follow the record schema in bench/README.md.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F

import vid3d
from vid3d.models import ModelSpec

from .timing import geomean, measure

CLIP = (3, 16, 112, 112)  # channels, frames, height, width: the papers' input
NUM_CLASSES = 600  # Kinetics-600, as in the Efficient-3DCNNs paper's Table 8
MODES = ("infer", "train")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# The default set: the efficient models of the Efficient-3DCNNs paper at width 1.0, and the
# ResNet-18 it compares them with (its 3D-ResNets-PyTorch 2018 model, shortcut A).
DEFAULT_MODELS = (
    ModelSpec("shufflenetv2", {"width_mult": 1.0}),
    ModelSpec("mobilenetv2", {"width_mult": 1.0}),
    ModelSpec("shufflenet", {"groups": 3, "width_mult": 1.0}),
    ModelSpec("squeezenet", {"version": 1.1}),
    ModelSpec("efficient_resnet18", {"shortcut_type": "A"}),
)


def default_batches(device: torch.device) -> dict[str, int]:
    """Batch per mode: 8 for inference; for training 32 on a GPU, 8 on the CPU."""
    return {"infer": 8, "train": 32 if device.type == "cuda" else 8}


def create_model(spec: ModelSpec, device: torch.device) -> torch.nn.Module:
    """The model of ``spec`` with the benchmark's class count, on ``device``."""
    kwargs = {"num_classes": NUM_CLASSES, **spec.kwargs}
    return vid3d.models.create(spec.name, **kwargs).to(device)


def _mflops(model: torch.nn.Module, clip) -> float:
    return vid3d.profile(model, clip)["flops"] / 1e6


UNOPTIMIZED = "vid3d-unoptimized"


def impls(model: torch.nn.Module, mode: str, compile_torch: bool):
    """(impl name, backend, module) to time in ``mode``: PyTorch eager (and compiled), then vid3d
    (for inference also without :func:`vid3d.optimize`)."""
    if mode == "infer":
        model = model.eval()
        chosen = [("torch-eager", "torch", model)]
        if compile_torch:
            chosen.append(("torch-compile", "torch", torch.compile(model)))
        return chosen + [(UNOPTIMIZED, "auto", model), ("vid3d", "auto", vid3d.optimize(model))]
    model = model.train()
    chosen = [("torch-eager", "torch", copy.deepcopy(model))]
    if compile_torch:
        chosen.append(("torch-compile", "torch", torch.compile(copy.deepcopy(model))))
    return chosen + [("vid3d", "auto", copy.deepcopy(model))]


def impl_count(mode: str, compile_torch: bool) -> int:
    """How many impls :func:`impls` returns for ``mode``."""
    return 1 + compile_torch + (2 if mode == "infer" else 1)


def runner(module, mode, backend, clips, labels, dtype):
    """``run(i)``: one inference pass or training step of ``module`` on ``clips[i % len(clips)]``."""
    device_type = clips[0].device.type
    autocast = dtype != torch.float32

    if mode == "infer":
        def run(i):
            with vid3d.backend(backend), torch.inference_mode(), \
                    torch.autocast(device_type, dtype=dtype, enabled=autocast):
                module(clips[i % len(clips)])
        return run

    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)

    def run(i):
        with vid3d.backend(backend):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type, dtype=dtype, enabled=autocast):
                loss = F.cross_entropy(module(clips[i % len(clips)]), labels)
            loss.backward()
            optimizer.step()
    return run


def bench_model(spec: ModelSpec, device: torch.device, modes: Iterable[str] = MODES,
                batches: dict[str, int] | None = None, dtype: torch.dtype = torch.float32,
                compile_torch: bool | None = None, budget_s: float = 2.0, progress=None,
                clip: tuple[int, ...] = CLIP) -> list[dict]:
    """Record rows for one model: every impl in every mode, in clips per second (clips of shape ``clip``)."""
    batches = batches or default_batches(device)
    compile_torch = device.type == "cuda" if compile_torch is None else compile_torch
    model = create_model(spec, device)
    mflops = _mflops(model, clip)
    gen = torch.Generator(device="cpu").manual_seed(0)
    rows = []
    for mode in modes:
        batch = batches[mode]
        clips = [torch.randn((batch, *clip), generator=gen).to(device) for _ in range(2)]
        labels = torch.randint(NUM_CLASSES, (batch,), generator=gen).to(device)
        for impl, backend, module in impls(model, mode, compile_torch):
            if progress is not None:
                progress.set_postfix_str(f"{spec.label()} {mode} {impl}")
            try:
                run = runner(module, mode, backend, clips, labels, dtype)
                timing = measure(run, device, min_runs=3, max_runs=50, budget_s=budget_s, warmup=2)
            except Exception as error:  # torch.compile may fail on a model: record why, time the rest
                if impl != "torch-compile":
                    raise
                print(f"vid3d bench: torch.compile failed on {spec.label()} ({mode}): {error}")
                continue
            rows.append({
                "model": spec.name, "kwargs": spec.kwargs, "batch": batch,
                "dtype": str(dtype).removeprefix("torch."), "mode": mode, "impl": impl,
                "clips_per_s": batch / (timing.median_ms * 1e-3), "median_ms": timing.median_ms,
                "p20_ms": timing.p20_ms, "p80_ms": timing.p80_ms, "mflops": mflops, "clip": list(clip),
            })
            if progress is not None:
                progress.update()
    return rows


def run_suite(device: torch.device, specs: Iterable[ModelSpec] = DEFAULT_MODELS, modes: Iterable[str] = MODES,
              batches: dict[str, int] | None = None, dtype: torch.dtype = torch.float32,
              compile_torch: bool | None = None, budget_s: float = 2.0, progress: bool = True) -> list[dict]:
    """Record rows for every model, mode and impl."""
    from tqdm import tqdm

    specs, modes = list(specs), list(modes)
    compile_torch = device.type == "cuda" if compile_torch is None else compile_torch
    total = len(specs) * sum(impl_count(mode, compile_torch) for mode in modes)
    rows = []
    with tqdm(total=total, desc="vid3d bench models", disable=not progress, leave=False) as bar:
        for spec in specs:
            rows += bench_model(spec, device, modes, batches, dtype, compile_torch, budget_s,
                                progress=bar if progress else None)
    return rows


def speedups(rows: list[dict]) -> list[dict]:
    """Per model and mode: PyTorch's best clips/s (eager or compiled), vid3d's, and the ratio;
    ``unoptimized`` is vid3d's clips/s without :func:`vid3d.optimize` where it was timed."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (r["model"], tuple(sorted(r["kwargs"].items())), r["mode"], r["dtype"], r["batch"])
        entry = best.setdefault(key, {"model": r["model"], "kwargs": r["kwargs"], "mode": r["mode"],
                                      "dtype": r["dtype"], "batch": r["batch"], "mflops": r.get("mflops"),
                                      "torch": 0.0, "torch_impl": None, "vid3d": None, "unoptimized": None})
        if r["impl"] == UNOPTIMIZED:
            entry["unoptimized"] = r["clips_per_s"]
        elif r["impl"].startswith("vid3d"):
            entry["vid3d"] = r["clips_per_s"]
        elif r["clips_per_s"] > entry["torch"]:
            entry["torch"], entry["torch_impl"] = r["clips_per_s"], r["impl"]
    out = []
    for entry in best.values():
        if entry["vid3d"] is not None and entry["torch"] > 0:
            out.append({**entry, "speedup": entry["vid3d"] / entry["torch"]})
    return out


def summarize(rows: list[dict]) -> dict:
    """Geometric-mean speedup of vid3d over PyTorch's best, per mode and dtype, and of
    :func:`vid3d.optimize` over the unoptimized vid3d network."""
    groups: dict[str, list[float]] = {}
    for s in speedups(rows):
        groups.setdefault(f"models {s['mode']}/{s['dtype']}", []).append(s["speedup"])
        if s["unoptimized"]:
            groups.setdefault(f"optimize {s['mode']}/{s['dtype']}", []).append(s["vid3d"] / s["unoptimized"])
    return {key: geomean(values) for key, values in groups.items()}


def format_table(rows: list[dict]) -> str:
    """A markdown table: model, MFLOPs, mode, PyTorch clips/s (its best impl), vid3d clips/s, speedup."""
    lines = ["| model | MFLOPs | mode | batch | dtype | PyTorch clips/s | vid3d clips/s | speedup "
             "| vid3d without optimize |",
             "| --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for s in speedups(rows):
        label = ModelSpec(s["model"], s["kwargs"]).label()
        mflops = f"{s['mflops']:.0f}" if s["mflops"] is not None else "-"
        unoptimized = f"{s['unoptimized']:.1f}" if s["unoptimized"] else "-"
        lines.append(f"| {label} | {mflops} | {s['mode']} | {s['batch']} | {s['dtype']} | "
                     f"{s['torch']:.1f} ({s['torch_impl']}) | {s['vid3d']:.1f} | {s['speedup']:.2f}x | {unoptimized} |")
    return "\n".join(lines)
