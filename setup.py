"""Builds vid3d and its native extension vid3d._C.

The C++ sources (csrc/*.cpp, csrc/cpu/*.cpp) are always built. The CUDA sources
(csrc/cuda/*.cu and *.cpp) are added when torch is a CUDA build and nvcc is found;
VID3D_CUDA=0|1 overrides that guess. MAX_JOBS limits parallel compile jobs (ninja).
Install with `pip install --no-build-isolation .` against the torch already present:
the build never downloads torch.
"""

import glob
import os
import shutil
import subprocess

from setuptools import find_packages, setup

try:
    from torch.utils import cpp_extension
except ImportError as error:
    raise SystemExit(
        f"vid3d builds against the installed torch, which could not be imported ({error}). Install torch "
        "first, then vid3d with `pip install --no-build-isolation .` (see README.md)."
    ) from error

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _cuda_wanted():
    choice = os.environ.get("VID3D_CUDA")
    if choice in ("0", "1"):
        return choice == "1"
    if choice is not None:
        raise SystemExit(f"VID3D_CUDA must be 0 or 1, got {choice!r}")
    nvcc = cpp_extension.CUDA_HOME and os.path.exists(os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    return bool(__import__("torch").version.cuda) and bool(nvcc or shutil.which("nvcc"))


def _extension():
    cpu_sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    cuda_sources = _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp")
    with_cuda = _cuda_wanted() and bool(cuda_sources)
    # -fopenmp makes at::parallel_for parallel in our files; the OpenMP runtime is torch's own
    # (not linked here, so there is one runtime in the process).
    cxx_flags = ["-O3", "-fopenmp", "-g0"]
    if with_cuda:
        print(f"vid3d: building vid3d._C with CUDA: {len(cpu_sources)} C++ and {len(cuda_sources)} CUDA sources")
        return cpp_extension.CUDAExtension(
            "vid3d._C",
            cpu_sources + cuda_sources,
            define_macros=[("VID3D_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math", "-lineinfo"]},
        )
    reason = "no CUDA sources yet" if not cuda_sources else "CUDA off (VID3D_CUDA=1 to force)"
    print(f"vid3d: building vid3d._C for the CPU ({len(cpu_sources)} C++ sources; {reason})")
    return cpp_extension.CppExtension("vid3d._C", cpu_sources, extra_compile_args={"cxx": cxx_flags})


def _stamp_commit():
    """Records the source commit in vid3d/_build_info.py, for benchmark records. VID3D_COMMIT names it
    where the tree is a copy without its git history (a GPU machine's working copy)."""
    if os.environ.get("VID3D_COMMIT"):
        _write_build_info(os.environ["VID3D_COMMIT"])
        return
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    _write_build_info((commit + ("-dirty" if dirty else "")) if commit else "unknown")


def _write_build_info(commit):
    with open(os.path.join(ROOT, "vid3d", "_build_info.py"), "w") as f:
        f.write(f'"""Written by setup.py at build time."""\n\nCOMMIT = "{commit}"\n')


_stamp_commit()
setup(
    packages=find_packages(include=["vid3d", "vid3d.*"]) + ["vid3d.kernels"],
    package_dir={"vid3d.kernels": "kernels"},  # the Triton kernels live at the top level
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
