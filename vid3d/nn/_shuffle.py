"""ChannelShuffle3d: ``nn.ChannelShuffle`` running on vid3d's shuffle for 5-D input."""

from __future__ import annotations

from torch import Tensor, nn

from .. import ops
from ._arguments import count


class ChannelShuffle3d(nn.ChannelShuffle):
    """Channel shuffle of ``(N, C, T, H, W)`` input, a drop-in for ``nn.ChannelShuffle(groups)``.

    Output channel ``j * groups + i`` is input channel ``i * (C // groups) + j``. 5-D input runs
    :func:`vid3d.ops.channel_shuffle3d` (on the backend chosen with :func:`vid3d.backend`); input
    of another rank is left to ``nn.ChannelShuffle``, so that :func:`vid3d.convert` can swap this
    module in for any ``nn.ChannelShuffle``. It is an ``nn.ChannelShuffle`` (``isinstance`` holds).

    Args:
        groups: the number of groups, a positive int that divides the channel count.
    """

    def __init__(self, groups: int):
        super().__init__(count(type(self).__name__, "groups", groups))

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != 5:
            return super().forward(input)
        return ops.channel_shuffle3d(input, self.groups)
