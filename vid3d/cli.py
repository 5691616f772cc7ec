"""The ``vid3d`` command: ``info``, ``bench [models|ops|all]``, ``profile``, ``plot`` and ``report``."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch


def _info(args) -> int:
    from .benchmark.environment import format_info

    print(format_info())
    return 0


def _bench_models(args, device) -> tuple[list[dict], dict]:
    from .benchmark import models

    specs = args.models or models.DEFAULT_MODELS
    batches = models.default_batches(device)
    if args.batch:
        batches = dict.fromkeys(batches, args.batch)
    modes = models.MODES if args.mode == "both" else (args.mode,)
    rows = models.run_suite(device, specs, modes, batches, models.DTYPES[args.dtype], args.compile,
                            budget_s=args.budget, progress=not args.no_progress)
    print(models.format_table(rows))
    return rows, models.summarize(rows)


def _bench_ops(args, device) -> tuple[list[dict], dict]:
    from .benchmark import ops

    from .benchmark.models import DTYPES

    rows = ops.run_suite(device, dtype=DTYPES[args.dtype], budget_s=args.budget, progress=not args.no_progress)
    print(ops.format_table(rows))
    if not any(r["impl"].startswith("vid3d") for r in rows):
        print(f"\nno vid3d backend can run on {device} here (see `vid3d info`); only PyTorch was timed")
    return rows, ops.summarize(rows)


def _bench(args) -> int:
    from .benchmark.environment import environment, keep_host_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    env = {**environment(device), "host_allocator": keep_host_memory()}
    print(f"vid3d bench {args.suite} on {env['device']} (torch {env['torch']}, vid3d cpu kernels: {env['cpu_isa']})")
    op_rows, model_rows, summary = [], [], {}
    if args.suite in ("models", "all"):
        model_rows, model_summary = _bench_models(args, device)
        summary.update(model_summary)
    if args.suite in ("ops", "all"):
        op_rows, op_summary = _bench_ops(args, device)
        summary.update(op_summary)
    if summary:
        print("\nvid3d speedup over PyTorch (geometric means):")
        for key, value in summary.items():
            print(f"  {key:40s} {value:6.2f}x")
    if args.json:
        now = datetime.datetime.now(datetime.timezone.utc)
        clone_gbps = [r["gbps"] for r in op_rows if r["op"] == "clone"]
        record = {**env, "date": now.date().isoformat(), "time": now.strftime("%H:%M:%S"),
                  "copy_gbps": max(clone_gbps) if clone_gbps else None, "ops": op_rows, "models": model_rows,
                  "summary": summary}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
        print(f"record written to {path}")
        _plot_or_explain(record, path)
    return 0


def _plot_or_explain(record: dict, path: Path) -> None:
    from .benchmark.plots import plot_record

    try:
        written = plot_record(record, path)
    except RuntimeError as error:  # no matplotlib on this machine
        print(f"no plots: {error}; later: vid3d plot {path}")
        return
    for chart in written:
        print(f"chart written to {chart}")


def _plot(args) -> int:
    for name in args.records:
        path = Path(name)
        _plot_or_explain(json.loads(path.read_text()), path)
    return 0


def _report(args) -> int:
    from .benchmark.report import update_readme

    current = update_readme(args.readme, args.results, check=args.check)
    if args.check:
        print(f"{args.readme}: results section {'up to date' if current else 'OUT OF DATE (run vid3d report)'}")
        return 0 if current else 1
    print(f"{args.readme}: results section {'already up to date' if current else 'rewritten'}")
    return 0


def _model_spec(text: str):
    """``NAME[:key=value,...]`` as an argparse type: a :class:`vid3d.models.ModelSpec`."""
    from .models import ModelSpec

    try:
        return ModelSpec.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _clip_size(text: str) -> tuple[int, ...]:
    """``CxTxHxW`` -> a 4-tuple of positive ints."""
    try:
        size = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) != 4 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected CxTxHxW such as 3x16x112x112, got {text!r}")
    return size


def _profile(args) -> int:
    from . import models
    from .profile import TABLE_8, profile

    if args.table8:
        rows = [(name, kwargs, (mflops, mparams)) for name, kwargs, mflops, mparams in TABLE_8]
    else:
        rows = [(spec.name, spec.kwargs, None) for spec in args.models]
    if not rows:
        print("vid3d profile: name at least one model, or --table8", file=sys.stderr)
        return 2
    header = f"{'model':22s} {'kwargs':36s} {'MFLOPs':>9s} {'params (M)':>10s}"
    header += "   paper: MFLOPs  params (M)" if args.table8 else ""
    for index, (name, kwargs, paper) in enumerate(rows):
        try:
            model = models.create(name, num_classes=args.num_classes, **kwargs)
        except (TypeError, ValueError) as error:
            print(f"vid3d profile: {name}: {error}", file=sys.stderr)
            return 2
        if index == 0:
            print(header)
        counts = profile(model, args.input)
        shown = ",".join(f"{k}={v}" for k, v in kwargs.items()) or "-"
        line = f"{name:22s} {shown:36s} {counts['flops'] / 1e6:9.1f} {counts['params'] / 1e6:10.2f}"
        if paper:
            line += f"   {paper[0]:13d} {paper[1]:11.2f}"
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vid3d", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, and which backends are built and usable here").set_defaults(
        run=_info
    )
    bench = commands.add_parser("bench", help="time vid3d against PyTorch on this machine")
    bench.add_argument("suite", nargs="?", default="models", choices=["models", "ops", "all"],
                       help="models: whole networks (default); ops: the op microbenchmarks; all: both")
    bench.add_argument("--json", metavar="PATH", help="write the record (bench/results schema) and its charts")
    bench.add_argument("--models", nargs="+", type=_model_spec, metavar="NAME[:k=v,...]",
                       help="models to time, e.g. shufflenetv2:width_mult=0.5 (default: the standard set)")
    bench.add_argument("--batch", type=int, default=0, help="batch size for every mode (default: 8; 32 to train on a GPU)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="ops: the tensors' dtype; models: float32, or autocast to bfloat16/float16")
    bench.add_argument("--mode", default="both", choices=["infer", "train", "both"], help="models: which modes")
    bench.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="also time torch.compile of the PyTorch model (default: on a GPU only)")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    bench.add_argument("--budget", type=float, default=0.5, help="seconds of timing per measurement")
    bench.add_argument("--cpu", action="store_true", help="time the CPU even when a GPU is present")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(run=_bench)
    prof = commands.add_parser(
        "profile", help="multiply-adds and parameters of models, counted as the Efficient-3DCNNs paper did",
        description="Print MFLOPs (multiply-adds) and parameters for each model, counted as the "
                    "Efficient-3DCNNs paper counted them (its Table 8 with --table8).")
    prof.add_argument("models", nargs="*", type=_model_spec, metavar="MODEL",
                      help="a name from vid3d.models.list_models(), optionally with keywords: "
                           "shufflenet:groups=3,width_mult=0.5")
    prof.add_argument("--input", type=_clip_size, default=(3, 16, 112, 112), metavar="CxTxHxW",
                      help="clip size without the batch (default: 3x16x112x112)")
    prof.add_argument("--num-classes", type=int, default=600, help="classes of the head (default: 600)")
    prof.add_argument("--table8", action="store_true",
                      help="profile the models of the paper's Table 8 and show its numbers beside")
    prof.set_defaults(run=_profile)
    plot = commands.add_parser("plot", help="write the charts of benchmark records next to them")
    plot.add_argument("records", nargs="+", metavar="RECORD.json")
    plot.set_defaults(run=_plot)
    report = commands.add_parser("report", help="regenerate the README's results from the newest record per device")
    report.add_argument("--results", default="bench/results", help="folder of records (default: bench/results)")
    report.add_argument("--readme", default="README.md", help="README to rewrite (default: README.md)")
    report.add_argument("--check", action="store_true", help="only check that the section is up to date")
    report.set_defaults(run=_report)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
