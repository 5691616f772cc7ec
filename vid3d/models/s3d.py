"""S3D (Xie et al. 2018: separable 3D convolutions on an Inception-v1 backbone) and S3D-v3 (the
Inception-v3 variant of Gupta et al., "Reproducing Action Recognition Experiments with Modern
Classification Networks"), as documented reconstructions.

A separable 3D convolution is a spatial ``(1,k,k)`` conv then a temporal ``(k,1,1)`` conv, each with
BatchNorm (eps 1e-3) and ReLU. ``s3d`` follows the published S3D layer table (and lays its modules
out like torchvision's ``s3d``: ``features.i``, ``branch0-3``, ``classifier.1``; not checked against
its weights), with a global
average pool so any clip size works (for the paper's 64x224x224 clip, pooling over everything and
then applying the 1x1x1 classifier equals torchvision's pool-classify-average). ``s3d_v3``
follows the seed paper's Table 1 (stem, then Inception-v3 modules of its three types, inflated to
separable convolutions); choices the paper leaves open are listed on :func:`s3d_v3`.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import check_int

_batch_norm = partial(nn.BatchNorm3d, eps=1e-3, momentum=1e-3)


def conv_unit(in_channels: int, out_channels: int, kernel_size=1, stride=1, padding=0) -> nn.Sequential:
    """Conv3d (no bias), BatchNorm (eps 1e-3), ReLU."""
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
                         _batch_norm(out_channels), nn.ReLU(inplace=True))


def separable_conv(in_channels: int, out_channels: int, kernel: int, stride=1, padding=0) -> nn.Sequential:
    """Spatial (1,k,k) then temporal (k,1,1) conv units; ``stride``/``padding`` are (t, s) pairs or ints."""
    (stride_t, stride_s), (pad_t, pad_s) = (_pair(stride), _pair(padding))
    return nn.Sequential(
        conv_unit(in_channels, out_channels, (1, kernel, kernel), (1, stride_s, stride_s), (0, pad_s, pad_s)),
        conv_unit(out_channels, out_channels, (kernel, 1, 1), (stride_t, 1, 1), (pad_t, 0, 0)),
    )


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Branches(nn.Module):
    """Runs ``branch0``, ``branch1``, ... on the same input and concatenates their outputs."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        for index, branch in enumerate(branches):
            self.add_module(f"branch{index}", branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], 1)


class SplitBranch(nn.Module):
    """Inception-v3's split tail: one input, two parallel convs (``a``, ``b``), concatenated."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


def inception_v1(in_channels: int, b0: int, b1_mid: int, b1: int, b2_mid: int, b2: int, b3: int) -> Branches:
    """S3D's separable Inception-v1 module: 1x1x1; 1x1x1 -> sep 3; 1x1x1 -> sep 3; max pool -> 1x1x1."""
    return Branches(
        conv_unit(in_channels, b0),
        nn.Sequential(conv_unit(in_channels, b1_mid), separable_conv(b1_mid, b1, 3, 1, 1)),
        nn.Sequential(conv_unit(in_channels, b2_mid), separable_conv(b2_mid, b2, 3, 1, 1)),
        nn.Sequential(nn.MaxPool3d(3, 1, 1), conv_unit(in_channels, b3)),
    )


class S3D(nn.Module):
    """S3D: separable Inception-v1 (the published S3D layer table), global average pool, 1x1x1 classifier."""

    def __init__(self, num_classes: int = 400, dropout: float = 0.2) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        self.features = nn.Sequential(
            separable_conv(3, 64, 7, 2, 3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            conv_unit(64, 64),
            separable_conv(64, 192, 3, 1, 1),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            inception_v1(192, 64, 96, 128, 16, 32, 32),  # Mixed_3b
            inception_v1(256, 128, 128, 192, 32, 96, 64),  # Mixed_3c
            nn.MaxPool3d(3, 2, 1),
            inception_v1(480, 192, 96, 208, 16, 48, 64),  # Mixed_4b
            inception_v1(512, 160, 112, 224, 24, 64, 64),
            inception_v1(512, 128, 128, 256, 24, 64, 64),
            inception_v1(512, 112, 144, 288, 32, 64, 64),
            inception_v1(528, 256, 160, 320, 32, 128, 128),  # Mixed_4f
            nn.MaxPool3d(2, 2, 0, ceil_mode=True),  # ceil: short clips keep a frame
            inception_v1(832, 256, 160, 320, 32, 128, 128),  # Mixed_5b
            inception_v1(832, 384, 192, 384, 48, 128, 128),  # Mixed_5c
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv3d(1024, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool3d(self.features(x), 1)
        return self.classifier(x).flatten(1)


class _BranchAvgPool(nn.AvgPool3d):
    """``AvgPool3d(3, stride=1, padding=1)`` (zeros counted, the default) that also takes inputs
    smaller than the kernel, which PyTorch's pooling rejects even when padded: short clips reach
    the last modules with 1-2 frames."""

    def __init__(self) -> None:
        super().__init__(3, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(F.pad(x, (1, 1, 1, 1, 1, 1)), 3, stride=1)


def _inception_a(in_channels: int, pool_channels: int) -> Branches:
    """Type 1 (35x35 in 2D): 1x1; 1x1 -> sep 5; 1x1 -> sep 3 -> sep 3; avg pool -> 1x1."""
    return Branches(
        conv_unit(in_channels, 64),
        nn.Sequential(conv_unit(in_channels, 48), separable_conv(48, 64, 5, 1, 2)),
        nn.Sequential(conv_unit(in_channels, 64), separable_conv(64, 96, 3, 1, 1), separable_conv(96, 96, 3, 1, 1)),
        nn.Sequential(_BranchAvgPool(), conv_unit(in_channels, pool_channels)),
    )


def _seven(in_channels: int, out_channels: int, first: str) -> nn.Sequential:
    """Inception-v3's factorised 7x7, as (1,1,7) and (1,7,1) convs in the order given by ``first``."""
    row = ((1, 1, 7), (0, 0, 3))
    column = ((1, 7, 1), (0, 3, 0))
    a, b = (row, column) if first == "row" else (column, row)
    return nn.Sequential(conv_unit(in_channels, in_channels, *_kernel(a)),
                         conv_unit(in_channels, out_channels, *_kernel(b)))


def _kernel(spec):
    kernel, padding = spec
    return kernel, 1, padding


def _temporal(channels: int) -> nn.Sequential:
    return conv_unit(channels, channels, (3, 1, 1), 1, (1, 0, 0))


def _inception_c(in_channels: int, mid: int) -> Branches:
    """Type 2 (17x17 in 2D): 1x1; 1x1 -> 7x7 (factorised) -> temporal 3; the same doubled; avg pool -> 1x1."""
    return Branches(
        conv_unit(in_channels, 192),
        nn.Sequential(conv_unit(in_channels, mid), _seven(mid, 192, "row"), _temporal(192)),
        nn.Sequential(conv_unit(in_channels, mid), _seven(mid, mid, "column"), _seven(mid, 192, "column"),
                      _temporal(192)),
        nn.Sequential(_BranchAvgPool(), conv_unit(in_channels, 192)),
    )


def _inception_e(in_channels: int) -> Branches:
    """Type 3 (8x8 in 2D): 1x1; 1x1 -> temporal 3 -> (1x3 | 3x1); 1x1 -> sep 3 -> (1x3 | 3x1); avg pool -> 1x1."""
    def split(channels: int) -> SplitBranch:
        return SplitBranch(conv_unit(channels, 384, (1, 1, 3), 1, (0, 0, 1)),
                           conv_unit(channels, 384, (1, 3, 1), 1, (0, 1, 0)))

    return Branches(
        conv_unit(in_channels, 320),
        nn.Sequential(conv_unit(in_channels, 384), _temporal(384), split(384)),
        nn.Sequential(conv_unit(in_channels, 448), separable_conv(448, 384, 3, 1, 1), split(384)),
        nn.Sequential(_BranchAvgPool(), conv_unit(in_channels, 192)),
    )


# Reductions: stride 2 without spatial padding as in Inception-v3, but padded by 1 in time so
# that 16-frame clips keep a frame (the seed's 64-frame table then reads 4 and 2 frames, not 3 and 1).
_REDUCE = {"stride": 2, "padding": (1, 0)}


def _reduction_b(in_channels: int) -> Branches:
    """Inception-v3's first grid reduction: sep 3 stride 2; 1x1 -> sep 3 -> sep 3 stride 2; max pool."""
    return Branches(
        separable_conv(in_channels, 384, 3, **_REDUCE),
        nn.Sequential(conv_unit(in_channels, 64), separable_conv(64, 96, 3, 1, 1),
                      separable_conv(96, 96, 3, **_REDUCE)),
        nn.MaxPool3d(3, 2, (1, 0, 0)),
    )


def _reduction_d(in_channels: int) -> Branches:
    """Inception-v3's second grid reduction: 1x1 -> sep 3 stride 2; 1x1 -> 7x7 -> sep 3 stride 2; max pool."""
    return Branches(
        nn.Sequential(conv_unit(in_channels, 192), separable_conv(192, 320, 3, **_REDUCE)),
        nn.Sequential(conv_unit(in_channels, 192), _seven(192, 192, "row"), separable_conv(192, 192, 3, **_REDUCE)),
        nn.MaxPool3d(3, 2, (1, 0, 0)),
    )


class S3DV3(nn.Module):
    """S3D-v3: the separable Inception-v3 of seed 004 (see :func:`s3d_v3`)."""

    def __init__(self, num_classes: int = 400, dropout: float = 0.5) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        self.features = nn.Sequential(
            separable_conv(3, 32, 3, 2, 1),
            separable_conv(32, 32, 3, 1, 1),
            separable_conv(32, 64, 3, 1, 1),
            nn.MaxPool3d(3, 2, 1),
            conv_unit(64, 80),
            separable_conv(80, 192, 3, 1, 1),
            nn.MaxPool3d(3, 2, 1),
            _inception_a(192, 32), _inception_a(256, 64), _inception_a(288, 64),
            _reduction_b(288),
            _inception_c(768, 128), _inception_c(768, 160), _inception_c(768, 160), _inception_c(768, 192),
            _reduction_d(768),
            _inception_e(1280), _inception_e(2048),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(2048, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool3d(self.features(x), 1).flatten(1))


def s3d(num_classes: int = 400, dropout: float = 0.2) -> S3D:
    """S3D (separable Inception-v1), a documented reconstruction; takes clips of 8+ frames, 32+ pixels."""
    return S3D(num_classes, dropout)


def s3d_v3(num_classes: int = 400, dropout: float = 0.5) -> S3DV3:
    """S3D-v3 (separable Inception-v3 of seed 004), a documented reconstruction.

    From the paper's Table 1: the stem (sep 3 stride 2, sep 3, sep 3 to 64, max pool, 1x1x1 to 80,
    sep 3 to 192, max pool), then the three Inception-v3 module types (3 x type 1 to 288,
    4 x type 2 at 768, 2 x type 3 to 2048) and an average pool. Chosen here: the two
    Inception-v3 grid reductions between the types; factorised 1x7/7x1 convs stay spatial and
    each such branch ends with a temporal (3,1,1) conv; reductions pad time by 1 (see
    ``_REDUCE``); no auxiliary classifier; dropout then Linear. Clips need 64+ pixels.
    """
    return S3DV3(num_classes, dropout)
