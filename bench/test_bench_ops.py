"""Op microbenchmarks for pytest-benchmark: vid3d's kernels against PyTorch on the suite of
`vid3d bench ops` (depthwise conv3d forward and forward+backward, the shuffles)."""

import pytest
import torch
import torch.nn.functional as F

import vid3d
from vid3d.benchmark.ops import CPU_SHAPES, LAYOUTS
from vid3d.ops._kernels import native_backend

from vid3d.benchmark.timing import synchronized

IMPLS = ("torch", "vid3d")


def _backend(impl, device):
    if impl == "torch":
        return "torch"
    backend = native_backend(device)
    if backend is None:
        pytest.skip(f"no vid3d backend runs on {device} here")
    return backend


def _input(shape, layout, device, requires_grad=False):
    x = torch.randn(shape, device=device).contiguous(memory_format=LAYOUTS[layout])
    return x.requires_grad_(requires_grad)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape", CPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_depthwise_forward(benchmark, device, shape, layout, impl):
    x = _input(shape, layout, device)
    w = torch.randn(shape[1], 1, 3, 3, 3, device=device)
    backend = _backend(impl, device)

    def run():
        with torch.no_grad(), vid3d.backend(backend):
            return vid3d.ops.depthwise_conv3d(x, w, None, 1, 1, 1)

    benchmark(synchronized(run, device))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape", CPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_depthwise_forward_backward(benchmark, device, shape, layout, impl):
    x = _input(shape, layout, device, requires_grad=True)
    w = torch.randn(shape[1], 1, 3, 3, 3, device=device, requires_grad=True)
    backend = _backend(impl, device)

    def run():
        with vid3d.backend(backend):
            y = vid3d.ops.depthwise_conv3d(x, w, None, 1, 1, 1)
            return torch.autograd.grad(y, (x, w), torch.ones_like(y))

    benchmark(synchronized(run, device))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape", CPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cat_shuffle(benchmark, device, shape, layout, impl):
    x = _input(shape, layout, device)
    halves = list(x.chunk(2, dim=1))
    backend = _backend(impl, device)

    def run():
        with vid3d.backend(backend):
            return vid3d.ops.cat_shuffle3d(halves, 2)

    benchmark(synchronized(run, device))


def test_reference_clone(benchmark, device):
    """The bandwidth reference: a copy of the largest suite tensor."""
    x = torch.randn(max(CPU_SHAPES, key=lambda s: torch.Size(s).numel()), device=device)
    benchmark(synchronized(lambda: x.clone(), device))
