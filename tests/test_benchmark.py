"""The benchmark tooling without timing anything long: model specs, speedup tables, the
README results section, charts, and one tiny model benchmark end to end."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from vid3d.benchmark import models, report, timing


def _row(model, mode, impl, clips, kwargs=None, dtype="float32"):
    return {"model": model, "kwargs": kwargs or {}, "batch": 8, "dtype": dtype, "mode": mode, "impl": impl,
            "clips_per_s": clips, "mflops": 100.0}


def test_model_spec_parse():
    spec = models.ModelSpec.parse("shufflenet:groups=3,width_mult=0.5,version=1.1x")
    assert spec == models.ModelSpec("shufflenet", {"groups": 3, "width_mult": 0.5, "version": "1.1x"})
    assert spec.label() == "shufflenet(groups=3,width_mult=0.5,version=1.1x)"
    assert models.ModelSpec.parse("resnet18") == models.ModelSpec("resnet18")
    with pytest.raises(ValueError, match="not key=value"):
        models.ModelSpec.parse("mobilenet:width_mult")


def test_speedups_take_pytorch_best_impl():
    rows = [_row("m", "infer", "torch-eager", 10.0), _row("m", "infer", "torch-compile", 20.0),
            _row("m", "infer", "vid3d", 50.0), _row("m", "train", "torch-eager", 4.0), _row("m", "train", "vid3d", 2.0)]
    by_mode = {s["mode"]: s for s in models.speedups(rows)}
    assert by_mode["infer"]["speedup"] == pytest.approx(2.5)
    assert by_mode["infer"]["torch_impl"] == "torch-compile"
    assert by_mode["train"]["speedup"] == pytest.approx(0.5)
    summary = models.summarize(rows + [_row("n", "infer", "torch-eager", 10.0), _row("n", "infer", "vid3d", 40.0)])
    assert summary["models infer/float32"] == pytest.approx((2.5 * 4.0) ** 0.5)
    table = models.format_table(rows)
    assert "| m | 100 | infer | 8 | float32 | 20.0 (torch-compile) | 50.0 | 2.50x | - |" in table


def test_optimize_effect_is_its_own_column_and_summary():
    rows = [_row("m", "infer", "torch-eager", 10.0), _row("m", "infer", "vid3d-unoptimized", 25.0),
            _row("m", "infer", "vid3d", 50.0), _row("m", "train", "torch-eager", 4.0), _row("m", "train", "vid3d", 2.0)]
    by_mode = {s["mode"]: s for s in models.speedups(rows)}
    assert by_mode["infer"]["speedup"] == pytest.approx(5.0)  # the optimized network, not the unoptimized one
    assert by_mode["infer"]["unoptimized"] == pytest.approx(25.0) and by_mode["train"]["unoptimized"] is None
    summary = models.summarize(rows)
    assert summary["optimize infer/float32"] == pytest.approx(2.0) and "optimize train/float32" not in summary
    assert "| 50.0 | 5.00x | 25.0 |" in models.format_table(rows)


def _record(device, commit, date, time="12:00:00"):
    return {"device": device, "torch": "2.13.0", "cuda": None, "triton": "3.9.0", "commit": commit,
            "date": date, "time": time, "ops": [], "models": [_row("m", "infer", "torch-eager", 10.0),
                                                            _row("m", "infer", "vid3d", 30.0)]}


def test_readme_results_from_newest_record_per_device(tmp_path):
    results = tmp_path / "bench" / "results"
    for folder, commit, date in [("cpu-a", "old", "2026-01-01"), ("cpu-a", "new", "2026-02-01"),
                                 ("gpu-b", "g1", "2026-01-05")]:
        (results / folder).mkdir(parents=True, exist_ok=True)
        (results / folder / f"{date}-{commit}.json").write_text(json.dumps(_record(folder, commit, date)))
    assert [p.name for p in report.newest_records(results)] == ["2026-02-01-new.json", "2026-01-05-g1.json"]

    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{report.BEGIN}\nstale\n{report.END}\n\nafter\n")
    assert not report.update_readme(readme, results, check=True)
    assert "stale" in readme.read_text()  # --check does not write
    assert not report.update_readme(readme, results)
    text = readme.read_text()
    assert "stale" not in text and text.endswith("\n\nafter\n")
    assert "bench/results/cpu-a/2026-02-01-new.json" in text and "commit new" in text and "commit old" not in text
    assert "| m | 100 | infer | 8 | float32 | 10.0 (torch-eager) | 30.0 | 3.00x |" in text
    assert report.update_readme(readme, results, check=True)


def test_readme_without_markers_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="no results markers"):
        report.update_readme(readme, tmp_path)


def test_committed_readme_matches_the_newest_records():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert report.update_readme(root / "README.md", root / "bench" / "results", check=True), (
        "README.md's results section is out of date: run `vid3d report` from the repository root")


def test_charts_are_written_next_to_the_record(tmp_path):
    pytest.importorskip("matplotlib")
    from vid3d.benchmark.plots import plot_record

    record = _record("cpu", "abc", "2026-01-01")
    record["ops"] = [
        {"op": "depthwise_conv3d", "direction": "fwd", "shape": [1, 2, 3, 4, 5], "dtype": "float32",
         "layout": "ncdhw", "impl": impl, "median_ms": ms} for impl, ms in (("torch-eager", 2.0), ("vid3d-cpu", 1.0))]
    path = tmp_path / "2026-01-01-abc.json"
    written = plot_record(record, path)
    assert sorted(p.name for p in written) == ["2026-01-01-abc-models.png", "2026-01-01-abc-ops.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_tiny_model_benchmark_end_to_end():
    pytest.importorskip("vid3d.models")
    rows = models.bench_model(models.ModelSpec("shufflenetv2", {"width_mult": 0.25}), torch.device("cpu"),
                              batches={"infer": 1, "train": 2}, compile_torch=False, budget_s=0.0,
                              clip=(3, 4, 32, 32))
    expected = {(m, i) for m in models.MODES for i in ("torch-eager", "vid3d")} | {("infer", "vid3d-unoptimized")}
    assert {(r["mode"], r["impl"]) for r in rows} == expected
    assert len(rows) == sum(models.impl_count(mode, False) for mode in models.MODES)
    assert all(r["clips_per_s"] > 0 and r["mflops"] > 0 for r in rows)


def test_tiny_op_benchmark_end_to_end():
    from vid3d.benchmark import ops

    rows = ops.run_suite(torch.device("cpu"), shapes=[(1, 4, 2, 5, 5)], budget_s=0.0, progress=False)
    impls = {(r["op"], r["impl"]) for r in rows}
    assert ("depthwise_conv3d", "vid3d-cpu") in impls and ("cat_shuffle3d", "torch-eager") in impls
    assert all(r["max_rel_err"] < 1e-5 for r in rows)
    summary = ops.summarize(rows)
    assert summary["depthwise_conv3d fwd/ncdhw"] > 0
    assert "(vid3d-cpu)" in ops.format_table(rows)


def _stretches(names=("a", "b"), **kwargs) -> list[tuple[str, list[int]]]:
    """Times callables that do nothing; returns the stretches in order as (name, run indices), each
    stretch marked by its callable's context being entered."""
    stretches = []

    @contextlib.contextmanager
    def stretch(name):
        stretches.append((name, []))
        yield

    runs = dict.fromkeys(names, lambda i: stretches[-1][1].append(i))
    contexts = {name: functools.partial(stretch, name) for name in names}
    timings = timing.measure_alternating(runs, torch.device("cpu"), contexts=contexts, **kwargs)
    assert set(timings) == set(names)
    assert all(t.p20_ms <= t.median_ms <= t.p80_ms for t in timings.values())
    return stretches


def test_measure_alternating_takes_turns_in_stretches():
    """Each callable's runs come in stretches that alternate with the others', in reversed order every
    other round, each in its context; every stretch after the first opens with one warm-up call, and
    run indices count every call, warm-ups included."""
    stretches = _stretches(rounds=3, min_runs=6, budget_s=0.0, warmup=2)
    # Per round and callable: the warm-ups (2, then 1), then min_runs / rounds = 2 timed runs.
    assert stretches == [("a", [0, 1, 2, 3]), ("b", [0, 1, 2, 3]), ("b", [4, 5, 6]), ("a", [4, 5, 6]),
                         ("a", [7, 8, 9]), ("b", [7, 8, 9])]


def test_measure_alternating_shares_the_run_counts_rounding_up():
    """Round k ends with at least ceil(min_runs * k / rounds) runs in all and at most
    ceil(max_runs * k / rounds); a callable that already has its share skips the stretch."""
    # min_runs 5 over 4 rounds: 2, 1, 1, 1 timed runs (5 in all), each stretch after 1 warm-up.
    assert [len(calls) for _, calls in _stretches(("a",), rounds=4, min_runs=5, budget_s=0.0, warmup=1)] == [3, 2, 2, 2]
    # max_runs 6 over 3 rounds with time to spare: 2 a stretch.
    stretches = _stretches(rounds=3, min_runs=1, max_runs=6, budget_s=60.0, warmup=0)
    assert [(name, len(calls)) for name, calls in stretches] == [("a", 2), ("b", 2), ("b", 2), ("a", 2), ("a", 2), ("b", 2)]
    # max_runs 2 over 4 rounds: caps of 1, 1, 2, 2 runs, so rounds 2 and 4 are skipped.
    stretches = _stretches(rounds=4, min_runs=1, max_runs=2, budget_s=60.0, warmup=0)
    assert stretches == [("a", [0]), ("b", [0]), ("a", [1]), ("b", [1])]
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        _stretches(rounds=0)


def test_measure_alone_is_one_stretch():
    calls = []
    timing.measure(calls.append, torch.device("cpu"), min_runs=5, max_runs=5, budget_s=10.0, warmup=2)
    assert calls == list(range(7))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc's malloc thresholds")
def test_keep_host_memory_serves_large_blocks_from_the_heap():
    """With glibc's defaults a fresh process maps a 20 MiB block on its own (and unmaps it on free);
    after keep_host_memory it comes from the heap, below the program break. In child processes, as
    the setting lasts for the process, with no MALLOC_* variables that would set it beforehand."""
    script = textwrap.dedent("""
        import ctypes, sys

        if sys.argv[1] == "keep":
            from vid3d.benchmark.environment import keep_host_memory

            print(keep_host_memory())
        libc = ctypes.CDLL(None)
        libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p
        libc.sbrk.argtypes = [ctypes.c_long]
        block = libc.malloc(20 << 20)
        print("heap" if block < libc.sbrk(0) else "mapped")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    lines = {}
    for mode in ("keep", "default"):
        result = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True,
                                env=env)
        lines[mode] = result.stdout.split("\n")[:-1]
    assert lines["keep"] == ["glibc malloc: mmap threshold 32 MiB, trim threshold 1 GiB", "heap"], lines
    assert lines["default"] == ["mapped"], lines
