"""vid3d.convert on models built from plain torch.nn with the module structure of torchvision's
R(2+1)D, pytorchvideo's X3D/CSN and a ShuffleNet: what is swapped and what is not, the same
function (outputs and gradients, train and eval mode) and the same state_dict afterwards."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import vid3d
from vid3d.nn import ChannelShuffle3d, Conv2Plus1d, DepthwiseConv3d

from _helpers import assert_same_function, randn, randomize_batch_norms

F64 = torch.float64


# ---------------------------------------------------------------- torchvision's video ResNet structure


class TorchvisionConv2Plus1D(nn.Sequential):
    """torchvision.models.video.resnet.Conv2Plus1D: an nn.Sequential subclass without its own forward."""

    def __init__(self, in_planes, out_planes, midplanes, stride=1, padding=1):
        super().__init__(
            nn.Conv3d(in_planes, midplanes, (1, 3, 3), (1, stride, stride), (0, padding, padding), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, (3, 1, 1), (stride, 1, 1), (padding, 0, 0), bias=False),
        )

    @staticmethod
    def get_downsample_stride(stride):
        return stride, stride, stride


class R2Plus1dStem(nn.Sequential):
    """(2+1)D stem followed by BatchNorm and ReLU: not a bare pair, so left as it is."""

    def __init__(self, width):
        super().__init__(
            nn.Conv3d(3, 6, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(6), nn.ReLU(inplace=True),
            nn.Conv3d(6, width, (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(width), nn.ReLU(inplace=True),
        )


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        midplanes = (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)
        self.conv1 = nn.Sequential(TorchvisionConv2Plus1D(inplanes, planes, midplanes, stride), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(TorchvisionConv2Plus1D(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv3d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm3d(planes))

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class TinyR2Plus1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = R2Plus1dStem(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 12, stride=2))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        return self.fc(self.avgpool(self.layer1(self.stem(x))).flatten(1))


# ---------------------------------------------------------------- pytorchvideo's X3D / CSN structure


class PyTorchVideoConv2plus1d(nn.Module):
    """pytorchvideo.layers.convolutions.Conv2plus1d: its own forward over named parts (not a Sequential)."""

    def __init__(self, conv_t, norm, activation, conv_xy):
        super().__init__()
        self.conv_t, self.norm, self.activation, self.conv_xy = conv_t, norm, activation, conv_xy

    def forward(self, x):
        x = self.conv_t(x)
        x = x if self.norm is None else self.norm(x)
        x = x if self.activation is None else self.activation(x)
        return self.conv_xy(x)


class ResNetBasicStem(nn.Module):
    def __init__(self, conv, norm, activation):
        super().__init__()
        self.conv, self.norm, self.activation = conv, norm, activation

    def forward(self, x):
        return self.activation(self.norm(self.conv(x)))


class BottleneckBlock(nn.Module):
    """conv_a 1x1x1, conv_b 3x3x3 depthwise (X3D, ir-CSN), conv_c 1x1x1, each with a norm."""

    def __init__(self, dim_in, dim_inner, dim_out, stride):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, 3, stride, 1, groups=dim_inner, bias=False)
        self.norm_b = nn.BatchNorm3d(dim_inner)
        self.act_b = nn.SiLU()
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x):
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, dim_in, dim_inner, dim_out, stride):
        super().__init__()
        self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, stride, bias=False) if stride != 1 else None
        self.branch2 = BottleneckBlock(dim_in, dim_inner, dim_out, stride)
        self.activation = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.branch1_conv is None else self.branch1_conv(x)
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    def __init__(self, *blocks):
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.res_blocks:
            x = block(x)
        return x


class TinyX3D(nn.Module):
    """blocks.0.conv.{conv_t, conv_xy} stem ((5, 1, 1) depthwise conv_xy), blocks.1.res_blocks.j.branch2.conv_b."""

    def __init__(self):
        super().__init__()
        stem_conv = PyTorchVideoConv2plus1d(
            conv_t=nn.Conv3d(3, 6, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False), norm=None, activation=None,
            conv_xy=nn.Conv3d(6, 6, (5, 1, 1), padding=(2, 0, 0), groups=6, bias=False),
        )
        self.blocks = nn.ModuleList([
            ResNetBasicStem(stem_conv, nn.BatchNorm3d(6), nn.ReLU()),
            ResStage(ResBlock(6, 12, 8, (1, 2, 2)), ResBlock(8, 12, 8, 1)),
        ])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x.mean((2, 3, 4))


# ---------------------------------------------------------------- layers that must be left alone


class CustomConv3d(nn.Conv3d):
    """A subclass may compute something else: convert must not swap it."""

    def forward(self, x):
        return super().forward(x) * 2


class ReversingShuffle(nn.ChannelShuffle):
    def forward(self, x):
        return super().forward(x).flip(1)


class MixedModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.shuffle_block = nn.Sequential(nn.Conv3d(4, 6, 1, groups=2), nn.ChannelShuffle(2),
                                           nn.Conv3d(6, 6, 3, padding=1, groups=6))
        self.multiplier = nn.Conv3d(6, 12, 3, padding=1, groups=6)  # a channel multiplier: not depthwise
        self.grouped = nn.Conv3d(12, 12, 3, padding=1, groups=4)
        self.custom = CustomConv3d(12, 12, 3, padding=1, groups=12)
        self.custom_shuffle = ReversingShuffle(3)
        self.hooked = nn.Conv3d(12, 12, 3, padding=1, groups=12)
        self.hooked.register_forward_hook(lambda module, inputs, output: output * 2)
        self.hooked_pair = nn.Sequential(nn.Conv3d(12, 12, (1, 3, 3), padding=(0, 1, 1), groups=12),
                                         nn.Conv3d(12, 12, (3, 1, 1), padding=(1, 0, 0)))
        self.hooked_pair[0].register_forward_hook(lambda module, inputs, output: output * 2)
        self.relu6_pair = nn.Sequential(nn.Conv3d(12, 12, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU6(),
                                        nn.Conv3d(12, 12, (3, 1, 1), padding=(1, 0, 0)))
        self.padded_pair = nn.Sequential(nn.Conv3d(12, 12, (1, 3, 3), padding=(0, 1, 1), padding_mode="reflect",
                                                   groups=12),
                                         nn.Conv3d(12, 12, (3, 1, 1), padding=(1, 0, 0), groups=12))

    def forward(self, x):
        x = self.grouped(self.multiplier(self.shuffle_block(x)))
        x = self.hooked_pair(self.hooked(self.custom_shuffle(self.custom(x))))
        return self.padded_pair(self.relu6_pair(x))


def _shapes(model):
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _types(model):
    return {name: type(module) for name, module in model.named_modules()}


def _check_conversion(model, x, expected_swaps):
    """Converts model; checks the swaps, the state_dict and the function (train and eval mode) against a copy."""
    randomize_batch_norms(model, 0)
    reference = copy.deepcopy(model)
    before = _types(model)
    converted = vid3d.convert(model)
    assert converted is model
    after = _types(model)
    swapped = {name: after[name] for name in before if after[name] is not before[name]}
    assert swapped == expected_swaps
    assert _shapes(model) == _shapes(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(model.state_dict(), strict=True)
    for training in (False, True):
        model.train(training)
        reference.train(training)
        assert_same_function(model, reference, x)


def test_torchvision_r2plus1d(vid3d_backend):
    """Each Conv2Plus1D pair becomes a Conv2Plus1d under the same keys; the stem (pair + BN + ReLU) stays."""
    pairs = ["layer1.0.conv1.0", "layer1.0.conv2.0", "layer1.1.conv1.0", "layer1.1.conv2.0"]
    _check_conversion(TinyR2Plus1d().double(), randn((2, 3, 4, 12, 12), F64, 1), dict.fromkeys(pairs, Conv2Plus1d))


def test_pytorchvideo_x3d(vid3d_backend):
    """X3D's (5, 1, 1) conv_xy and the 3x3x3 conv_b of each bottleneck become DepthwiseConv3d."""
    depthwise = ["blocks.0.conv.conv_xy", "blocks.1.res_blocks.0.branch2.conv_b",
                 "blocks.1.res_blocks.1.branch2.conv_b"]
    _check_conversion(TinyX3D().double(), randn((2, 3, 5, 8, 8), F64, 1), dict.fromkeys(depthwise, DepthwiseConv3d))


def test_only_layers_with_the_same_function_are_swapped(vid3d_backend):
    expected = {"shuffle_block.1": ChannelShuffle3d, "shuffle_block.2": DepthwiseConv3d,
                "padded_pair.0": DepthwiseConv3d, "padded_pair.1": DepthwiseConv3d}
    _check_conversion(MixedModel().double(), randn((1, 4, 3, 5, 5), F64, 1), expected)


def test_verbose_prints_a_table(capsys):
    vid3d.convert(TinyX3D(), verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "vid3d.convert: 3 module(s) swapped"
    assert lines[1].split() == ["name", "from", "to"]
    assert lines[2].split() == ["blocks.0.conv.conv_xy", "Conv3d", "DepthwiseConv3d"]
    assert lines[4].split() == ["blocks.1.res_blocks.1.branch2.conv_b", "Conv3d", "DepthwiseConv3d"]
    vid3d.convert(nn.Linear(2, 2), verbose=True)
    assert capsys.readouterr().out.splitlines()[0] == "vid3d.convert: 0 module(s) swapped"


def test_shared_modules_stay_shared():
    shared = nn.Conv3d(4, 4, 3, padding=1, groups=4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    vid3d.convert(model)
    assert isinstance(model[0], DepthwiseConv3d) and model[0] is model[2] and model[0].weight is shared.weight


def test_a_convertible_model_is_returned_converted():
    conv = nn.Conv3d(4, 4, 3, groups=4)
    converted = vid3d.convert(conv)
    assert isinstance(converted, DepthwiseConv3d) and converted.weight is conv.weight
    pair = vid3d.convert(TorchvisionConv2Plus1D(4, 4, 6))
    assert type(pair) is Conv2Plus1d and list(pair.state_dict()) == list(TorchvisionConv2Plus1D(4, 4, 6).state_dict())


def test_convert_rejects_a_non_module():
    with pytest.raises(TypeError, match="expects an nn.Module, got dict"):
        vid3d.convert({"conv": nn.Conv3d(2, 2, 1)})
