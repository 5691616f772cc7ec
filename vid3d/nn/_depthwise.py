"""DepthwiseConv3d: ``nn.Conv3d(C, C, k, groups=C)`` running on vid3d's depthwise kernels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ._arguments import check_choice, check_dtype, check_flag, conv_geometry, count

ACTIVATIONS = (None, "relu", "relu6")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def is_depthwise(conv: nn.Conv3d) -> bool:
    """Whether ``conv`` convolves each channel with its own single filter (groups == in == out channels)."""
    return conv.groups == conv.in_channels == conv.out_channels


def has_hooks(module: nn.Module) -> bool:
    """Whether forward hooks or pre-hooks are registered on ``module`` (old-style weight_norm is one).

    A module that replaces it would not run them, so such modules are not replaced.
    """
    return bool(module._forward_hooks or module._forward_pre_hooks)


class DepthwiseConv3d(nn.Conv3d):
    """Depthwise 3D convolution, a drop-in for ``nn.Conv3d(C, C, kernel_size, groups=C)``.

    It is an ``nn.Conv3d`` (``isinstance`` holds) with the same constructor arguments, the same
    parameters ``weight`` ``(C, 1, kt, kh, kw)`` and ``bias`` ``(C,)``, the same initialisation
    and ``state_dict``, so checkpoints load either way; only the forward differs: it runs
    :func:`vid3d.ops.depthwise_conv3d`, on the backend chosen with :func:`vid3d.backend`.

    Args:
        in_channels, out_channels: the channel count C; both must be equal (one filter per
            channel; a channel multiplier needs ``nn.Conv3d``).
        kernel_size, stride, padding, dilation, bias, padding_mode, device, dtype: as in
            ``nn.Conv3d`` (padding may be ``"same"`` or ``"valid"``; non-zero padding modes and
            uneven ``"same"`` padding are applied with ``F.pad`` first, as ``nn.Conv3d`` does).
        groups: None or C (the default is C).
        activation: None, ``"relu"`` or ``"relu6"``: applied to the output in the same call
            (fused in the kernel where the backend can). :func:`vid3d.optimize` sets it when it
            fuses a following ReLU/ReLU6 module; it is not part of the ``state_dict``.

    Invalid arguments, some of which nn.Conv3d accepts (a kernel size or stride of 0, a 2-tuple
    kernel, a non-bool ``bias``), raise a ValueError or TypeError naming the argument.

    Example::

        conv = vid3d.nn.DepthwiseConv3d(64, 64, 3, padding=1, bias=False)
        conv.load_state_dict(torch.nn.Conv3d(64, 64, 3, padding=1, groups=64, bias=False).state_dict())
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int | None = None,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        activation: str | None = None,
    ):
        owner = type(self).__name__
        in_channels, out_channels = count(owner, "in_channels", in_channels), count(owner, "out_channels", out_channels)
        groups = in_channels if groups is None else count(owner, "groups", groups)
        if not (out_channels == in_channels == groups):
            raise ValueError(
                f"{owner}: needs out_channels == in_channels == groups (one filter per channel), got "
                f"in_channels={in_channels}, out_channels={out_channels}, groups={groups}; use nn.Conv3d for "
                "other group counts or a channel multiplier"
            )
        kernel_size, stride, padding, dilation = conv_geometry(owner, kernel_size, stride, padding, dilation)
        check_flag(owner, "bias", bias)
        check_choice(owner, "padding_mode", padding_mode, PADDING_MODES)
        check_choice(owner, "activation", activation, ACTIVATIONS)
        check_dtype(owner, dtype)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.activation = activation

    @classmethod
    def from_conv(cls, conv: nn.Conv3d) -> DepthwiseConv3d:
        """A DepthwiseConv3d computing what the depthwise ``conv`` computes, sharing its parameters.

        ``conv.weight`` and ``conv.bias`` become this module's (the same ``Parameter`` objects, not
        copies), and the training flag is kept. ``conv`` must be an ``nn.Conv3d`` with
        ``groups == in_channels == out_channels``; a DepthwiseConv3d keeps its ``activation``.
        """
        if not isinstance(conv, nn.Conv3d):
            raise TypeError(f"DepthwiseConv3d.from_conv expects an nn.Conv3d, got {type(conv).__name__}")
        if isinstance(conv.weight, nn.parameter.UninitializedParameter):
            raise ValueError("DepthwiseConv3d.from_conv: the lazy conv has no weight yet; run it once first")
        if not is_depthwise(conv):
            raise ValueError(
                "DepthwiseConv3d.from_conv expects a depthwise nn.Conv3d (groups == in_channels == out_channels), "
                f"got in_channels={conv.in_channels}, out_channels={conv.out_channels}, groups={conv.groups}"
            )
        # Built on the meta device: its own parameters are replaced by conv's at once.
        module = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     conv.groups, conv.bias is not None, conv.padding_mode, device="meta",
                     activation=getattr(conv, "activation", None))
        module.weight = conv.weight
        module.bias = conv.bias
        return module.train(conv.training)

    def forward(self, input: Tensor) -> Tensor:
        input, padding = self._pad_outside(input)
        return ops.depthwise_conv3d(input, self.weight, self.bias, self.stride, padding, self.dilation,
                                    self.activation)

    def _pad_outside(self, input: Tensor):
        """input padded where the op cannot pad itself (as nn.Conv3d does), and the padding left to the op.

        The op pads with zeros, evenly on both sides; other padding modes and the uneven padding
        of some ``padding="same"`` kernels are applied here with ``F.pad``.
        """
        pads = self._reversed_padding_repeated_twice
        uneven = any(pads[i] != pads[i + 1] for i in range(0, len(pads), 2))
        if self.padding_mode == "zeros" and not uneven:
            return input, self.padding
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.pad(input, pads, mode=mode), 0

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.activation is None else f"{text}, activation={self.activation!r}"


def as_vid3d_conv(module: nn.Module) -> nn.Module:
    """A DepthwiseConv3d sharing the parameters of ``module`` if it is a plain depthwise nn.Conv3d, else ``module``.

    Only ``nn.Conv3d`` itself is taken, not its subclasses, whose forward may differ. Hooks on
    ``module`` are not carried over: callers leave modules with hooks alone (see :func:`has_hooks`).
    """
    if type(module) is nn.Conv3d and is_depthwise(module):
        return DepthwiseConv3d.from_conv(module)
    return module
