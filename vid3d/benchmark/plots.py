"""Charts of a benchmark record (matplotlib), written next to the record.

- ``<record>-ops.png``: vid3d's speedup over PyTorch per op, shape, layout and direction.
- ``<record>-models.png``: clips/s against MFLOPs for every model, PyTorch's best and vid3d
  side by side, one panel per mode: with PyTorch, FLOPs do not predict speed; the question the
  chart answers is whether they do with vid3d.
"""

from __future__ import annotations

from pathlib import Path

from . import models as model_bench


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise RuntimeError("plots need matplotlib: pip install matplotlib") from error
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _op_speedups(ops: list[dict]) -> dict[str, dict[str, float]]:
    """{"op shape layout": {direction: speedup}} of vid3d over PyTorch in the same layout."""
    times: dict[tuple, dict[str, float]] = {}
    for r in ops:
        if r["op"] == "clone":
            continue
        key = (r["op"], "x".join(map(str, r["shape"])), r["layout"], r["dtype"], r["direction"])
        times.setdefault(key, {})["vid3d" if r["impl"].startswith("vid3d") else r["impl"]] = r["median_ms"]
    out: dict[str, dict[str, float]] = {}
    for (op, shape, layout, dtype, direction), t in times.items():
        theirs = [v for k, v in t.items() if k != "vid3d"]
        if "vid3d" in t and theirs:
            out.setdefault(f"{op} {shape} {layout} {dtype}", {})[direction] = min(theirs) / t["vid3d"]
    return out


def plot_ops(record: dict, path: Path) -> Path | None:
    speedups = _op_speedups(record.get("ops", []))
    if not speedups:
        return None
    plt = _pyplot()
    directions = sorted({d for v in speedups.values() for d in v})
    labels = list(speedups)
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(labels) * len(directions) + 1.5))
    height = 0.8 / len(directions)
    for i, direction in enumerate(directions):
        ys = [j + i * height for j in range(len(labels))]
        ax.barh(ys, [speedups[label].get(direction, 0) for label in labels], height, label=direction)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(labels))], labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("vid3d speedup over PyTorch (same layout)")
    ax.set_title(f"vid3d ops on {record['device']} (torch {record['torch']}, commit {record['commit']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_models(record: dict, path: Path) -> Path | None:
    rows = model_bench.speedups(record.get("models", []))
    if not rows:
        return None
    plt = _pyplot()
    modes = sorted({r["mode"] for r in rows})
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        subset = [r for r in rows if r["mode"] == mode]
        for key, marker, name in (("torch", "o", "PyTorch (best)"), ("vid3d", "^", "vid3d")):
            ax.scatter([r["mflops"] for r in subset], [r[key] for r in subset], marker=marker, label=name)
        for r in subset:
            ax.annotate(model_bench.ModelSpec(r["model"], r["kwargs"]).label(), (r["mflops"], r["vid3d"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("MFLOPs per clip (multiply-adds, 3x16x112x112)")
        ax.set_ylabel("clips/s")
        ax.set_title(f"{mode}, batch {subset[0]['batch']}, {subset[0]['dtype']}", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"{record['device']} (torch {record['torch']}, commit {record['commit']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_record(record: dict, record_path: str | Path) -> list[Path]:
    """Writes the charts of ``record`` next to ``record_path``; returns the files written."""
    stem = Path(record_path).with_suffix("")
    written = [plot_ops(record, Path(f"{stem}-ops.png")), plot_models(record, Path(f"{stem}-models.png"))]
    return [p for p in written if p is not None]
