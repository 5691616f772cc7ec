"""vid3d's modules: drop-ins for ``nn.Conv3d(groups=C)``, ``nn.ChannelShuffle`` and (2+1)D convolution pairs.

Each keeps the parameter names and shapes of the PyTorch layers it replaces (so ``state_dict`` s
load either way) and runs the :mod:`vid3d.ops` on the backend chosen with :func:`vid3d.backend`.
"""

from ._conv2plus1d import Conv2Plus1d
from ._depthwise import DepthwiseConv3d
from ._shuffle import ChannelShuffle3d

__all__ = ["ChannelShuffle3d", "Conv2Plus1d", "DepthwiseConv3d"]
