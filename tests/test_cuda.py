"""vid3d's hand-written CUDA kernels (backend "cuda") against PyTorch in float64, on the GPU.

Skipped without a GPU or without a CUDA build of vid3d._C. Covers every templated stencil (3x3x3,
1x3x3, 3x1x1, 5x5x5, 3x5x5 at stride 1 and 2) and the generic kernel, odd sizes, dilations, all
dtypes, planar / channels-last / strided / permuted inputs and misaligned views (the scalar
fallback of the 16-byte loads), the fused bias + activation epilogue, every gradient, bitwise
determinism of the backward, the shuffles for any dtype, and the fused (2+1)D depthwise pair.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vid3d
from vid3d import ops
from vid3d.ops._kernels import unavailable_reason

from _helpers import assert_close, check_depthwise, make_layout, randn

DEVICE = "cuda"
_why_not = unavailable_reason("cuda", torch.device("cuda")) if torch.cuda.is_available() else "no GPU"
pytestmark = pytest.mark.skipif(_why_not is not None, reason=f"CUDA backend not usable: {_why_not}")

# (shape, kernel, stride, padding, dilation): every templated stencil, then generic ones. Most channel
# counts and rows are not multiples of the 16-byte vector widths: ragged blocks and scalar loads.
CASES = [
    ((2, 3, 5, 7, 9), (3, 3, 3), 1, 1, 1),
    ((2, 20, 4, 9, 10), (3, 3, 3), 2, 1, 1),
    ((1, 12, 5, 9, 11), (3, 3, 3), (1, 2, 2), 1, 1),
    ((1, 9, 6, 9, 9), (3, 3, 3), 1, 2, 2),
    ((2, 10, 3, 8, 9), (1, 3, 3), 1, (0, 1, 1), 1),
    ((1, 9, 3, 9, 7), (1, 3, 3), (1, 2, 2), (0, 1, 1), 1),
    ((2, 17, 7, 4, 5), (3, 1, 1), 1, (1, 0, 0), 1),
    ((2, 8, 9, 3, 3), (3, 1, 1), (2, 1, 1), (1, 0, 0), 1),
    ((1, 6, 7, 8, 9), (5, 5, 5), 1, 2, 1),
    ((1, 5, 9, 9, 10), (5, 5, 5), 2, 2, 1),
    ((1, 7, 5, 9, 9), (3, 5, 5), 1, (1, 2, 2), 1),
    ((1, 7, 5, 10, 9), (3, 5, 5), (1, 2, 2), (1, 2, 2), 1),
    ((2, 4, 5, 4, 3), (3, 1, 1), (2, 1, 1), (1, 0, 0), (2, 1, 1)),
    ((1, 2, 3, 7, 9), (2, 4, 3), (2, 3, 1), (1, 2, 0), (1, 2, 3)),
    ((2, 5, 1, 1, 1), (3, 3, 3), 1, 1, 1),
    ((1, 33, 3, 40, 70), (3, 3, 3), 1, 1, 1),  # several tiles per plane, ragged edges
]
# Rows and channel counts that are whole 16-byte vectors in every dtype: the vector loads and stores.
VECTOR_CASES = [
    ((2, 16, 3, 6, 16), (3, 3, 3), 1, 1, 1),
    ((1, 24, 4, 7, 32), (1, 3, 3), (1, 2, 2), (0, 1, 1), 1),
]
CASES += VECTOR_CASES
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
LAYOUTS = ["ncdhw", "channels_last_3d", "strided", "permuted"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_depthwise_conv3d(case, layout, dtype):
    check_depthwise(case, layout, dtype, "cuda", device=DEVICE)


@pytest.mark.parametrize("case", CASES[:3], ids=str)
def test_depthwise_conv3d_without_bias(case):
    check_depthwise(case, "channels_last_3d", torch.float32, "cuda", with_bias=False, device=DEVICE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_misaligned_views_take_the_scalar_loads(dtype, channels_last):
    """Input and output views one element into their storage: no 16-byte loads or stores."""
    base = randn((2, 11, 5, 9, 13), torch.float64, 0, DEVICE).to(dtype)
    x = base.contiguous(memory_format=torch.channels_last_3d)[:, 1:] if channels_last else base[..., 1:]
    channels = x.shape[1]
    w = randn((channels, 1, 3, 3, 3), torch.float64, 1, DEVICE).to(dtype)
    b = randn((channels,), torch.float64, 2, DEVICE).to(dtype)
    ref = F.conv3d(x.double(), w.double(), b.double(), 1, 1, 1, channels)
    n, c, t, h, v = ref.shape
    storage = torch.empty(ref.numel() + 1, dtype=dtype, device=DEVICE)[1:]
    out = storage.view(n, t, h, v, c).permute(0, 4, 1, 2, 3) if channels_last else storage.view(ref.shape)
    torch.ops.vid3d_native.depthwise_conv3d_forward(x, w, b, [1, 1, 1], [1, 1, 1], [1, 1, 1], out)
    assert_close(out.cpu(), ref.cpu(), dtype)


@pytest.mark.parametrize("activation,reference", [("relu", F.relu), ("relu6", F.relu6)])
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_activation(activation, reference, layout, dtype):
    x = make_layout(4 * randn((2, 12, 4, 7, 9), torch.float64, 0, DEVICE), layout).to(dtype).requires_grad_()
    w = randn((12, 1, 3, 3, 3), torch.float64, 1, DEVICE).to(dtype).requires_grad_()
    b = randn((12,), torch.float64, 2, DEVICE).to(dtype).requires_grad_()
    with vid3d.backend("cuda"):
        y = ops.depthwise_conv3d(x, w, b, 1, 1, activation=activation)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    before = F.conv3d(x64, w64, b64, 1, 1, 1, 12)
    ref = reference(before)
    assert_close(y.cpu(), ref.cpu(), dtype, "output")
    # No gradient through outputs within rounding of a kink (ReLU6's 6 is one in half precision: an
    # output that rounds to 6.0 has no gradient, as in PyTorch in that dtype).
    near_kink = (before.detach() - 6).abs() <= 4 * torch.finfo(dtype).eps * 6
    grad = randn(ref.shape, torch.float64, 3, DEVICE).masked_fill(near_kink, 0.0)
    for g, r in zip(torch.autograd.grad(y, [x, w, b], grad.to(dtype)), torch.autograd.grad(ref, [x64, w64, b64], grad)):
        assert_close(g.cpu(), r.cpu(), dtype, "gradient")


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
@pytest.mark.parametrize("stride", [1, 2])
def test_backward_is_bitwise_deterministic(layout, stride):
    x = make_layout(randn((4, 24, 8, 30, 30), torch.float32, 0, DEVICE), layout).requires_grad_()
    w = randn((24, 1, 3, 3, 3), torch.float32, 1, DEVICE).requires_grad_()
    b = randn((24,), torch.float32, 2, DEVICE).requires_grad_()
    runs = []
    with vid3d.backend("cuda"):
        y = ops.depthwise_conv3d(x, w, b, stride, 1)
        grad = randn(y.shape, torch.float32, 3, DEVICE)
        for deterministic in (False, True, False):
            torch.use_deterministic_algorithms(deterministic)
            try:
                runs.append(torch.autograd.grad(ops.depthwise_conv3d(x, w, b, stride, 1), [x, w, b], grad))
            finally:
                torch.use_deterministic_algorithms(False)
    for later in runs[1:]:
        for a, c in zip(runs[0], later):
            assert torch.equal(a, c)


def test_runs_on_the_current_stream():
    x = randn((2, 16, 6, 20, 20), torch.float32, 0, DEVICE)
    w = randn((16, 1, 3, 3, 3), torch.float32, 1, DEVICE)
    expected = F.conv3d(x, w, None, 1, 1, 1, 16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), vid3d.backend("cuda"):
        y = ops.depthwise_conv3d(x, w, None, 1, 1)
    stream.synchronize()
    assert_close(y, expected, torch.float32)


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_properties(0).total_memory < 24 << 30,
                    reason="needs a GPU with 24 GB")
def test_more_than_2_to_the_31_elements_use_64_bit_offsets():
    x = torch.randn((1, 1, 2, 32768, 32769), dtype=torch.float16, device=DEVICE)
    w = torch.randn((1, 1, 1, 3, 3), dtype=torch.float16, device=DEVICE)
    with torch.no_grad(), vid3d.backend("cuda"):
        y = ops.depthwise_conv3d(x, w, None, 1, (0, 1, 1))
    # The last rows of the last frame, where 32-bit offsets would have wrapped.
    tail = x[:, :, -1:, -10:, :].float()
    ref = F.conv3d(tail, w.float(), None, 1, (0, 1, 1))[..., -8:, :]
    assert_close(y[:, :, -1:, -8:, :].float(), ref, torch.float16)
    del x, y


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d", "strided", "permuted"])
@pytest.mark.parametrize("channels,groups", [((6,), 3), ((2, 4), 3), ((3, 3, 6), 4), ((8, 8), 2), ((64,), 4)])
def test_shuffles(channels, groups, layout):
    parts64 = [randn((2, c, 3, 5, 8), torch.float64, i) for i, c in enumerate(channels)]
    parts = [make_layout(p.to(DEVICE), layout).requires_grad_() for p in parts64]
    with vid3d.backend("cuda"):
        y = ops.cat_shuffle3d(parts, groups) if len(parts) > 1 else ops.channel_shuffle3d(parts[0], groups)
    ref_parts = [p.clone().requires_grad_() for p in parts64]
    ref = F.channel_shuffle(torch.cat(ref_parts, 1), groups)
    assert torch.equal(y.cpu(), ref)
    grad = randn(ref.shape, torch.float64, 9)
    for g, r in zip(torch.autograd.grad(y, parts, grad.to(DEVICE)), torch.autograd.grad(ref, ref_parts, grad)):
        assert torch.equal(g.cpu(), r)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.int8, torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
def test_shuffle_any_dtype(dtype, layout):
    x = (torch.arange(2 * 12 * 2 * 4 * 8).reshape(2, 12, 2, 4, 8) % 7).to(dtype)
    with vid3d.backend("cuda"):
        y = ops.channel_shuffle3d(make_layout(x.to(DEVICE), layout), 3)
    assert torch.equal(y.cpu(), F.channel_shuffle(x, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d", "strided"])
@pytest.mark.parametrize("stride,padding,dilation,relu,biases", [
    (1, 1, 1, True, True),
    ((2, 1, 2), (2, 0, 1), (2, 1, 1), False, True),
    ((1, 2, 1), (0, 2, 1), (1, 2, 1), True, False),
])
def test_conv2plus1d_fused_depthwise_pair(stride, padding, dilation, relu, biases, layout, dtype):
    x = make_layout(randn((2, 5, 6, 7, 6), torch.float64, 0, DEVICE), layout).to(dtype).requires_grad_()
    params = [randn((5, 1, 1, 3, 3), torch.float64, 1, DEVICE), randn((5, 1, 3, 1, 1), torch.float64, 2, DEVICE)]
    if biases:
        params += [randn((5,), torch.float64, 3, DEVICE), randn((5,), torch.float64, 4, DEVICE)]
    params = [p.to(dtype).requires_grad_() for p in params]
    args = dict(stride=stride, padding=padding, dilation=dilation, mid_activation="relu" if relu else None)
    with vid3d.backend("cuda"):
        y = ops.conv2plus1d(x, *params, **args)
    x64, params64 = x.detach().double().requires_grad_(), [p.detach().double().requires_grad_() for p in params]
    with vid3d.backend("torch"):
        ref = ops.conv2plus1d(x64, *params64, **args)
    assert_close(y.cpu(), ref.cpu(), dtype, "output")
    grad = randn(ref.shape, torch.float64, 5, DEVICE)
    for g, r in zip(torch.autograd.grad(y, [x, *params], grad.to(dtype)),
                    torch.autograd.grad(ref, [x64, *params64], grad)):
        assert_close(g.cpu(), r.cpu(), dtype, "gradient")


def test_conv2plus1d_native_fused_kernel_directly():
    x = randn((2, 6, 5, 9, 8), torch.float64, 0, DEVICE)
    ws, wt = randn((6, 1, 1, 3, 3), torch.float64, 1, DEVICE), randn((6, 1, 3, 1, 1), torch.float64, 2, DEVICE)
    bs, bt = randn((6,), torch.float64, 3, DEVICE), randn((6,), torch.float64, 4, DEVICE)
    mid = F.relu(F.conv3d(x, ws, bs, (1, 2, 2), (0, 1, 1), 1, 6))
    ref = F.conv3d(mid, wt, bt, (2, 1, 1), (1, 0, 0), 1, 6)
    out = torch.empty_like(ref)
    torch.ops.vid3d_native.conv2plus1d_depthwise_forward(x, ws, wt, bs, bt, [2, 2, 2], [1, 1, 1], [1, 1, 1], "relu", out)
    assert_close(out.cpu(), ref.cpu(), torch.float64)


def test_opcheck():
    x = randn((1, 4, 3, 4, 4), torch.float64, 0, DEVICE).requires_grad_()
    w = randn((4, 1, 3, 3, 3), torch.float64, 1, DEVICE).requires_grad_()
    three = [1, 1, 1]
    torch.library.opcheck(torch.ops.vid3d.depthwise_conv3d, (x, w, None, three, three, three, None, "cuda"))
    torch.library.opcheck(torch.ops.vid3d.depthwise_conv3d, (x, w, None, three, three, three, "relu6", "cuda"))
    torch.library.opcheck(torch.ops.vid3d.cat_shuffle3d, ([x, x], 2, "cuda"))


def test_torch_compile_fullgraph():
    w = randn((4, 1, 3, 3, 3), torch.float32, 1, DEVICE).requires_grad_()

    def block(x):
        return ops.channel_shuffle3d(ops.depthwise_conv3d(x, w, None, 1, 1), 2)

    x = randn((1, 4, 3, 4, 4), torch.float32, 0, DEVICE)
    with vid3d.backend("cuda"):
        eager = block(x)
        compiled = torch.compile(block, fullgraph=True)(x)
    assert_close(compiled, eager, torch.float32)


def test_cpu_tensors_are_refused():
    with vid3d.backend("cuda"), pytest.raises(RuntimeError, match="cuda"):
        ops.depthwise_conv3d(torch.randn(1, 2, 3, 3, 3), torch.randn(2, 1, 3, 3, 3), None, 1, 1)


def test_auto_does_not_pick_the_untimed_cuda_kernels():
    from vid3d.ops._kernels import AUTO_ORDER

    assert "cuda" not in AUTO_ORDER["cuda"]
