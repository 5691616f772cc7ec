"""The ops against PyTorch computed in float64: forward and every gradient, over shapes, kernel
sizes, strides, paddings, dilations, layouts and dtypes; gradcheck, opcheck, torch.compile,
autocast and determinism."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import vid3d
from vid3d import ops

from _helpers import LAYOUTS, assert_close, check_depthwise, make_layout, randn

BACKENDS = ("cpu",)


@pytest.fixture(autouse=True)
def _native_cpu_backend():
    """These tests check vid3d's own kernels, which "auto" may pass over for PyTorch's."""
    with vid3d.backend("cpu"):
        yield

# (input shape, kernel, stride, padding, dilation)
DEPTHWISE_CASES = [
    ((2, 3, 5, 6, 7), (3, 3, 3), 1, 1, 1),
    ((1, 4, 4, 9, 10), (1, 3, 3), (1, 2, 2), (0, 1, 1), 1),
    ((2, 2, 6, 5, 4), (3, 1, 1), (2, 1, 1), (1, 0, 0), (2, 1, 1)),
    ((1, 3, 5, 7, 6), (5, 5, 5), 1, 2, 1),
    ((1, 2, 4, 6, 8), (2, 4, 3), (2, 3, 1), (1, 2, 0), (1, 2, 3)),
    ((2, 5, 1, 1, 1), (3, 3, 3), 1, 1, 1),
    ((1, 16, 3, 5, 5), (3, 3, 3), 2, 1, 1),
    ((1, 17, 3, 5, 5), (3, 3, 3), 1, 1, 1),
    ((2, 70, 2, 3, 4), (3, 3, 3), (1, 2, 1), 1, (1, 1, 2)),
    ((1, 8, 3, 12, 40), (3, 3, 3), 1, 1, 1),
    # Planar tiles of rows (kernels of three rows): 13 rows (the last tile overlaps), odd vector
    # counts per row, W dilation.
    ((1, 3, 3, 13, 19), (3, 3, 3), 1, 1, 1),
    ((2, 2, 2, 6, 33), (1, 3, 3), 1, (0, 1, 1), (1, 1, 2)),
    # Large planes: the channel-vectorized forward splits them into bands of rows.
    ((1, 16, 4, 120, 150), (3, 3, 3), 1, 1, 1),  # 4.6 MB in float32: streaming stores
    ((1, 16, 2, 121, 150), (3, 3, 3), (1, 2, 1), 1, (1, 2, 1)),
    # Small planes, read in place: 4x4 planes fill one AVX-512 vector exactly (planar layouts),
    # 2x8 ones with strides; channels-last small planes take channel vectors.
    ((2, 24, 3, 4, 4), (3, 3, 3), 1, 1, 1),
    ((1, 9, 4, 2, 8), (3, 3, 3), (2, 1, 2), 1, (1, 1, 1)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: f"{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_depthwise_conv3d_matches_pytorch(case, layout, dtype, backend):
    check_depthwise(case, layout, dtype, backend)


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
@pytest.mark.parametrize("case", DEPTHWISE_CASES[:4] + DEPTHWISE_CASES[7:9], ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_depthwise_conv3d_low_precision(case, layout, dtype):
    check_depthwise(case, layout, dtype, "cpu")


@pytest.mark.parametrize("case", DEPTHWISE_CASES[:3], ids=str)
def test_depthwise_conv3d_without_bias(case):
    check_depthwise(case, "ncdhw", torch.float64, "cpu", with_bias=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_depthwise_forward_streams_large_planar_outputs(dtype):
    """Outputs of 8 MB and more leave the planar forward through streaming stores, a vector per
    whole cache line of the output: odd plane widths put row ends inside vectors and plane starts
    off cache lines."""
    x = randn((1, 3, 16, 211, 213), dtype, 0)
    w = randn((3, 1, 3, 3, 3), dtype, 1)
    b = randn((3,), dtype, 2)
    with torch.no_grad():
        y = ops.depthwise_conv3d(x, w, b, 1, 1)
    assert y.nbytes >= 8 << 20
    assert_close(y, F.conv3d(x.double(), w.double(), b.double(), 1, 1, 1, 3), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("plane", [(14, 14), (7, 7), (4, 5), (13, 19), (6, 33)], ids=str)
def test_depthwise_forward_writes_only_its_output(plane, dtype):
    """Planes of dense rows are written in place, each row's last vector running into the next row:
    nothing may land past the output's last row, nor in the rows between its planes."""
    H, W = plane
    x = randn((2, 3, 3, H, W), dtype, 0)
    w = randn((3, 1, 3, 3, 3), dtype, 1)
    expected = F.conv3d(x.double(), w.double(), None, 1, 1, 1, 3)
    sentinel = 1234.5
    # A contiguous output at the start of a larger buffer, and one whose planes are 2 rows apart.
    buffer = torch.full((x.numel() + 64,), sentinel, dtype=dtype)
    planes_apart = torch.full((2, 3, 3, H + 2, W), sentinel, dtype=dtype)
    for out in (buffer[: x.numel()].view(x.shape), planes_apart[:, :, :, :H]):
        torch.ops.vid3d_native.depthwise_conv3d_forward(x, w, None, [1, 1, 1], [1, 1, 1], [1, 1, 1], out, None)
        assert_close(out, expected, dtype)
    assert (buffer[x.numel():] == sentinel).all()
    assert (planes_apart[:, :, :, H:] == sentinel).all()


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
def test_depthwise_conv3d_any_thread_count(layout):
    """The kernels share their items out to the threads in chunks claimed as each thread finishes
    the last: every item is computed once whatever the count, including more threads than items.
    The forward writes into a NaN-filled output, so an item left out fails."""
    x = make_layout(randn((5, 3, 4, 9, 10), torch.float32, 0), layout)  # 15 volumes of 4x9x10
    w = randn((3, 1, 3, 3, 3), torch.float32, 1)
    grad = make_layout(randn((5, 3, 4, 9, 10), torch.float32, 2), layout)
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    expected = F.conv3d(x64, w64, None, 1, 1, 1, 3)
    expected_grads = torch.autograd.grad(expected, [x64, w64], grad.double())
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3, 7, 32):
            torch.set_num_threads(count)
            out = torch.full_like(x, float("nan"))
            torch.ops.vid3d_native.depthwise_conv3d_forward(x, w, None, [1, 1, 1], [1, 1, 1], [1, 1, 1], out, None)
            assert_close(out, expected, torch.float32)
            xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
            grads = torch.autograd.grad(ops.depthwise_conv3d(xg, wg, None, 1, 1), [xg, wg], grad)
            for got, want in zip(grads, expected_grads):
                assert_close(got, want, torch.float32)
    finally:
        torch.set_num_threads(threads)


def test_depthwise_conv3d_only_some_gradients():
    x = randn((2, 4, 5, 6, 7), torch.float64, 0)
    w = randn((4, 1, 3, 3, 3), torch.float64, 1).requires_grad_()
    y = ops.depthwise_conv3d(x, w, None, 1, 1)
    (gw,) = torch.autograd.grad(y.sum(), [w])
    ref_w = w.detach().clone().requires_grad_()
    (ref,) = torch.autograd.grad(F.conv3d(x, ref_w, None, 1, 1, 1, 4).sum(), [ref_w])
    assert_close(gw, ref, torch.float64)


@pytest.mark.parametrize(
    "isa", ["generic", "avx2"], ids=lambda isa: f"VID3D_CPU_ISA={isa}"
)
def test_every_instruction_set_build(isa, tmp_path):
    """The kernels compiled for narrower instruction sets give the same answers."""
    script = textwrap.dedent(
        f"""
        import torch, vid3d, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        assert torch.ops.vid3d_native.cpu_isa() in ({isa!r}, "generic"), torch.ops.vid3d_native.cpu_isa()
        import test_ops
        from _helpers import check_depthwise
        for case in test_ops.DEPTHWISE_CASES:
            for layout in ("ncdhw", "channels_last_3d"):
                check_depthwise(case, layout, torch.float32, "cpu")
                check_depthwise(case, layout, torch.float64, "cpu")
        print("ok")
        """
    )
    env = dict(os.environ, VID3D_CPU_ISA=isa)
    # Run outside the source tree so that the installed vid3d (with its extension) is imported.
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


# ---------------------------------------------------------------- shuffles


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 4, 5), 3), ((1, 8, 2, 3, 3), 2), ((3, 12, 1, 2, 7), 4),
                                          ((1, 5, 2, 2, 2), 5), ((2, 4, 2, 3, 3), 1)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_channel_shuffle3d_matches_pytorch(shape, groups, layout, dtype):
    x64 = randn(shape, torch.float64, 0)
    x = make_layout(x64.to(dtype), layout).requires_grad_()
    y = ops.channel_shuffle3d(x, groups)
    ref = F.channel_shuffle(x64.to(dtype), groups)
    assert torch.equal(y, ref)
    grad = randn(shape, torch.float64, 1).to(dtype)
    (gx,) = torch.autograd.grad(y, [x], grad)
    x_ref = x64.to(dtype).requires_grad_()
    (g_ref,) = torch.autograd.grad(F.channel_shuffle(x_ref, groups), [x_ref], grad)
    assert torch.equal(gx, g_ref)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool, torch.complex128])
def test_channel_shuffle3d_any_dtype(dtype):
    x = (torch.arange(2 * 6 * 2 * 3 * 3).reshape(2, 6, 2, 3, 3) % 7).to(dtype)
    assert torch.equal(ops.channel_shuffle3d(x, 2), F.channel_shuffle(x, 2))


# channels_last_3d: a transpose per position, vectorized where groups or channels / groups is 1, 2,
# 3, 4 or 8 (with one input, along whichever side is), a plain loop for the other counts.
@pytest.mark.parametrize("groups", [1, 2, 3, 4, 6, 8, 12, 16, 24, 48])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int8, torch.bfloat16, torch.int64, torch.complex128])
def test_channel_shuffle3d_channels_last_matches_pytorch(groups, dtype):
    x = (torch.arange(3 * 48 * 2 * 3 * 5).reshape(3, 48, 2, 3, 5) % 251).to(dtype)
    x = make_layout(x, "channels_last_3d")
    # Dense positions; every other position along W; and a view strided along N, H and W.
    for view in (x, x[..., 1::2], x[::2, :, 1:, ::2, 1:]):
        assert torch.equal(ops.channel_shuffle3d(view, groups), F.channel_shuffle(view, groups))
        # The backward is the shuffle by 48 // groups.
        assert torch.equal(ops.channel_shuffle3d(view, 48 // groups), F.channel_shuffle(view, 48 // groups))


# The forward and, with a channels_last_3d gradient, the backward's transposes (its rows written
# to the parts), in elements of 2, 4 and 8 bytes.
@pytest.mark.parametrize("channels,groups,layouts", [
    ((16, 32), 3, None),  # each group inside one input: a transpose per position, vectorized
    ((24, 24), 2, None),
    ((24, 24), 4, None),
    ((24, 24), 8, None),
    ((48,), 1, None),
    ((48,), 4, None),
    ((48,), 6, None),  # 6 groups of 8: along the columns (one input)
    ((8, 8, 32), 6, None),  # a plain loop
    ((24, 24), 24, None),
    ((20, 28), 2, None),  # a group across two inputs: copied channel by channel
    ((16, 32), 3, ("channels_last_3d", "ncdhw")),  # mixed layouts: the same
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cat_shuffle3d_channels_last_matches_pytorch(channels, groups, layouts, dtype):
    layouts = layouts or ("channels_last_3d",) * len(channels)
    parts64 = [randn((2, c, 2, 3, 5), torch.float64, i) for i, c in enumerate(channels)]
    parts = [make_layout(p.to(dtype), layout).requires_grad_() for p, layout in zip(parts64, layouts)]
    y = ops.cat_shuffle3d(parts, groups)
    ref = F.channel_shuffle(torch.cat([p.to(dtype) for p in parts64], 1), groups)
    assert torch.equal(y, ref)
    grad = make_layout(randn(ref.shape, torch.float64, 9).to(dtype), "channels_last_3d")
    expected = torch.split(F.channel_shuffle(grad, sum(channels) // groups), channels, 1)
    for g, part in zip(torch.autograd.grad(y, parts, grad), expected):
        assert torch.equal(g, part)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("channels,groups", [((2, 4), 3), ((3, 3, 6), 4), ((5,), 5), ((1, 1), 2), ((8, 8), 2)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cat_shuffle3d_matches_pytorch(channels, groups, layout, dtype):
    parts64 = [randn((2, c, 3, 4, 5), torch.float64, i) for i, c in enumerate(channels)]
    parts = [make_layout(p.to(dtype), layout).requires_grad_() for p in parts64]
    y = ops.cat_shuffle3d(parts, groups)
    ref = F.channel_shuffle(torch.cat([p.to(dtype) for p in parts64], 1), groups)
    assert torch.equal(y, ref)
    grad = randn(ref.shape, torch.float64, 9).to(dtype)
    grads = torch.autograd.grad(y, parts, grad)
    ref_parts = [p.to(dtype).requires_grad_() for p in parts64]
    ref_grads = torch.autograd.grad(F.channel_shuffle(torch.cat(ref_parts, 1), groups), ref_parts, grad)
    for g, r in zip(grads, ref_grads):
        assert torch.equal(g, r)


# ---------------------------------------------------------------- (2+1)D


def _conv2plus1d_weights(c_in, c_mid, c_out, g_s, g_t, kh, kt, dtype):
    return (
        randn((c_mid, c_in // g_s, 1, kh, kh), torch.float64, 11).to(dtype),
        randn((c_out, c_mid // g_t, kt, 1, 1), torch.float64, 12).to(dtype),
        randn((c_mid,), torch.float64, 13).to(dtype),
        randn((c_out,), torch.float64, 14).to(dtype),
    )


CONV2PLUS1D_CASES = [
    # c_in, c_mid, c_out, spatial groups, temporal groups, kh, kt, stride, padding, dilation
    (4, 4, 4, 4, 4, 3, 3, 1, 1, 1),  # depthwise, depthwise
    (4, 6, 5, 1, 1, 3, 3, (2, 1, 1), (1, 1, 1), 1),  # dense, dense
    (4, 8, 8, 2, 8, 3, 3, (1, 2, 2), (1, 0, 1), (2, 1, 1)),  # grouped, depthwise
    (6, 6, 3, 6, 3, 5, 2, (2, 1, 2), (0, 2, 2), (1, 1, 1)),  # depthwise, grouped
]


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d", "strided"])
@pytest.mark.parametrize("case", CONV2PLUS1D_CASES, ids=str)
@pytest.mark.parametrize("mid_activation", [None, "relu"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_conv2plus1d_matches_pytorch(case, mid_activation, layout, dtype):
    c_in, c_mid, c_out, g_s, g_t, kh, kt, stride, padding, dilation = case
    x64 = randn((2, c_in, 5, 7, 6), torch.float64, 10)
    params64 = _conv2plus1d_weights(c_in, c_mid, c_out, g_s, g_t, kh, kt, torch.float64)
    leaves64 = [t.clone().requires_grad_() for t in (x64, *params64)]
    with vid3d.backend("torch"):
        ref = ops.conv2plus1d(*leaves64, stride, padding, dilation, mid_activation)
    grad = randn(ref.shape, torch.float64, 15)
    ref_grads = torch.autograd.grad(ref, leaves64, grad)

    leaves = [make_layout(x64.to(dtype), layout).requires_grad_()] + [p.to(dtype).requires_grad_() for p in params64]
    with vid3d.backend("cpu"):
        y = ops.conv2plus1d(*leaves, stride, padding, dilation, mid_activation)
    assert_close(y, ref, dtype, "output")
    for i, (g, r) in enumerate(zip(torch.autograd.grad(y, leaves, grad.to(dtype)), ref_grads)):
        assert_close(g, r, dtype, f"gradient {i}")


def test_conv2plus1d_reference_is_two_convs():
    """The "torch" backend itself against two explicit F.conv3d calls."""
    x = randn((1, 3, 4, 5, 5), torch.float64, 0)
    ws, wt, bs, bt = _conv2plus1d_weights(3, 6, 4, 3, 2, 3, 3, torch.float64)
    with vid3d.backend("torch"):
        y = ops.conv2plus1d(x, ws, wt, bs, bt, (2, 1, 1), (1, 1, 1), 1, "relu")
    mid = F.relu(F.conv3d(x, ws, bs, (1, 1, 1), (0, 1, 1), 1, 3))
    assert torch.equal(y, F.conv3d(mid, wt, bt, (2, 1, 1), (1, 0, 0), 1, 2))


# ---------------------------------------------------------------- op contract


def _small_args():
    x = randn((2, 4, 3, 4, 5), torch.float64, 0).requires_grad_()
    w = randn((4, 1, 3, 3, 3), torch.float64, 1).requires_grad_()
    b = randn((4,), torch.float64, 2).requires_grad_()
    y = randn((2, 2, 3, 4, 5), torch.float64, 3).requires_grad_()
    ws = randn((4, 1, 1, 3, 3), torch.float64, 4).requires_grad_()
    wt = randn((6, 2, 3, 1, 1), torch.float64, 5).requires_grad_()
    bt = randn((6,), torch.float64, 6).requires_grad_()
    return x, w, b, y, ws, wt, bt


def test_gradcheck():
    x, w, b, y, ws, wt, bt = _small_args()
    with vid3d.backend("cpu"):
        assert torch.autograd.gradcheck(lambda x, w, b: ops.depthwise_conv3d(x, w, b, (1, 2, 1), 1, (1, 1, 2)),
                                        (x, w, b))
        assert torch.autograd.gradcheck(lambda x: ops.channel_shuffle3d(x, 2), (x,))
        assert torch.autograd.gradcheck(lambda x, y: ops.cat_shuffle3d([x, y], 3), (x, y))
        assert torch.autograd.gradcheck(
            lambda *a: ops.conv2plus1d(*a, stride=(2, 1, 1), padding=1, mid_activation="relu"), (x, ws, wt, b, bt)
        )


def test_opcheck():
    x, w, b, y, ws, wt, bt = _small_args()
    three = [1, 1, 1]
    cases = [
        (torch.ops.vid3d.depthwise_conv3d, (x, w, b, three, three, three, None, "cpu")),
        (torch.ops.vid3d.depthwise_conv3d, (x, w, b, three, three, three, "relu6", "cpu")),
        (torch.ops.vid3d.depthwise_conv3d, (x.detach().contiguous(memory_format=torch.channels_last_3d), w, None,
                                            [1, 2, 1], three, [2, 1, 1], "relu", "cpu")),
        (torch.ops.vid3d.channel_shuffle3d, (x, 2, "cpu")),
        (torch.ops.vid3d.cat_shuffle3d, ([x, y], 3, "cpu")),
        (torch.ops.vid3d.conv2plus1d, (x, ws, wt, b, bt, three, three, three, "relu", "cpu")),
        (torch.ops.vid3d.conv2plus1d, (x, ws, w[:, :, :, :1, :1], None, None, [2, 1, 1], three, three, None, "cpu")),
        # channels_last_3d input with a single middle channel: the output still follows the input.
        (torch.ops.vid3d.conv2plus1d, (x.detach().contiguous(memory_format=torch.channels_last_3d),
                                       randn((1, 4, 1, 3, 3), torch.float64, 8),
                                       randn((3, 1, 3, 1, 1), torch.float64, 7), None, None, three, three, three,
                                       None, "cpu")),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = torch.nn.Parameter(torch.randn(4, 1, 3, 3, 3))
            self.ws = torch.nn.Parameter(torch.randn(4, 1, 1, 3, 3))
            self.wt = torch.nn.Parameter(torch.randn(4, 1, 3, 1, 1))

        def forward(self, x):
            y = ops.channel_shuffle3d(ops.depthwise_conv3d(x, self.dw, None, 1, 1), 2)
            y = ops.cat_shuffle3d([y, 2 * y], 2)[:, :4]
            return ops.conv2plus1d(y, self.ws, self.wt, padding=1, mid_activation="relu")

    torch.manual_seed(0)
    block, x = Block(), torch.randn(2, 4, 5, 6, 7)
    compiled = torch.compile(block, fullgraph=True)
    eager_out = block(x)
    eager_grads = torch.autograd.grad(eager_out.sum(), list(block.parameters()))
    out = compiled(x)
    grads = torch.autograd.grad(out.sum(), list(block.parameters()))
    assert_close(out, eager_out, torch.float32, "compiled output")
    for g, r in zip(grads, eager_grads):
        assert_close(g, r, torch.float32, "compiled gradient")


@pytest.mark.parametrize("activation,reference", [("relu", F.relu), ("relu6", F.relu6)])
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
def test_activation_keyword(activation, reference, layout):
    x = make_layout(3 * randn((2, 4, 3, 5, 5), torch.float64, 0), layout).requires_grad_()
    w = randn((4, 1, 3, 3, 3), torch.float64, 1).requires_grad_()
    b = randn((4,), torch.float64, 2).requires_grad_()
    y = ops.depthwise_conv3d(x, w, b, 1, 1, activation=activation)
    ref = reference(F.conv3d(x, w, b, 1, 1, 1, 4))
    assert_close(y, ref, torch.float64)
    grad = randn(ref.shape, torch.float64, 3)
    for g, r in zip(torch.autograd.grad(y, [x, w, b], grad), torch.autograd.grad(ref, [x, w, b], grad)):
        assert_close(g, r, torch.float64)
    with pytest.raises(ValueError, match="activation"):
        ops.depthwise_conv3d(x, w, b, 1, 1, activation="gelu")


def test_padding_strings_and_integer_like_arguments():
    import numpy as np

    x = randn((1, 3, 4, 5, 6), torch.float64, 0)
    w = randn((3, 1, 3, 1, 5), torch.float64, 1)
    for padding in ("same", "valid"):
        expected = F.conv3d(x, w, None, 1, padding, 1, 3)
        assert_close(ops.depthwise_conv3d(x, w, None, 1, padding), expected, torch.float64, padding)
    got = ops.depthwise_conv3d(x, w, None, np.int64(1), (torch.tensor(1), 0, np.int32(2)))
    assert_close(got, F.conv3d(x, w, None, 1, (1, 0, 2), 1, 3), torch.float64)
    ws, wt = randn((3, 1, 1, 3, 3), torch.float64, 2), randn((3, 1, 3, 1, 1), torch.float64, 3)
    with vid3d.backend("torch"):
        ref = ops.conv2plus1d(x, ws, wt, padding=1)
    assert_close(ops.conv2plus1d(x, ws, wt, padding="same"), ref, torch.float64)
    with pytest.raises(ValueError, match="same.*stride"):
        ops.depthwise_conv3d(x, w, None, 2, "same")
    with pytest.raises(ValueError, match="uneven"):
        ops.depthwise_conv3d(x, randn((3, 1, 2, 2, 2), torch.float64, 4), None, 1, "same")


def test_double_backward_raises_clearly():
    x = randn((1, 2, 3, 4, 4), torch.float64, 0).requires_grad_()
    w = randn((2, 1, 3, 3, 3), torch.float64, 1).requires_grad_()
    (gx,) = torch.autograd.grad(ops.depthwise_conv3d(x, w, None, 1, 1).sum(), [x], create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gx.sum().backward()


def test_bias_gradient_of_a_large_volume_is_accurate():
    """The reduction over 400k elements per channel stays within the float32 tolerance."""
    x = randn((1, 4, 32, 112, 112), torch.float32, 0)
    w = randn((4, 1, 3, 3, 3), torch.float32, 1)
    b = torch.zeros(4, requires_grad=True)
    grad = randn((1, 4, 32, 112, 112), torch.float64, 2)
    (gb,) = torch.autograd.grad(ops.depthwise_conv3d(x, w, b, 1, 1), [b], grad.float())
    assert_close(gb, grad.sum((0, 2, 3, 4)), torch.float32)


def test_autocast_runs_like_conv3d():
    x = torch.randn(2, 4, 3, 5, 5)
    conv = torch.nn.Conv3d(4, 4, 3, padding=1, groups=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = conv(x)
        y = ops.depthwise_conv3d(x, conv.weight, conv.bias, 1, 1)
        y2 = ops.conv2plus1d(x, conv.weight[:, :, :1], conv.weight[:, :, :, :1, :1], padding=1)
    assert y.dtype == ref.dtype == torch.bfloat16
    assert y2.dtype == torch.bfloat16
    assert_close(y, ref.float(), torch.bfloat16)
    (gw,) = torch.autograd.grad(y.float().sum(), [conv.weight])
    assert gw.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float64 is left alone, as autocast does
        assert ops.depthwise_conv3d(x.double(), conv.weight.double(), None, 1, 1).dtype == torch.float64


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
def test_backward_is_deterministic_across_thread_counts(layout):
    x = make_layout(torch.randn(3, 16, 6, 9, 9), layout).requires_grad_()
    w = torch.randn(16, 1, 3, 3, 3, requires_grad=True)
    grad = torch.randn(3, 16, 6, 9, 9)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, threads, 1):
            torch.set_num_threads(n)
            results.append(torch.autograd.grad(ops.depthwise_conv3d(x, w, None, 1, 1), [x, w], grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


# ---------------------------------------------------------------- backend selection


def test_backend_setting_and_threads():
    import threading

    assert vid3d.get_backend() == "cpu"  # the fixture's override
    seen = {}
    with vid3d.backend("torch"):
        assert vid3d.get_backend() == "torch"
        with vid3d.backend("auto"):
            assert vid3d.get_backend() == "auto"
        assert vid3d.get_backend() == "torch"
        thread = threading.Thread(target=lambda: seen.setdefault("other", vid3d.get_backend()))
        thread.start()
        thread.join()
    assert seen["other"] == "auto"  # an override stays in its thread; the process default is "auto"
    vid3d.set_backend("torch")
    try:
        thread = threading.Thread(target=lambda: seen.setdefault("after", vid3d.get_backend()))
        thread.start()
        thread.join()
        assert seen["after"] == "torch"
    finally:
        vid3d.set_backend("auto")


@pytest.fixture
def kernel_calls(monkeypatch) -> list:
    """The backends whose kernels the ops look up during the test, in order (empty: PyTorch ran)."""
    calls = []
    real = vid3d.ops._kernels.kernels
    monkeypatch.setattr(vid3d.ops._custom_ops, "kernels", lambda name: calls.append(name) or real(name))
    return calls


@pytest.mark.parametrize(
    "layout,plane,requires_grad,expected",
    [("ncdhw", 10, False, "cpu"), ("ncdhw", 10, True, "cpu"), ("ncdhw", 4, False, "cpu-with-avx2"),
     ("channels_last_3d", 10, False, "cpu"), ("channels_last_3d", 4, False, "torch"),
     ("channels_last_3d", 4, True, "cpu"), ("long-ncdhw", 4, False, "torch"), ("float64-ncdhw", 4, False, "torch")],
)
def test_auto_follows_the_measured_cpu_table(kernel_calls, layout, plane, requires_grad, expected):
    # Small planes in NCDHW: vid3d's transposed forward takes float32 volumes of up to 512 positions.
    depth = 40 if layout == "long-ncdhw" else 3
    dtype = torch.float64 if layout == "float64-ncdhw" else torch.float32
    x = make_layout(torch.randn(1, 8, depth, plane, plane, dtype=dtype), layout.split("-")[-1])
    w = torch.randn(8, 1, 3, 3, 3, dtype=dtype, requires_grad=requires_grad)
    if expected == "cpu-with-avx2":
        expected = "cpu" if vid3d.ops._kernels.cpu_vector_isa() else "torch"
    with vid3d.backend("auto"):
        ops.depthwise_conv3d(x, w, None, 1, 1)
        ops.channel_shuffle3d(x, 2)  # too small to repay the call: auto leaves it to PyTorch
    assert kernel_calls == ([] if expected == "torch" else ["cpu"])


@pytest.mark.parametrize("shape,layout,groups,parts,expected", [
    ((2, 8, 8, 64, 64), "ncdhw", 2, 2, "cpu"),
    ((2, 32, 4, 8, 8), "ncdhw", 2, 2, "torch"),  # under a million elements
    ((2, 8, 8, 64, 64), "channels_last_3d", 2, 2, "cpu"),
    ((2, 32, 2, 8, 8), "channels_last_3d", 2, 2, "cpu"),  # 16,384 elements: vid3d's transpose from here
    ((1, 32, 2, 8, 8), "channels_last_3d", 2, 2, "torch"),  # 8,192
    ((2, 48, 4, 16, 16), "channels_last_3d", 6, 2, "torch"),  # 6 groups of 16: a plain loop
    ((2, 48, 4, 16, 16), "channels_last_3d", 2, 1, "torch"),  # one tensor: a channel shuffle
    ((2, 8, 8, 64, 64), "mixed", 2, 2, "torch"),
])
def test_auto_cat_shuffle_table(kernel_calls, shape, layout, groups, parts, expected):
    layouts = ("channels_last_3d", "ncdhw") if layout == "mixed" else (layout,) * parts
    tensors = [make_layout(torch.randn(shape), part_layout) for part_layout in layouts]
    with vid3d.backend("auto"):
        ops.cat_shuffle3d(tensors, groups)
    assert kernel_calls == ([] if expected == "torch" else ["cpu"])


def test_auto_cat_shuffle_follows_the_output_layout(kernel_calls):
    """The output takes the first tensor's layout: after a one-channel first part (NCDHW, as a
    contiguous one-channel tensor is) it is NCDHW, which vid3d fills channel by channel, so "auto"
    leaves the cat + shuffle to PyTorch even though every part's channels are unit-strided."""
    parts = [torch.randn(2, 1, 16, 64, 64), make_layout(torch.randn(2, 7, 16, 64, 64), "channels_last_3d")]
    with vid3d.backend("auto"):
        y = ops.cat_shuffle3d(parts, 8)
    assert kernel_calls == [] and torch.equal(y, F.channel_shuffle(torch.cat(parts, 1), 8))


@pytest.mark.parametrize("shape,layout,groups,expected", [
    ((2, 48, 8, 64, 64), "ncdhw", 4, "torch"),  # PyTorch's is as fast
    ((2, 48, 8, 64, 64), "channels_last_3d", 3, "cpu"),
    ((2, 48, 8, 64, 64), "channels_last_3d", 16, "cpu"),  # 48 // 16 = 3 channels a group
    ((2, 48, 4, 16, 16), "channels_last_3d", 3, "torch"),  # under a million elements
    ((2, 60, 8, 64, 64), "channels_last_3d", 6, "torch"),  # 6 groups of 10: a plain loop
    ((2, 48, 2, 8, 8), "channels_last_3d", 3, "torch"),  # too small
])
def test_auto_channel_shuffle_table(kernel_calls, shape, layout, groups, expected):
    with vid3d.backend("auto"):
        ops.channel_shuffle3d(make_layout(torch.randn(shape), layout), groups)
    assert kernel_calls == ([] if expected == "torch" else ["cpu"])


def test_cli_info(capsys):
    from vid3d.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "cpu     usable on cpu" in out
