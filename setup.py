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

from setuptools import find_packages, setup
from torch.utils import cpp_extension

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
    cxx_flags = ["-O3", "-fopenmp"]
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


setup(
    packages=find_packages(include=["vid3d", "vid3d.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
