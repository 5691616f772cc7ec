"""3D-SqueezeNet 1.0 / 1.1 of Efficient-3DCNNs (Köpüklü et al. 2019), with the reference state_dict.

Keys: ``features.0`` (stem conv, with bias), ``features.1`` (BN), Fire modules at their
``features.i`` index with ``squeeze(_bn)``, ``expand1x1(_bn)``, ``expand3x3(_bn)``, and
``classifier.1`` (the 1x1x1 conv to the classes, with bias).
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_choice, check_int, fixed_avg_pool


class Fire(nn.Module):
    """Squeeze 1x1x1, BN, ReLU; expand 1x1x1 and 3x3x3 (each + BN), concatenated; bypass add; ReLU."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int, bypass: bool = False) -> None:
        super().__init__()
        self.bypass = bypass
        self.relu = nn.ReLU(inplace=True)
        self.squeeze = nn.Conv3d(in_channels, squeeze, 1)
        self.squeeze_bn = nn.BatchNorm3d(squeeze)
        self.expand1x1 = nn.Conv3d(squeeze, expand1x1, 1)
        self.expand1x1_bn = nn.BatchNorm3d(expand1x1)
        self.expand3x3 = nn.Conv3d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_bn = nn.BatchNorm3d(expand3x3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.squeeze_bn(self.squeeze(x)))
        out = torch.cat([self.expand1x1_bn(self.expand1x1(out)), self.expand3x3_bn(self.expand3x3(out))], 1)
        if self.bypass:
            out = out + x
        return self.relu(out)


def _max_pool() -> nn.MaxPool3d:
    return nn.MaxPool3d(kernel_size=3, stride=2, padding=1)


# Fire arguments (in, squeeze, expand1x1, expand3x3, bypass); "pool" marks a max pool. Simple
# bypass on every second Fire, as in the reference.
_FIRES = {
    1.0: ((96, 16, 64, 64, False), (128, 16, 64, 64, True), "pool", (128, 32, 128, 128, False),
          (256, 32, 128, 128, True), "pool", (256, 48, 192, 192, False), (384, 48, 192, 192, True),
          (384, 64, 256, 256, False), "pool", (512, 64, 256, 256, True)),
    1.1: ((64, 16, 64, 64, False), (128, 16, 64, 64, True), "pool", (128, 32, 128, 128, False),
          (256, 32, 128, 128, True), "pool", (256, 48, 192, 192, False), (384, 48, 192, 192, True), "pool",
          (384, 64, 256, 256, False), (512, 64, 256, 256, True)),
}
# Stem conv per version: (out channels, kernel, padding); stride (1,2,2) for both.
_STEMS = {1.0: (96, 7, 3), 1.1: (64, 3, 1)}


class SqueezeNet3D(nn.Module):
    """3D-SqueezeNet: stem, max pool, 8 Fire modules with 3 more max pools, 1x1x1 conv classifier, average pool."""

    def __init__(self, sample_size: int = 112, sample_duration: int = 16, version: float = 1.1,
                 num_classes: int = 600) -> None:
        super().__init__()
        check_choice("version", version, tuple(_FIRES))
        check_int("sample_size", sample_size)
        check_int("sample_duration", sample_duration)
        check_int("num_classes", num_classes)
        stem_channels, kernel, padding = _STEMS[version]
        layers = [nn.Conv3d(3, stem_channels, kernel, (1, 2, 2), padding), nn.BatchNorm3d(stem_channels),
                  nn.ReLU(inplace=True), _max_pool()]
        layers += [_max_pool() if spec == "pool" else Fire(*spec) for spec in _FIRES[version]]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=0.5), nn.Conv3d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        fixed_avg_pool(sample_duration, sample_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).flatten(1)


def squeezenet(sample_size: int = 112, sample_duration: int = 16, version: float = 1.1,
               num_classes: int = 600) -> SqueezeNet3D:
    """3D-SqueezeNet (reference ``squeezenet.get_model``); ``version`` 1.0 or 1.1 (Table 8: 1.1).

    ``sample_size``/``sample_duration`` size the final average pool for that clip, as in the
    reference (which requires them; the defaults here are the paper's 112 and 16).
    """
    return SqueezeNet3D(sample_size, sample_duration, version, num_classes)
