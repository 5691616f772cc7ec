"""Registers, spills and stack of every CUDA kernel, from ptxas's `-Xptxas -v` report.

`make cuda-resources` runs this over the reports `make cuda-check` keeps (build/cuda-check/*.ptxas).
These are compile-time figures from ptxas, not measurements (ncu gives achieved occupancy and
bandwidth on a GPU). Usage: python bench/ptxas_resources.py [--arch sm_90] REPORT...
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess

ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers")


def demangle(names: list[str]) -> list[str]:
    if not names or shutil.which("c++filt") is None:
        return names
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    return out.splitlines()


def shorten(name: str) -> str:
    name = name.replace("vid3d::cuda::", "").replace("(anonymous namespace)::", "")
    return re.sub(r"\(.*\)$", "", name).replace("void ", "")


def parse(path: str) -> list[dict]:
    rows, entry, stack = [], None, None
    with open(path) as f:
        for line in f:
            if m := ENTRY.search(line):
                entry, stack = {"mangled": m.group(1), "arch": m.group(2)}, None
            elif entry and (m := SPILLS.search(line)):
                stack = [int(v) for v in m.groups()]
            elif entry and (m := USED.search(line)):
                frame, stores, loads = stack or (0, 0, 0)
                rows.append({**entry, "registers": int(m.group(1)), "stack": frame, "spill_stores": stores,
                             "spill_loads": loads})
                entry = None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--arch", default=None, help="only this architecture (e.g. sm_90)")
    args = parser.parse_args()
    rows = [row for path in args.reports for row in parse(path) if args.arch in (None, row["arch"])]
    for row, name in zip(rows, demangle([r["mangled"] for r in rows])):
        row["name"] = shorten(name)
    rows.sort(key=lambda r: (r["arch"], r["name"]))
    print(f"{'arch':6} {'regs':>4} {'stack':>5} {'spill st/ld':>11}  kernel")
    for r in rows:
        spills = f"{r['spill_stores']}/{r['spill_loads']}"
        print(f"{r['arch']:6} {r['registers']:>4} {r['stack']:>5} {spills:>11}  {r['name']}")


if __name__ == "__main__":
    main()
