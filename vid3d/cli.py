"""The ``vid3d`` command: ``vid3d info``, ``vid3d bench`` and ``vid3d profile``."""

from __future__ import annotations

import argparse
import datetime
import json
import sys

import torch


def _info(args) -> int:
    from .benchmark.environment import format_info

    print(format_info())
    return 0


def _bench(args) -> int:
    from .benchmark import ops
    from .benchmark.environment import environment

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    env = environment(device)
    print(f"vid3d bench ops on {env['device']} (torch {env['torch']}, vid3d cpu kernels: {env['cpu_isa']})")
    rows = ops.run_suite(device, budget_s=args.budget, progress=not args.no_progress)
    copy_gbps = max(r["gbps"] for r in rows if r["op"] == "clone")
    print(ops.format_table(rows))
    summary = ops.summarize(rows)
    if not any(r["impl"].startswith("vid3d") for r in rows):
        print(f"\nno vid3d backend can run on {device} here (see `vid3d info`); only PyTorch was timed")
    else:
        print("\nvid3d speedup over PyTorch, geometric mean over shapes:")
        for key, value in summary.items():
            print(f"  {key:36s} {value:6.2f}x")
    if args.json:
        record = {**env, "date": datetime.date.today().isoformat(), "copy_gbps": copy_gbps, "ops": rows,
                  "models": [], "summary": summary}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
        print(f"record written to {args.json}")
    return 0


def _model_spec(text: str) -> tuple[str, dict]:
    """``NAME[:key=value,...]`` -> (name, keywords); values are Python literals or plain words."""
    import ast

    name, _, options = text.partition(":")
    kwargs = {}
    for option in filter(None, options.split(",")):
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected NAME[:key=value,...], got {text!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a plain word, e.g. shortcut_type=A
    return name, kwargs


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
        rows = [(name, kwargs, None) for name, kwargs in args.models]
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
    bench.add_argument("suite", nargs="?", default="ops", choices=["ops"], help="what to time (default: ops)")
    bench.add_argument("--json", metavar="PATH", help="write the record (bench/results schema) to PATH")
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
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
