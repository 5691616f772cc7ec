"""vid3d.nn against the PyTorch layers they replace, in float64: outputs and every gradient,
state_dicts both ways, from_conv/from_sequential, which path runs, torch.compile. Each module
test runs on vid3d's C++ kernels ("cpu") and on the PyTorch reference ("torch")."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vid3d
from vid3d.nn import ChannelShuffle3d, Conv2Plus1d, DepthwiseConv3d

from _helpers import (
    assert_close, assert_same_function, conv2plus1d_pair, depthwise_pair, randn, randomize_batch_norms, spy_kernels,
)

F64 = torch.float64

# ---------------------------------------------------------------- DepthwiseConv3d

# Keyword arguments of nn.Conv3d(C, C, groups=C, ...).
DEPTHWISE_CASES = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), bias=False),
    dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), dilation=(1, 2, 1)),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=(2, 3, 4), padding="same"),  # uneven: padded outside the op
    dict(kernel_size=3, padding="valid"),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, padding=(1, 2, 1), padding_mode="circular", bias=False),
    dict(kernel_size=(3, 5, 3), padding=2, padding_mode="replicate", stride=2),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # nn.Conv3d's, for (2, 3, 4)
@pytest.mark.parametrize("kwargs", DEPTHWISE_CASES, ids=str)
def test_depthwise_conv3d_matches_conv3d(kwargs, vid3d_backend):
    module, reference = depthwise_pair(3, kwargs)
    assert_same_function(module, reference, randn((2, 3, 5, 6, 7), F64, 1))


@pytest.mark.parametrize("activation,layer", [("relu", nn.ReLU), ("relu6", nn.ReLU6)])
def test_depthwise_conv3d_activation(activation, layer, vid3d_backend):
    module, reference = depthwise_pair(4, dict(kernel_size=3, padding=1))
    module.activation = activation
    x = 4 * randn((2, 4, 3, 5, 5), F64, 1)  # large enough that ReLU6 clips
    assert_same_function(nn.Sequential(module), nn.Sequential(reference, layer()), x)
    assert f"activation={activation!r}" in repr(module)


def test_depthwise_conv3d_gradcheck():
    module, _ = depthwise_pair(2, dict(kernel_size=3, stride=(1, 2, 1), padding=1, dilation=(2, 1, 1)))
    x = randn((1, 2, 5, 4, 5), F64, 1).requires_grad_()
    weight, bias = (p.detach().clone().requires_grad_() for p in (module.weight, module.bias))
    with vid3d.backend("cpu"):
        assert torch.autograd.gradcheck(
            lambda x, w, b: torch.func.functional_call(module, {"weight": w, "bias": b}, (x,)), (x, weight, bias)
        )


def test_depthwise_conv3d_is_a_conv3d():
    torch.manual_seed(0)
    reference = nn.Conv3d(6, 6, (3, 1, 3), 2, 1, groups=6, bias=False)
    torch.manual_seed(0)
    module = DepthwiseConv3d(6, 6, (3, 1, 3), 2, 1, bias=False)  # groups defaults to the channel count
    assert isinstance(module, nn.Conv3d)
    assert torch.equal(module.weight, reference.weight)  # the same initialisation
    assert repr(module) == repr(reference).replace("Conv3d", "DepthwiseConv3d")
    module.reset_parameters()
    assert module.weight.shape == (6, 1, 3, 1, 3) and module.bias is None


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_loads_both_ways(bias):
    conv = nn.Conv3d(5, 5, 3, padding=1, groups=5, bias=bias)
    module = DepthwiseConv3d(5, 5, 3, padding=1, bias=bias, activation="relu")
    for source, target in ((conv, module), (module, conv)):
        state = {k: torch.randn_like(v) for k, v in source.state_dict().items()}
        source.load_state_dict(state)
        target.load_state_dict(source.state_dict(), strict=True)
        for key, value in target.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert list(module.state_dict()) == list(conv.state_dict())


def test_from_conv_shares_parameters(vid3d_backend):
    conv = nn.Conv3d(4, 4, 3, stride=(1, 2, 2), padding=1, groups=4, padding_mode="reflect", dtype=F64).eval()
    module = DepthwiseConv3d.from_conv(conv)
    assert module.weight is conv.weight and module.bias is conv.bias
    assert not module.training and module.padding_mode == "reflect" and module.weight.device.type == "cpu"
    assert_same_function(module, conv, randn((1, 4, 3, 6, 6), F64, 1))
    assert DepthwiseConv3d.from_conv(DepthwiseConv3d(4, 4, 1, activation="relu6")).activation == "relu6"


@pytest.mark.parametrize(
    "conv,exc,match",
    [
        (nn.Linear(2, 2), TypeError, "expects an nn.Conv3d, got Linear"),
        (nn.Conv3d(4, 8, 3, groups=4), ValueError, "out_channels=8, groups=4"),
        (nn.Conv3d(4, 4, 3, groups=2), ValueError, "groups=2"),
        (nn.LazyConv3d(4, 3, groups=4), ValueError, "lazy"),
    ],
    ids=["linear", "multiplier", "grouped", "lazy"],
)
def test_from_conv_rejects(conv, exc, match):
    with pytest.raises(exc, match=match):
        DepthwiseConv3d.from_conv(conv)


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((4, 8, 3), {}, "in_channels=4, out_channels=8"),
        ((4, 4, 3), dict(groups=1), "groups=1"),
        ((4, 4, 3), dict(activation="gelu"), "activation must be None, 'relu' or 'relu6', got 'gelu'"),
    ],
)
def test_depthwise_conv3d_rejects(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DepthwiseConv3d(*args, **kwargs)


def test_torch_compile_fullgraph():
    module = DepthwiseConv3d(4, 4, 3, padding=1, activation="relu")
    x = torch.randn(2, 4, 3, 5, 5)
    with vid3d.backend("cpu"):
        expected = module(x)
        expected_grads = torch.autograd.grad(expected.sum(), list(module.parameters()))
        compiled = torch.compile(module, fullgraph=True)
        out = compiled(x)
        grads = torch.autograd.grad(out.sum(), list(module.parameters()))
    assert_close(out, expected, torch.float32, "compiled output")
    for g, r in zip(grads, expected_grads):
        assert_close(g, r, torch.float32, "compiled gradient")


# ---------------------------------------------------------------- ChannelShuffle3d


@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 4, 5), 3), ((1, 8, 2, 3, 3), 4), ((2, 6, 4, 5), 2)])
def test_channel_shuffle3d_matches_channel_shuffle(shape, groups, vid3d_backend):
    """5-D input runs vid3d's op; other ranks are left to nn.ChannelShuffle."""
    module = ChannelShuffle3d(groups)
    assert isinstance(module, nn.ChannelShuffle) and repr(module) == f"ChannelShuffle3d(groups={groups})"
    assert_same_function(module, nn.ChannelShuffle(groups), randn(shape, F64, 1))


@pytest.mark.parametrize("groups,exc", [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_channel_shuffle3d_rejects(groups, exc):
    with pytest.raises(exc, match="groups"):
        ChannelShuffle3d(groups)


def test_modules_run_vid3d_kernels(monkeypatch):
    """On backend "cpu" every module calls vid3d's kernels; on "torch" none does."""
    calls = spy_kernels(monkeypatch)
    x = torch.randn(1, 4, 3, 5, 5)
    modules = [DepthwiseConv3d(4, 4, 3, padding=1), ChannelShuffle3d(2),
               Conv2Plus1d(4, 4, 3, padding=1, spatial_groups=4, temporal_groups=4)]
    for backend, expected in (("cpu", {"cpu"}), ("torch", set())):
        for module in modules:
            calls.clear()
            with vid3d.backend(backend):
                module(x)
            assert set(calls) == expected, (backend, module)


# ---------------------------------------------------------------- Conv2Plus1d

# in, out, kernel, stride, padding, dilation, and the other keyword arguments of Conv2Plus1d.
CONV2PLUS1D_CASES = [
    (4, 6, 3, 1, 1, 1, dict(mid_channels=5, bias=False, norm=True, mid_activation="relu")),  # torchvision's
    (4, 4, 3, (2, 1, 1), 1, 1, dict(spatial_groups=4, temporal_groups=4)),  # depthwise, depthwise
    (4, 8, (3, 5, 3), (1, 2, 2), (1, 2, 1), (2, 1, 1),
     dict(spatial_groups=2, temporal_groups=8, norm=True, bias=False)),  # bias: gradient 0 + noise
    (3, 6, (2, 3, 3), 1, (0, 1, 1), 1, dict(mid_channels=6, spatial_groups=3, temporal_groups=3,
                                             mid_activation="relu")),
    (4, 4, 3, 1, "same", 1, dict(norm=True, mid_activation="relu")),  # string padding: child by child
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", CONV2PLUS1D_CASES, ids=str)
def test_conv2plus1d_matches_two_convs(case, training, vid3d_backend, monkeypatch):
    module, reference = conv2plus1d_pair(case)
    module.train(training)
    reference.train(training)
    fused_calls = []
    fused_op = vid3d.ops.conv2plus1d
    monkeypatch.setattr(vid3d.ops, "conv2plus1d", lambda *a: fused_calls.append(1) or fused_op(*a))
    assert_same_function(module, reference, randn((2, case[0], 5, 7, 6), F64, 2))
    # Fused unless the padding is a string or a BatchNorm normalises with batch statistics.
    has_norm = case[-1].get("norm", False)
    assert bool(fused_calls) == (not isinstance(case[4], str) and not (training and has_norm))
    for name, buffer in reference.named_buffers():  # the same running statistics after training steps
        assert torch.equal(module.get_buffer(name), buffer), name


def test_conv2plus1d_state_dict_is_torchvisions():
    module = Conv2Plus1d(4, 6, 3, padding=1, mid_channels=5, bias=False, norm=True, mid_activation="relu")
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert shapes == {"0.weight": (5, 4, 1, 3, 3), "1.weight": (5,), "1.bias": (5,), "1.running_mean": (5,),
                      "1.running_var": (5,), "1.num_batches_tracked": (), "3.weight": (6, 5, 3, 1, 1)}
    assert module.spatial is module[0] and module.temporal is module[3]
    depthwise = Conv2Plus1d(4, 4, 3, spatial_groups=4, temporal_groups=4)
    assert isinstance(depthwise.spatial, DepthwiseConv3d) and isinstance(depthwise.temporal, DepthwiseConv3d)


def test_conv2plus1d_from_sequential_shares_children(vid3d_backend):
    sequential = nn.Sequential(nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1), groups=4, dtype=F64),
                               nn.BatchNorm3d(4, dtype=F64), nn.ReLU(),
                               nn.Conv3d(4, 6, (3, 1, 1), stride=(2, 1, 1), dtype=F64))
    randomize_batch_norms(sequential, 0).eval()
    module = Conv2Plus1d.from_sequential(sequential)
    assert isinstance(module.spatial, DepthwiseConv3d) and module.spatial.weight is sequential[0].weight
    assert module[1] is sequential[1] and module.temporal is sequential[3] and not module.training
    assert list(module.state_dict()) == list(sequential.state_dict())
    assert_same_function(module, sequential, randn((1, 4, 5, 6, 6), F64, 1))


@pytest.mark.parametrize(
    "sequential,exc,match",
    [
        (nn.Conv3d(4, 4, 3), TypeError, "expects an nn.Sequential"),
        (nn.Sequential(nn.Conv3d(4, 4, 3), nn.Conv3d(4, 4, (3, 1, 1))), ValueError, r"got \[Conv3d, Conv3d\]"),
        (nn.Sequential(nn.Conv3d(4, 4, (1, 3, 3)), nn.ReLU6(), nn.Conv3d(4, 4, (3, 1, 1))), ValueError, "ReLU6"),
        (nn.Sequential(nn.Conv3d(4, 4, (1, 3, 3), padding=(1, 1, 1)), nn.Conv3d(4, 4, (3, 1, 1))), ValueError,
         "Conv3d"),
    ],
    ids=["not-sequential", "3x3x3", "relu6", "temporal-padding-in-spatial-conv"],
)
def test_conv2plus1d_from_sequential_rejects(sequential, exc, match):
    with pytest.raises(exc, match=match):
        Conv2Plus1d.from_sequential(sequential)


def test_conv2plus1d_runs_hooked_children_one_by_one(vid3d_backend):
    """The fused op would skip a hook on a child: such a Conv2Plus1d runs its children, and none is made of them."""
    module = Conv2Plus1d(4, 4, 3, padding=1, spatial_groups=4, temporal_groups=4, dtype=F64)
    reference = nn.Sequential(*(nn.Conv3d(4, 4, k, padding=p, groups=4, dtype=F64)
                                for k, p in (((1, 3, 3), (0, 1, 1)), ((3, 1, 1), (1, 0, 0)))))
    reference.load_state_dict(module.state_dict())
    for layer in (module.spatial, reference[0]):
        layer.register_forward_hook(lambda layer, inputs, output: output.flip(2))
    assert_same_function(module, reference, randn((1, 4, 4, 5, 5), F64, 1))
    with pytest.raises(ValueError, match="no hooks"):
        Conv2Plus1d.from_sequential(reference)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(kernel_size=(3, 3)), TypeError, r"kernel_size must be an int or a sequence of 3 ints.*\(3, 3\)"),
        (dict(stride=1.5), TypeError, "stride must be"),
        (dict(mid_activation="relu6"), ValueError, "mid_activation must be None or 'relu', got 'relu6'"),
    ],
)
def test_conv2plus1d_rejects(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Conv2Plus1d(4, 4, **{"kernel_size": 3, **kwargs})
