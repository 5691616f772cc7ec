"""What a benchmark record or ``vid3d info`` reports about the machine and the build."""

from __future__ import annotations

import ctypes
import os
import platform

import torch

from .. import BACKENDS
from ..ops._kernels import _C, unavailable_reason


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    """The commit vid3d was built from (stamped by setup.py)."""
    try:
        from .._build_info import COMMIT
    except ImportError:
        return "unknown"
    return COMMIT


def _cpu_isa() -> str | None:
    return torch.ops.vid3d_native.cpu_isa() if _C is not None else None


# glibc malloc settings keep_host_memory makes: (mallopt parameter of <malloc.h>, name, bytes)
_KEPT_MEMORY_SETTINGS = ((-3, "mmap threshold", 32 << 20), (-1, "trim threshold", 1 << 30))


def keep_host_memory() -> str | None:
    """Makes glibc's malloc keep freed host memory for reuse (for this process); returns the
    settings it made, or None where the C library is not glibc or refused them.

    By default glibc maps each block above an mmap threshold with its own mmap and unmaps it on free,
    and hands the top of its heap back to the system once more than a trim threshold lies free there;
    both start at 128 KiB and grow (the trim threshold to twice the other) when a mapped block is
    freed, the mmap threshold up to 32 MiB. A call whose temporaries exceed them page-faults fresh
    memory in every time it runs: in fresh processes PyTorch's NCDHW depthwise forward took 26-41 ms
    on 4x64x16x28x28 (7,400-12,500 minor faults a call) and 49-74 ms on 4x32x16x56x56
    (17,800-23,500), against 15 and 17-25 ms once this had run. How much of that a timing caught
    depended on what the process had allocated before, so the benchmarks fix both thresholds before
    timing either side.
    """
    if platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    made = []
    for parameter, name, value in _KEPT_MEMORY_SETTINGS:
        if libc.mallopt(parameter, value) != 1:
            break
        made.append(f"{name} {value >> 30} GiB" if value >= 1 << 30 else f"{name} {value >> 20} MiB")
    return "glibc malloc: " + ", ".join(made) if made else None


def device_name(device: torch.device) -> str:
    """The GPU's name; for the CPU its model, the instruction set vid3d's kernels use and the thread
    count (a VM's model name such as "AMD EPYC" does not tell one generation from the next)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    isa = _cpu_isa()
    return f"{_cpu_name()}{f', {isa}' if isa else ''} ({torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict:
    """Versions and hardware, as the top level of a benchmark record."""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": _triton_version(),
        "commit": _commit(),
        "cpu_isa": _cpu_isa(),
        "threads": torch.get_num_threads(),
    }


def backend_status() -> dict[str, str]:
    """For each backend: "usable on <device>" or why it is not, for the devices present here."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    status = {}
    for name in BACKENDS:
        if name == "auto":
            continue
        usable = [d.type for d in devices if unavailable_reason(name, d) is None]
        if usable:
            status[name] = "usable on " + ", ".join(usable)
        else:
            status[name] = "not usable: " + "; ".join(f"{d.type}: {unavailable_reason(name, d)}" for d in devices)
    return status


def format_info() -> str:
    env = environment(torch.device("cpu"))
    lines = [
        f"vid3d     {__import__('vid3d').__version__}",
        f"torch     {env['torch']} (CUDA {env['cuda'] or 'none'}, cuDNN {env['cudnn'] or 'none'})",
        f"triton    {env['triton'] or 'not installed'}",
        f"python    {platform.python_version()}",
        f"cpu       {_cpu_name()}, {torch.get_num_threads()} threads, vid3d kernels: {env['cpu_isa'] or 'not built'}",
        f"gpu       {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}",
        f"native    vid3d._C {'built' if _C is not None else 'NOT built'}"
        + (f", CUDA kernels {'built' if _C.WITH_CUDA else 'not built'}" if _C is not None else ""),
        f"interpret TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')!r}",
        "backends:",
    ]
    lines += [f"  {name:7s} {text}" for name, text in backend_status().items()]
    return "\n".join(lines)
