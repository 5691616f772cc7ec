"""The ``vid3d`` command: ``vid3d info`` and ``vid3d bench``."""

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
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
