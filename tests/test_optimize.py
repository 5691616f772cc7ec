"""vid3d.optimize: the same outputs (float64 and float32) with fewer ops run, BatchNorm folded and
ReLU/ReLU6 fused where (and only where) that is exact, a training-mode model refused, the
caller's model untouched, and the fallback for models torch.fx cannot trace."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import vid3d
from vid3d.nn import Conv2Plus1d

from _helpers import assert_close, randn, randomize_batch_norms


class CountOps(TorchDispatchMode):
    """Records the ops dispatched that run a kernel: aten and vid3d ops, not allocations."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not str(func).startswith(("aten.empty", "aten.empty_strided")):
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def ops_run(model, x) -> list[str]:
    with torch.no_grad(), CountOps() as counter:
        model(x)
    return counter.ops


class InvertedResidual(nn.Module):
    """MobileNetV2's block: pointwise, BN, ReLU6, depthwise, BN, ReLU6, pointwise, BN; residual."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv3d(channels, hidden, 1, bias=False), nn.BatchNorm3d(hidden), nn.ReLU6(inplace=True),
            nn.Conv3d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False), nn.BatchNorm3d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv3d(hidden, channels, 1, bias=False), nn.BatchNorm3d(channels),
        )

    def forward(self, x):
        return x + self.conv(x)


class FunctionalBlock(nn.Module):
    """MobileNetV1's block: modules called in forward with functional ReLUs (found by tracing)."""

    def __init__(self, channels, out):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, out, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(out)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class SampleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, 3, (1, 2, 2), 1, bias=False), nn.BatchNorm3d(8),
                                  nn.ReLU(inplace=True))
        self.block1 = InvertedResidual(8, 16)
        self.block2 = FunctionalBlock(8, 12)
        self.shuffle = nn.ChannelShuffle(3)
        self.pair = nn.Sequential(  # torchvision's Conv2Plus1D, then BN and ReLU
            nn.Sequential(nn.Conv3d(12, 10, (1, 3, 3), padding=(0, 1, 1), bias=False), nn.BatchNorm3d(10),
                          nn.ReLU(inplace=True), nn.Conv3d(10, 12, (3, 1, 1), padding=(1, 0, 0), bias=False)),
            nn.BatchNorm3d(12), nn.ReLU(inplace=True),
        )
        self.depthwise_pair = Conv2Plus1d(12, 12, 3, padding=1, spatial_groups=12, temporal_groups=12, norm=True,
                                          mid_activation="relu")
        self.head_norm = nn.BatchNorm3d(12)  # after an addition: nothing to fold it into

    def forward(self, x):
        x = self.shuffle(self.block2(self.block1(self.stem(x))))
        return self.head_norm(self.depthwise_pair(self.pair(x)) + x)


def sample_model(dtype=torch.float64):
    return randomize_batch_norms(SampleModel(), 0).to(dtype).eval()


def test_what_is_fused():
    optimized = vid3d.optimize(sample_model())
    types = {name: type(module) for name, module in optimized.named_modules()}
    identities = sorted(name for name, t in types.items() if t is nn.Identity)
    assert identities == [
        "block1.conv.1", "block1.conv.4", "block1.conv.5", "block1.conv.7", "block2.bn1", "block2.bn2",
        "depthwise_pair.1", "depthwise_pair.2", "pair.0.1", "pair.1", "stem.1",
    ]
    assert optimized.block1.conv[3].activation == "relu6"
    assert optimized.depthwise_pair.spatial.activation == "relu"  # then the fused (2+1)D op runs it
    assert optimized.block2.conv1.activation is None  # a functional ReLU stays where it is
    assert types["pair.0"] is Conv2Plus1d and types["head_norm"] is nn.BatchNorm3d
    assert types["block1.conv.2"] is nn.ReLU6  # after a dense conv: PyTorch's convolution has no activation


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_same_outputs(dtype, vid3d_backend):
    model = sample_model(dtype)
    x = randn((2, 3, 4, 10, 10), dtype, 1)
    with torch.no_grad():
        assert_close(vid3d.optimize(model)(x), model(x), dtype)


def test_fewer_ops_run(vid3d_backend):
    model = sample_model()
    x = randn((1, 3, 4, 10, 10), torch.float64, 1)
    before, after = ops_run(model, x), ops_run(vid3d.optimize(model), x)
    assert len(after) < len(before) - 8, (before, after)
    batch_norms = [sum("batch_norm" in op for op in ops) for ops in (before, after)]
    assert batch_norms == [9, 1]  # head_norm is left: it follows an addition


def test_refuses_a_training_mode_model():
    model = sample_model()
    model.block2.bn1.train()
    with pytest.raises(ValueError, match=r"1 module\(s\) are in training mode \(e.g. 'block2.bn1'\).*model.eval\(\)"):
        vid3d.optimize(model)


def test_leaves_the_model_untouched():
    model = sample_model()
    state = copy.deepcopy(model.state_dict())
    types = [type(module) for module in model.modules()]
    optimized = vid3d.optimize(model)
    assert optimized is not model and [type(module) for module in model.modules()] == types
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_without_convert_only_folds():
    optimized = vid3d.optimize(sample_model(), convert=False)
    assert type(optimized.block1.conv[3]) is nn.Conv3d and type(optimized.block1.conv[4]) is nn.Identity
    assert type(optimized.pair[0]) is nn.Sequential and type(optimized.pair[0][1]) is nn.Identity


class Untraceable(nn.Module):
    """Control flow on a tensor value: torch.fx cannot trace it; its Sequentials are still fused."""

    def __init__(self):
        super().__init__()
        self.positive = nn.Sequential(nn.Conv3d(4, 4, 3, 1, 1, groups=4), nn.BatchNorm3d(4), nn.ReLU())
        self.negative = FunctionalBlock(4, 4)

    def forward(self, x):
        return self.positive(x) if x.sum() > 0 else self.negative(x)


def test_untraceable_model_falls_back_to_sequentials(vid3d_backend):
    model = randomize_batch_norms(Untraceable(), 0).double().eval()
    with pytest.warns(UserWarning, match="could not trace 1 part.*Untraceable: TraceError"):
        optimized = vid3d.optimize(model)
    assert optimized.positive[0].activation == "relu" and type(optimized.positive[1]) is nn.Identity
    assert type(optimized.negative.bn1) is nn.Identity  # the submodule traces on its own
    x = randn((1, 4, 3, 5, 5), torch.float64, 1).abs()
    with torch.no_grad():
        for sign in (1, -1):
            assert_close(optimized(sign * x), model(sign * x), torch.float64)


class Reuse(nn.Module):
    """Fusing any of these would change another use of the same module or value."""

    def __init__(self):
        super().__init__()
        self.conv_twice = nn.Conv3d(4, 4, 3, 1, 1, groups=4)
        self.bn_after_one_call = nn.BatchNorm3d(4)
        self.conv_kept = nn.Conv3d(4, 4, 1)
        self.bn_of_kept = nn.BatchNorm3d(4)
        self.conv_read = nn.Conv3d(4, 4, 1)
        self.bn_of_read = nn.BatchNorm3d(4)
        self.relu = nn.ReLU()
        self.shared = nn.Sequential(nn.Conv3d(4, 4, 3, 1, 1, groups=4), nn.BatchNorm3d(4))
        self.shared_again = self.shared[1]  # the same BatchNorm registered twice
        self.hooked = nn.Sequential(nn.Conv3d(4, 4, 1), nn.BatchNorm3d(4))
        self.hooked[1].register_forward_hook(lambda module, inputs, output: output.flip(2))

    def forward(self, x):
        y = self.bn_after_one_call(self.conv_twice(x)) + self.conv_twice(x)
        kept = self.conv_kept(y)
        y = self.bn_of_kept(kept) + kept  # the conv's output is used twice
        y = self.bn_of_read(self.conv_read(y)) * self.conv_read.weight.sum()  # its weight is read directly
        return self.hooked(self.shared(self.relu(y)))


def test_reused_modules_and_values_are_not_fused(vid3d_backend):
    model = randomize_batch_norms(Reuse(), 0).double().eval()
    optimized = vid3d.optimize(model)
    assert not any(isinstance(module, nn.Identity) for module in optimized.modules())
    x = randn((1, 4, 3, 5, 5), torch.float64, 1)
    with torch.no_grad():
        assert_close(optimized(x), model(x), torch.float64)


def test_rejects_a_non_module():
    with pytest.raises(TypeError, match="expects an nn.Module, got function"):
        vid3d.optimize(lambda x: x)
