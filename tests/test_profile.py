"""vid3d.profile: the Efficient-3DCNNs paper's Table 8 and the counting rules."""

from __future__ import annotations

import pytest
import torch

from _helpers import one_intra_op_thread
from torch import nn

import vid3d
from vid3d import models
from vid3d.profile import TABLE_8

CLIP = (3, 16, 112, 112)

# The table's parameter counts for these three ResNets differ from the reference code's by
# 0.02-0.12M while their MFLOPs match to 0.01%; see the README. Their params are checked
# against the reference code's count (the sum of the layer shapes) instead.
# ResNet-18 by hand: stem 3*64*7^3 + 128, stages 442,880 + 1,549,312 + 6,195,200 + 24,776,704
# (3x3x3 convs and BN), fc 512*600 + 600: 33,337,880.
RESNET_PARAMS_FROM_CODE = {"efficient_resnet18": 33_337_880, "efficient_resnet50": 44_651_800,
                           "efficient_resnet101": 83_697_944}


one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)


@pytest.mark.parametrize("name,kwargs,mflops,mparams", TABLE_8,
                         ids=[n + "".join(f"-{v}" for v in k.values()) for n, k, _, _ in TABLE_8])
# Every row of Table 8: MFLOPs within 2%, params within 0.01M.
def test_table_8(name, kwargs, mflops, mparams):
    result = vid3d.profile(models.create(name, num_classes=600, **kwargs), CLIP)
    assert abs(result["flops"] / 1e6 - mflops) <= 0.02 * mflops
    if name in RESNET_PARAMS_FROM_CODE:
        assert result["params"] == RESNET_PARAMS_FROM_CODE[name]
    else:
        assert abs(result["params"] / 1e6 - mparams) <= 0.01


def test_counting_rules():
    model = nn.Sequential(
        nn.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1),       # out 4x4x2x2 = 64 elems, 2*27+1 each
        nn.BatchNorm3d(4),                                      # 2 per element: 128
        nn.ReLU(),                                              # 64
        nn.MaxPool3d(3, 1, 1),                                  # int kernel: (3-1) per output: 128
        nn.MaxPool3d((1, 2, 2), 1, 0),                          # (4-1) * 4*4*1*1 = 48
        nn.AvgPool3d((2, 1, 1), 1),                             # 2 * 4*3*1*1 = 24
        nn.Flatten(),
        nn.Linear(12, 5),                                       # (2*12-1) * 5 = 115
    )
    result = vid3d.profile(model, (2, 4, 4, 4))
    assert result["flops"] == 64 * 55 + 128 + 64 + 128 + 48 + 24 + 115
    assert result["params"] == sum(p.numel() for p in model.parameters())


def test_conv_look_alikes_count_as_convolutions():
    class DepthwiseLookAlike(nn.Module):
        """Mirrors nn.Conv3d's attributes without subclassing it, as a drop-in module may."""

        def __init__(self, channels):
            super().__init__()
            self.in_channels = self.out_channels = self.groups = channels
            self.kernel_size, self.stride, self.padding = (3, 3, 3), (1, 1, 1), (1, 1, 1)
            self.weight = nn.Parameter(torch.randn(channels, 1, 3, 3, 3))
            self.bias = None

        def forward(self, x):
            return torch.nn.functional.conv3d(x, self.weight, None, self.stride, self.padding, groups=self.groups)

    reference = nn.Conv3d(4, 4, 3, padding=1, groups=4, bias=False)
    assert vid3d.profile(DepthwiseLookAlike(4), (4, 2, 5, 5)) == vid3d.profile(reference, (4, 2, 5, 5))
    assert vid3d.profile(reference, (4, 2, 5, 5))["flops"] == 4 * 2 * 5 * 5 * 27


def test_functional_ops_and_containers_count_nothing():
    class Functional(nn.Module):
        def forward(self, x):
            return torch.relu(x).mean((2, 3, 4))

    assert vid3d.profile(Functional(), (3, 4, 8, 8)) == {"flops": 0, "params": 0}


def test_profile_restores_training_mode_and_removes_hooks():
    model = models.create("mobilenet", width_mult=0.5, num_classes=10)
    model.train()
    first = vid3d.profile(model, (3, 16, 32, 32))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert vid3d.profile(model, (3, 16, 32, 32)) == first


def test_profile_checks_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        vid3d.profile("mobilenet", CLIP)
    with pytest.raises(ValueError, match="input_size"):
        vid3d.profile(nn.ReLU(), (3, 0, 4))


def test_cli_profile_prints_a_table(capsys):
    from vid3d.cli import main

    assert main(["profile", "mobilenet:width_mult=0.5", "shufflenet:groups=3,width_mult=0.5",
                 "--input", "3x16x112x112", "--num-classes", "600"]) == 0
    out = capsys.readouterr().out
    assert "MFLOPs" in out and "width_mult=0.5" in out
    assert "97.9" in out and "77.8" in out  # Table 8: 98 and 78 MFLOPs


def test_cli_rejects_bad_model_specs(capsys):
    from vid3d.cli import main

    with pytest.raises(SystemExit):
        main(["profile", "mobilenet:width_mult"])
    with pytest.raises(SystemExit):
        main(["profile", "mobilenet", "--input", "3x16"])
