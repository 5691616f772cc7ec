"""3D ResNets: one builder for 3D-ResNets-PyTorch's ResNet, pre-activation ResNet, wide ResNet,
ResNeXt and R(2+1)D, and for Efficient-3DCNNs' ResNet and ResNeXt, parameterised by block type.

State_dict keys are the references': ``conv1, bn1`` (or ``conv1_s, bn1_s, conv1_t, bn1_t`` for
the (2+1)D stem), ``layer1-4.i.{conv*, bn*, downsample.0/1}``, ``fc``.

Where the two repositories' names clash, 3D-ResNets-PyTorch (kenshohara, the 2020 code) keeps the
plain names (``resnet18``, ``resnext101``) and Efficient-3DCNNs' models, which are also the
2017-2018 3D-ResNets-PyTorch models, are ``efficient_resnet*`` / ``efficient_resnext*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._layers import ZeroPadShortcut, check_choice, check_int, check_positive, fixed_avg_pool

RESNET_INPLANES = (64, 128, 256, 512)
RESNEXT_INPLANES = (128, 256, 512, 1024)
# Blocks per stage for each depth, and whether the depth uses the bottleneck block.
DEPTHS = {
    10: ((1, 1, 1, 1), False),
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
    200: ((3, 24, 36, 3), True),
}


def conv3x3x3(in_planes: int, out_planes: int, stride=1, groups: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, 3, stride, 1, groups=groups, bias=False)


def conv1x1x1(in_planes: int, out_planes: int, stride=1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, 1, stride, bias=False)


class ResidualBlock(nn.Module):
    """Base of the blocks: holds ``relu`` and ``downsample`` (the projection or zero-pad shortcut)."""

    expansion = 1

    def __init__(self, downsample: nn.Module | None) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)


class BasicBlock(ResidualBlock):
    """conv1 3x3x3 (stride), bn1, ReLU, conv2 3x3x3, bn2, add shortcut, ReLU."""

    def __init__(self, in_planes: int, planes: int, stride=1, downsample=None) -> None:
        super().__init__(downsample)
        self.conv1 = conv3x3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(ResidualBlock):
    """conv1 1x1x1, bn1, ReLU, conv2 3x3x3 (stride, groups), bn2, ReLU, conv3 1x1x1 to planes * expansion, bn3."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride=1, downsample=None, mid_planes: int | None = None,
                 groups: int = 1) -> None:
        super().__init__(downsample)
        mid_planes = planes if mid_planes is None else mid_planes
        self.conv1 = conv1x1x1(in_planes, mid_planes)
        self.bn1 = nn.BatchNorm3d(mid_planes)
        self.conv2 = conv3x3x3(mid_planes, mid_planes, stride, groups)
        self.bn2 = nn.BatchNorm3d(mid_planes)
        self.conv3 = conv1x1x1(mid_planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class WideBottleneck(Bottleneck):
    """The wide ResNet's bottleneck: expansion 2 (the width comes from the scaled stage widths)."""

    expansion = 2


class ResNeXtBottleneck(Bottleneck):
    """ResNeXt bottleneck: ``cardinality * planes // 32`` mid channels, grouped 3x3x3, expansion 2."""

    expansion = 2

    def __init__(self, in_planes: int, planes: int, stride=1, downsample=None, cardinality: int = 32) -> None:
        super().__init__(in_planes, planes, stride, downsample, mid_planes=cardinality * planes // 32,
                         groups=cardinality)


class PreActBasicBlock(ResidualBlock):
    """Pre-activation: bn1, ReLU, conv1 (stride), bn2, ReLU, conv2, add shortcut (no ReLU after)."""

    def __init__(self, in_planes: int, planes: int, stride=1, downsample=None) -> None:
        super().__init__(downsample)
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv3x3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + self.shortcut(x)


class PreActBottleneck(ResidualBlock):
    """Pre-activation bottleneck: (bn, ReLU, conv) x 3 with 1x1x1, 3x3x3 (stride), 1x1x1; add shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride=1, downsample=None) -> None:
        super().__init__(downsample)
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + self.shortcut(x)


def two_plus_one_mid_planes(in_planes: int, out_planes: int, kernel_t: int, kernel_s: int) -> int:
    """R(2+1)D's mid width: the (2+1)D pair gets about as many weights as the full 3D conv it replaces."""
    full = in_planes * out_planes * kernel_t * kernel_s * kernel_s
    return full // (in_planes * kernel_s * kernel_s + kernel_t * out_planes)


class ResNet3D(nn.Module):
    """A 3D ResNet: stem, optional max pool, four stages of ``block``, average pool, ``fc``.

    Args:
        block: the residual block class (its ``expansion`` sets the stage output widths).
        layers: blocks per stage.
        block_inplanes: the stages' ``planes``, before ``widen_factor``.
        n_input_channels, conv1_t_size, conv1_t_stride, no_max_pool, shortcut_type, widen_factor:
            as in 3D-ResNets-PyTorch.
        num_classes: output classes.
        block_kwargs: extra keywords for every block (ResNeXt's ``cardinality``).
        stem_planes: stem output width; None means the first stage's (scaled) width, as the 2020
            3D-ResNets-PyTorch code does. Efficient-3DCNNs always uses 64.
        two_plus_one_stem: the R(2+1)D stem (``conv1_s, bn1_s, conv1_t, bn1_t``) instead of ``conv1, bn1``.
        avgpool: the pooling module before ``fc``; None means ``AdaptiveAvgPool3d(1)``.
        max_pool_kernel: ``3`` or ``(3, 3, 3)``; the same pooling either way, kept as the
            reference wrote it because the Efficient-3DCNNs FLOP counter (which
            :func:`vid3d.profile` follows) counts the two spellings differently.
    """

    def __init__(self, block: type[ResidualBlock], layers: Sequence[int], block_inplanes: Sequence[int], *,
                 n_input_channels: int = 3, conv1_t_size: int = 7, conv1_t_stride: int = 1,
                 no_max_pool: bool = False, shortcut_type: str = "B", widen_factor: float = 1.0,
                 num_classes: int = 400, block_kwargs: dict | None = None, stem_planes: int | None = None,
                 two_plus_one_stem: bool = False, avgpool: nn.Module | None = None, max_pool_kernel=3) -> None:
        super().__init__()
        check_int("n_input_channels", n_input_channels)
        check_int("conv1_t_size", conv1_t_size)
        check_int("conv1_t_stride", conv1_t_stride)
        check_choice("shortcut_type", shortcut_type, ("A", "B"))
        check_positive("widen_factor", widen_factor)
        check_int("num_classes", num_classes)
        block_inplanes = [int(planes * widen_factor) for planes in block_inplanes]
        self.in_planes = block_inplanes[0] if stem_planes is None else stem_planes
        self.no_max_pool = no_max_pool
        stem_kernel, stem_stride, stem_padding = (conv1_t_size, 7, 7), (conv1_t_stride, 2, 2), (conv1_t_size // 2, 3, 3)
        if two_plus_one_stem:
            # The reference computes the mid width for 3 input channels whatever n_input_channels is.
            mid = two_plus_one_mid_planes(3, self.in_planes, conv1_t_size, 7)
            self.conv1_s = nn.Conv3d(n_input_channels, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
            self.bn1_s = nn.BatchNorm3d(mid)
            self.conv1_t = nn.Conv3d(mid, self.in_planes, (conv1_t_size, 1, 1), (conv1_t_stride, 1, 1),
                                     (conv1_t_size // 2, 0, 0), bias=False)
            self.bn1_t = nn.BatchNorm3d(self.in_planes)
            self._stem = ("conv1_s", "bn1_s", "relu", "conv1_t", "bn1_t", "relu")
        else:
            self.conv1 = nn.Conv3d(n_input_channels, self.in_planes, stem_kernel, stem_stride, stem_padding, bias=False)
            self.bn1 = nn.BatchNorm3d(self.in_planes)
            self._stem = ("conv1", "bn1", "relu")
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=max_pool_kernel, stride=2, padding=1)
        for index, (planes, blocks) in enumerate(zip(block_inplanes, layers)):
            stage = self._make_layer(block, planes, blocks, shortcut_type, 1 if index == 0 else 2, block_kwargs or {})
            self.add_module(f"layer{index + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1)) if avgpool is None else avgpool
        self.fc = nn.Linear(block_inplanes[3] * block.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, block, planes: int, blocks: int, shortcut_type: str, stride: int,
                    block_kwargs: dict) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.in_planes != out_planes:
            if shortcut_type == "A":
                downsample = ZeroPadShortcut(out_planes, stride)
            else:
                downsample = nn.Sequential(conv1x1x1(self.in_planes, out_planes, stride), nn.BatchNorm3d(out_planes))
        layers = [block(self.in_planes, planes, stride, downsample, **block_kwargs)]
        self.in_planes = out_planes
        layers += [block(out_planes, planes, **block_kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # The references' initialisation: He (fan-out) for convolutions, BN to identity.
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._stem:
            x = getattr(self, name)(x)
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _depth(name: str, depth: int, choices=DEPTHS) -> tuple[Sequence[int], bool]:
    check_choice(f"{name} depth", depth, tuple(choices))
    return DEPTHS[depth]


def resnet(depth: int, n_input_channels: int = 3, conv1_t_size: int = 7, conv1_t_stride: int = 1,
           no_max_pool: bool = False, shortcut_type: str = "B", widen_factor: float = 1.0,
           num_classes: int = 400) -> ResNet3D:
    """3D-ResNets-PyTorch ``resnet.generate_model(depth, ...)`` (``n_classes`` is ``num_classes`` here)."""
    layers, bottleneck = _depth("resnet", depth)
    return ResNet3D(Bottleneck if bottleneck else BasicBlock, layers, RESNET_INPLANES,
                    n_input_channels=n_input_channels, conv1_t_size=conv1_t_size, conv1_t_stride=conv1_t_stride,
                    no_max_pool=no_max_pool, shortcut_type=shortcut_type, widen_factor=widen_factor,
                    num_classes=num_classes)


def preact_resnet(depth: int, n_input_channels: int = 3, conv1_t_size: int = 7, conv1_t_stride: int = 1,
                  no_max_pool: bool = False, shortcut_type: str = "B", widen_factor: float = 1.0,
                  num_classes: int = 400) -> ResNet3D:
    """3D-ResNets-PyTorch ``pre_act_resnet.generate_model(depth, ...)``: pre-activation blocks in its ResNet.

    The reference cannot build these at its head (its ResNet passes ``in_planes=`` to blocks
    whose argument is ``inplanes``); this follows the evident intent: its pre-activation blocks
    (``bn1, conv1, bn2, conv2[, bn3, conv3]``) inside the same ResNet (stem, stages, pool, ``fc``).
    """
    layers, bottleneck = _depth("preact_resnet", depth)
    return ResNet3D(PreActBottleneck if bottleneck else PreActBasicBlock, layers, RESNET_INPLANES,
                    n_input_channels=n_input_channels, conv1_t_size=conv1_t_size, conv1_t_stride=conv1_t_stride,
                    no_max_pool=no_max_pool, shortcut_type=shortcut_type, widen_factor=widen_factor,
                    num_classes=num_classes)


def wide_resnet(depth: int, k: int = 2, n_input_channels: int = 3, conv1_t_size: int = 7, conv1_t_stride: int = 1,
                no_max_pool: bool = False, shortcut_type: str = "B", widen_factor: float = 1.0,
                num_classes: int = 400) -> ResNet3D:
    """3D-ResNets-PyTorch ``wide_resnet.generate_model(depth, k, ...)``: stage widths times ``k``, expansion 2.

    As in the reference, the stem is ``64 * k`` wide too (it takes the first stage's width).
    ``k`` defaults to the reference's command-line default, 2.
    """
    check_int("k", k)
    layers, _ = _depth("wide_resnet", depth)
    return ResNet3D(WideBottleneck, layers, [planes * k for planes in RESNET_INPLANES],
                    n_input_channels=n_input_channels, conv1_t_size=conv1_t_size, conv1_t_stride=conv1_t_stride,
                    no_max_pool=no_max_pool, shortcut_type=shortcut_type, widen_factor=widen_factor,
                    num_classes=num_classes)


def resnext(depth: int, cardinality: int = 32, n_input_channels: int = 3, conv1_t_size: int = 7,
            conv1_t_stride: int = 1, no_max_pool: bool = False, shortcut_type: str = "B",
            num_classes: int = 400) -> ResNet3D:
    """3D-ResNets-PyTorch ``resnext.generate_model(depth, cardinality, ...)``.

    The reference cannot build these at its head: it passes ``n_classes`` positionally into its
    ResNet's ``widen_factor`` slot, its blocks take ``inplanes`` where the ResNet passes
    ``in_planes``, and its ``fc`` reads ``cardinality * 64`` features where the network makes
    ``2048``. This follows the evident intent: stage widths 128/256/512/1024 (the stem takes the
    first, 128, as that code's ResNet does), ``cardinality * planes // 32`` grouped mid channels,
    expansion 2, and ``fc`` on the 2048 features (identical to the reference for cardinality 32).
    """
    check_int("cardinality", cardinality)
    layers, _ = _depth("resnext", depth, (50, 101, 152, 200))
    return ResNet3D(ResNeXtBottleneck, layers, RESNEXT_INPLANES, n_input_channels=n_input_channels,
                    conv1_t_size=conv1_t_size, conv1_t_stride=conv1_t_stride, no_max_pool=no_max_pool,
                    shortcut_type=shortcut_type, num_classes=num_classes, block_kwargs={"cardinality": cardinality})


def efficient_resnet(depth: int, sample_size: int = 112, sample_duration: int = 16, shortcut_type: str = "B",
                     num_classes: int = 400) -> ResNet3D:
    """Efficient-3DCNNs ``resnet.resnet{depth}`` (also 3D-ResNets-PyTorch's 2017-2018 ResNet).

    Stem 7x7x7 stride (1,2,2), 64 wide; the final ``AvgPool3d`` is sized for
    ``sample_duration x sample_size x sample_size`` clips as in the reference (which requires
    both; the defaults here are the paper's 16 and 112). Table 8 uses shortcut 'A'.
    """
    layers, bottleneck = _depth("efficient_resnet", depth)
    return ResNet3D(Bottleneck if bottleneck else BasicBlock, layers, RESNET_INPLANES, shortcut_type=shortcut_type,
                    num_classes=num_classes, stem_planes=64, max_pool_kernel=(3, 3, 3),
                    avgpool=fixed_avg_pool(sample_duration, sample_size))


def efficient_resnext(depth: int, sample_size: int = 112, sample_duration: int = 16, shortcut_type: str = "B",
                      cardinality: int = 32, num_classes: int = 400) -> ResNet3D:
    """Efficient-3DCNNs ``resnext.resnet{depth}`` (also 3D-ResNets-PyTorch's 2017-2018 ResNeXt).

    Stem 7x7x7 stride (1,2,2), 64 wide, stages 128/256/512/1024 with expansion 2. The reference
    sizes ``fc`` as ``cardinality * 64``, which only matches the 2048 features at cardinality 32;
    ``fc`` here reads the 2048 features (identical at 32). Table 8: depth 101, shortcut 'B'.
    """
    check_int("cardinality", cardinality)
    layers, _ = _depth("efficient_resnext", depth, (50, 101, 152))
    return ResNet3D(ResNeXtBottleneck, layers, RESNEXT_INPLANES, shortcut_type=shortcut_type, num_classes=num_classes,
                    block_kwargs={"cardinality": cardinality}, stem_planes=64, max_pool_kernel=(3, 3, 3),
                    avgpool=fixed_avg_pool(sample_duration, sample_size))
