"""The CUDA backend's kernels run on the CPU: tests/cpp/cuda_emulated_ops.cpp compiles csrc/cuda's
kernels and torch glue with the host compiler, each CUDA thread a host thread
(tests/cpp/cuda_host_emulation.h), and registers them as torch.ops.vid3d_emulated. Here the "cuda"
backend is pointed at those ops for CPU tensors, and the GPU tests' checks run through the public
ops: every stencil variant, dtype and layout, gradients, determinism, shuffles, the fused (2+1)D
pair. This tests the kernels' own code (indexing, tiling, 16-byte paths, reductions, barriers)
without a GPU; not their speed, nor GPU-only behaviour (tests/test_cuda.py on a GPU does that).
Skipped without a C++ compiler or CUDA's headers (cuda_fp16.h); the first run compiles for ~1 minute
(cached under build/ by the sources' hash).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vid3d
import vid3d.ops._custom_ops as custom_ops
import vid3d.ops._kernels as kernels_module
from vid3d import ops

from _helpers import assert_close, check_depthwise, make_layout, randn
import test_reliability
from test_cuda import CASES, DTYPES, LAYOUTS, VECTOR_CASES

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*")) + sorted((ROOT / "tests" / "cpp").glob("cuda_*"))


def _cuda_include() -> Path | None:
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        homes.append(str(Path(nvcc).resolve().parent.parent))
    for home in filter(None, homes):
        if (Path(home) / "include" / "cuda_fp16.h").exists():
            return Path(home) / "include"
    return None


CUDA_INCLUDE = _cuda_include()
pytestmark = [
    pytest.mark.skipif(CUDA_INCLUDE is None, reason="CUDA headers (cuda_fp16.h) not found"),
    pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None, reason="no C++ compiler"),
    pytest.mark.skipif(not (ROOT / "csrc" / "cuda").exists(), reason="not a source checkout"),
]


@pytest.fixture(scope="session")
def emulated_ops():
    from torch.utils import cpp_extension

    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES if p.is_file())).hexdigest()[:16]
    build = ROOT / "build" / f"cuda-emulated-{digest}"
    build.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(
        name="vid3d_cuda_emulated",
        sources=[str(ROOT / "tests" / "cpp" / "cuda_emulated_ops.cpp")],
        extra_include_paths=[str(ROOT / "csrc"), str(ROOT / "tests" / "cpp"), str(CUDA_INCLUDE)],
        extra_cflags=["-O1", "-fno-strict-aliasing", "-Wno-unknown-pragmas", "-D__CUDA_NO_HALF_OPERATORS__",
                      "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
                      "-D__CUDA_NO_HALF2_OPERATORS__"],
        build_directory=str(build),
        is_python_module=False,
    )
    return torch.ops.vid3d_emulated


@pytest.fixture
def cuda_on_cpu(monkeypatch, emulated_ops):
    """Backend "cuda" runs CPU tensors with the emulated CUDA kernels."""
    def forward(input, weight, bias, stride, padding, dilation, output, activation=None):
        # The inferred schema of the emulated op has no default for the activation.
        emulated_ops.depthwise_conv3d_forward(input, weight, bias, stride, padding, dilation, output, activation)

    emulated = kernels_module.KernelSet(
        forward,
        emulated_ops.depthwise_conv3d_backward,
        emulated_ops.cat_shuffle3d_forward,
        emulated_ops.cat_shuffle3d_backward,
        conv2plus1d_depthwise_forward=emulated_ops.conv2plus1d_depthwise_forward,
    )
    real_kernels, real_reason = custom_ops.kernels, kernels_module.unavailable_reason
    monkeypatch.setattr(custom_ops, "kernels", lambda name: emulated if name == "cuda" else real_kernels(name))
    monkeypatch.setattr(kernels_module, "unavailable_reason",
                        lambda name, device: None if name == "cuda" else real_reason(name, device))
    return emulated_ops


# Every case in float32 and every layout; the other dtypes on the planar and channels-last paths for
# the stencil variants and the vector-width cases.
MATRIX = [(case, layout, torch.float32) for case in CASES for layout in LAYOUTS] + [
    (case, layout, dtype) for case in CASES[:13] + VECTOR_CASES for layout in ("ncdhw", "channels_last_3d")
    for dtype in DTYPES if dtype != torch.float32
]


@pytest.mark.parametrize("case,layout,dtype", MATRIX, ids=str)
def test_depthwise_conv3d(cuda_on_cpu, case, layout, dtype):
    check_depthwise(case, layout, dtype, "cuda")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_misaligned_views(cuda_on_cpu, dtype, channels_last):
    base = randn((2, 11, 5, 9, 13), torch.float64, 0).to(dtype)
    x = base.contiguous(memory_format=torch.channels_last_3d)[:, 1:] if channels_last else base[..., 1:]
    channels = x.shape[1]
    w = randn((channels, 1, 3, 3, 3), torch.float64, 1).to(dtype)
    b = randn((channels,), torch.float64, 2).to(dtype)
    ref = F.conv3d(x.double(), w.double(), b.double(), 1, 1, 1, channels)
    n, c, t, h, v = ref.shape
    storage = torch.empty(ref.numel() + 1, dtype=dtype)[1:]
    out = storage.view(n, t, h, v, c).permute(0, 4, 1, 2, 3) if channels_last else storage.view(ref.shape)
    cuda_on_cpu.depthwise_conv3d_forward(x, w, b, [1, 1, 1], [1, 1, 1], [1, 1, 1], out, None)
    assert_close(out, ref, dtype)


@pytest.mark.parametrize("activation,reference", [("relu", F.relu), ("relu6", F.relu6)])
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
def test_fused_activation(cuda_on_cpu, activation, reference, layout):
    x = make_layout(4 * randn((2, 12, 4, 7, 9), torch.float64, 0), layout).float().requires_grad_()
    w = randn((12, 1, 3, 3, 3), torch.float32, 1).requires_grad_()
    b = randn((12,), torch.float32, 2).requires_grad_()
    with vid3d.backend("cuda"):
        y = ops.depthwise_conv3d(x, w, b, 1, 1, activation=activation)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref = reference(F.conv3d(x64, w64, b64, 1, 1, 1, 12))
    assert_close(y, ref, torch.float32, "output")
    grad = randn(ref.shape, torch.float64, 3)
    for g, r in zip(torch.autograd.grad(y, [x, w, b], grad.float()), torch.autograd.grad(ref, [x64, w64, b64], grad)):
        assert_close(g, r, torch.float32, "gradient")


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
@pytest.mark.parametrize("stride", [1, 2])
def test_backward_is_bitwise_deterministic(cuda_on_cpu, layout, stride):
    x = make_layout(randn((2, 6, 5, 12, 12), torch.float32, 0), layout).requires_grad_()
    w = randn((6, 1, 3, 3, 3), torch.float32, 1).requires_grad_()
    b = randn((6,), torch.float32, 2).requires_grad_()
    with vid3d.backend("cuda"):
        y = ops.depthwise_conv3d(x, w, b, stride, 1)
        grad = randn(y.shape, torch.float32, 3)
        first, second = (torch.autograd.grad(ops.depthwise_conv3d(x, w, b, stride, 1), [x, w, b], grad)
                         for _ in range(2))
    for a, c in zip(first, second):
        assert torch.equal(a, c)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("channels,groups", [((6,), 3), ((2, 4), 3), ((3, 3, 6), 4), ((8, 8), 2), ((64,), 4)])
def test_shuffles(cuda_on_cpu, channels, groups, layout):
    parts64 = [randn((2, c, 3, 5, 8), torch.float64, i) for i, c in enumerate(channels)]
    parts = [make_layout(p, layout).requires_grad_() for p in parts64]
    with vid3d.backend("cuda"):
        y = ops.cat_shuffle3d(parts, groups) if len(parts) > 1 else ops.channel_shuffle3d(parts[0], groups)
    ref_parts = [p.clone().requires_grad_() for p in parts64]
    ref = F.channel_shuffle(torch.cat(ref_parts, 1), groups)
    assert torch.equal(y, ref)
    grad = randn(ref.shape, torch.float64, 9)
    for g, r in zip(torch.autograd.grad(y, parts, grad), torch.autograd.grad(ref, ref_parts, grad)):
        assert torch.equal(g, r)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.int8, torch.float16, torch.complex128])
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
def test_shuffle_any_dtype(cuda_on_cpu, dtype, layout):
    x = (torch.arange(2 * 12 * 2 * 4 * 8).reshape(2, 12, 2, 4, 8) % 7).to(dtype)
    with vid3d.backend("cuda"):
        y = ops.channel_shuffle3d(make_layout(x, layout), 3)
    assert torch.equal(y, F.channel_shuffle(x, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d", "strided"])
@pytest.mark.parametrize("stride,padding,dilation,relu,biases", [
    (1, 1, 1, True, True),
    ((2, 1, 2), (2, 0, 1), (2, 1, 1), False, True),
    ((1, 2, 1), (0, 2, 1), (1, 2, 1), True, False),
])
def test_conv2plus1d_fused_depthwise_pair(cuda_on_cpu, stride, padding, dilation, relu, biases, layout, dtype):
    x = make_layout(randn((2, 5, 6, 7, 6), torch.float64, 0), layout).to(dtype).requires_grad_()
    params = [randn((5, 1, 1, 3, 3), torch.float64, 1), randn((5, 1, 3, 1, 1), torch.float64, 2)]
    if biases:
        params += [randn((5,), torch.float64, 3), randn((5,), torch.float64, 4)]
    params = [p.to(dtype).requires_grad_() for p in params]
    args = dict(stride=stride, padding=padding, dilation=dilation, mid_activation="relu" if relu else None)
    with vid3d.backend("cuda"):
        y = ops.conv2plus1d(x, *params, **args)
    x64, params64 = x.detach().double().requires_grad_(), [p.detach().double().requires_grad_() for p in params]
    with vid3d.backend("torch"):
        ref = ops.conv2plus1d(x64, *params64, **args)
    assert_close(y, ref, dtype, "output")
    grad = randn(ref.shape, torch.float64, 5)
    for g, r in zip(torch.autograd.grad(y, [x, *params], grad.to(dtype)),
                    torch.autograd.grad(ref, [x64, *params64], grad)):
        assert_close(g, r, dtype, "gradient")


# The NaN/Inf checks of test_reliability through the emulated CUDA kernels: on the GPU they found
# NaN in the input and weight gradients where PyTorch has Inf (zeros outside the tensor times Inf).
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name, role", [(name, role) for name in ("depthwise_conv3d", "conv2plus1d-depthwise")
                                        for role in test_reliability.ROLES[name]], ids=str)
def test_nan_and_inf_propagate_like_pytorch(cuda_on_cpu, name, role, dtype):
    test_reliability.test_nan_and_inf_propagate_like_pytorch("cuda", "cpu", name, role, dtype)


@pytest.mark.parametrize("grad_of", test_reliability.NONFINITE_CASES)
def test_gradients_add_no_out_of_range_terms(cuda_on_cpu, grad_of):
    test_reliability.test_gradients_add_no_out_of_range_terms("cuda", "cpu", grad_of)
