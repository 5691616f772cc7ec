"""The Triton backend against PyTorch in float64: on the GPU when there is one, else on the CPU
under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1 there). Shapes are small:
the interpreter runs each program in NumPy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vid3d
from vid3d import ops
from vid3d.ops._kernels import unavailable_reason

from _helpers import assert_close, check_depthwise, make_layout, randn

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_why_not = unavailable_reason("triton", torch.device(DEVICE))
pytestmark = pytest.mark.skipif(_why_not is not None, reason=f"Triton backend not usable: {_why_not}")

CASES = [
    ((2, 3, 4, 5, 6), (3, 3, 3), 1, 1, 1),
    ((1, 20, 3, 6, 5), (1, 3, 3), (1, 2, 2), (0, 1, 1), 1),
    ((2, 4, 5, 4, 3), (3, 1, 1), (2, 1, 1), (1, 0, 0), (2, 1, 1)),
    ((1, 2, 3, 7, 9), (2, 4, 3), (2, 3, 1), (1, 2, 0), (1, 2, 3)),
    ((2, 5, 1, 1, 1), (3, 3, 3), 1, 1, 1),
]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d", "strided"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_depthwise_conv3d(case, layout, dtype):
    check_depthwise(case, layout, dtype, "triton", device=DEVICE)


@pytest.mark.parametrize("activation,reference", [("relu", F.relu), ("relu6", F.relu6)])
def test_fused_activation_epilogue(activation, reference):
    from vid3d.kernels import depthwise_conv3d_forward

    x = randn((2, 6, 3, 5, 5), torch.float64, 0, DEVICE)
    w, b = randn((6, 1, 3, 3, 3), torch.float64, 1, DEVICE), randn((6,), torch.float64, 2, DEVICE)
    y = torch.empty_like(x)
    depthwise_conv3d_forward(x, w, b, (1, 1, 1), (1, 1, 1), (1, 1, 1), y, activation=activation)
    assert_close(y.cpu(), reference(F.conv3d(x, w, b, 1, 1, 1, 6)).cpu(), torch.float64)


@pytest.mark.parametrize("activation,reference", [("relu", F.relu), ("relu6", F.relu6)])
def test_activation_keyword_fused(activation, reference):
    x = (3 * randn((2, 4, 3, 5, 5), torch.float64, 0, DEVICE)).requires_grad_()
    w = randn((4, 1, 3, 3, 3), torch.float64, 1, DEVICE).requires_grad_()
    with vid3d.backend("triton"):
        y = ops.depthwise_conv3d(x, w, None, 1, 1, activation=activation)
    ref = reference(F.conv3d(x, w, None, 1, 1, 1, 4))
    assert_close(y.cpu(), ref.cpu(), torch.float64)
    for g, r in zip(torch.autograd.grad(y.sum(), [x, w]), torch.autograd.grad(ref.sum(), [x, w])):
        assert_close(g.cpu(), r.cpu(), torch.float64)


def test_backward_is_deterministic():
    x = randn((2, 8, 4, 6, 6), torch.float32, 0, DEVICE).requires_grad_()
    w = randn((8, 1, 3, 3, 3), torch.float32, 1, DEVICE).requires_grad_()
    grad = randn((2, 8, 4, 6, 6), torch.float32, 2, DEVICE)
    with vid3d.backend("triton"):
        first, second = (torch.autograd.grad(ops.depthwise_conv3d(x, w, None, 1, 1), [x, w], grad) for _ in range(2))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d", "strided"])
@pytest.mark.parametrize("channels,groups", [((6,), 3), ((2, 4), 3), ((3, 3, 6), 4)])
def test_shuffles(channels, groups, layout):
    parts64 = [randn((2, c, 2, 3, 4), torch.float64, i) for i, c in enumerate(channels)]
    parts = [make_layout(p, layout).to(DEVICE).requires_grad_() for p in parts64]
    with vid3d.backend("triton"):
        y = ops.cat_shuffle3d(parts, groups) if len(parts) > 1 else ops.channel_shuffle3d(parts[0], groups)
    ref_parts = [p.clone().requires_grad_() for p in parts64]
    ref = F.channel_shuffle(torch.cat(ref_parts, 1), groups)
    assert torch.equal(y.cpu(), ref)
    grad = randn(ref.shape, torch.float64, 9)
    for g, r in zip(torch.autograd.grad(y, parts, grad.to(DEVICE)), torch.autograd.grad(ref, ref_parts, grad)):
        assert torch.equal(g.cpu(), r)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.int8])
def test_shuffle_any_dtype(dtype):
    x = (torch.arange(2 * 6 * 2 * 2 * 3).reshape(2, 6, 2, 2, 3) % 5).to(dtype)
    with vid3d.backend("triton"):
        assert torch.equal(ops.channel_shuffle3d(x.to(DEVICE), 3).cpu(), F.channel_shuffle(x, 3))


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d", "strided"])
@pytest.mark.parametrize("stride,padding,dilation,relu,biases", [
    (1, 1, 1, True, True),
    ((2, 1, 2), (2, 0, 1), (2, 1, 1), False, True),
    ((1, 2, 1), (0, 2, 1), (1, 2, 1), True, False),
])
def test_conv2plus1d_fused_depthwise_pair(stride, padding, dilation, relu, biases, layout):
    x = make_layout(randn((2, 5, 6, 7, 6), torch.float64, 0), layout).to(DEVICE).requires_grad_()
    params = [randn((5, 1, 1, 3, 3), torch.float64, 1, DEVICE), randn((5, 1, 3, 1, 1), torch.float64, 2, DEVICE)]
    if biases:
        params += [randn((5,), torch.float64, 3, DEVICE), randn((5,), torch.float64, 4, DEVICE)]
    params = [p.requires_grad_() for p in params]
    args = dict(stride=stride, padding=padding, dilation=dilation, mid_activation="relu" if relu else None)
    with vid3d.backend("triton"):
        y = ops.conv2plus1d(x, *params, **args)
    with vid3d.backend("torch"):
        ref = ops.conv2plus1d(x, *params, **args)
    assert_close(y.cpu(), ref.cpu(), torch.float64, "output")
    grad = randn(ref.shape, torch.float64, 5, DEVICE)
    for g, r in zip(torch.autograd.grad(y, [x, *params], grad), torch.autograd.grad(ref, [x, *params], grad)):
        assert_close(g.cpu(), r.cpu(), torch.float64, "gradient")


def test_opcheck():
    x = randn((1, 4, 3, 4, 4), torch.float64, 0, DEVICE).requires_grad_()
    w = randn((4, 1, 3, 3, 3), torch.float64, 1, DEVICE).requires_grad_()
    three = [1, 1, 1]
    torch.library.opcheck(torch.ops.vid3d.depthwise_conv3d, (x, w, None, three, three, three, None, "triton"))
    torch.library.opcheck(torch.ops.vid3d.depthwise_conv3d, (x, w, None, three, three, three, "relu", "triton"))
    torch.library.opcheck(torch.ops.vid3d.cat_shuffle3d, ([x, x], 2, "triton"))


def test_torch_compile_fullgraph():
    w = randn((4, 1, 3, 3, 3), torch.float32, 1, DEVICE).requires_grad_()

    def block(x):
        return ops.channel_shuffle3d(ops.depthwise_conv3d(x, w, None, 1, 1), 2)

    x = randn((1, 4, 3, 4, 4), torch.float32, 0, DEVICE)
    with vid3d.backend("triton"):
        eager = block(x)
        compiled = torch.compile(block, fullgraph=True)(x)
        (g_eager,) = torch.autograd.grad(eager.sum(), [w])
        (g_compiled,) = torch.autograd.grad(compiled.sum(), [w])
    assert_close(compiled.cpu(), eager.cpu(), torch.float32)
    assert_close(g_compiled.cpu(), g_eager.cpu(), torch.float32)
