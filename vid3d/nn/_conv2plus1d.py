"""Conv2Plus1d: a (2+1)D convolution module on vid3d's fused op, laid out like torchvision's ``Conv2Plus1D``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from .. import ops
from ._arguments import check_choice, check_dtype, check_flag, conv_geometry, count, groups_of
from ._batch_norm import fold_batch_norm, is_foldable
from ._depthwise import DepthwiseConv3d, as_vid3d_conv, has_hooks


@dataclass(frozen=True)
class Pair:
    """A (2+1)D convolution found in a sequence of modules, as ``ops.conv2plus1d`` takes it."""

    spatial: nn.Conv3d
    norm: nn.BatchNorm3d | None
    mid_activation: str | None
    temporal: nn.Conv3d
    stride: tuple[int, int, int]
    padding: tuple[int, int, int]
    dilation: tuple[int, int, int]


def _is_plain_conv(module: nn.Module) -> bool:
    """An nn.Conv3d (or DepthwiseConv3d) whose padding ops.conv2plus1d can apply: zeros, as numbers."""
    return (
        type(module) in (nn.Conv3d, DepthwiseConv3d)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def parse_pair(children: Sequence[nn.Module]) -> Pair | None:
    """The (2+1)D convolution that ``children`` compute when run in order, or None if they are not one.

    The form ``ops.conv2plus1d`` computes: a spatial conv with kernel ``(1, kh, kw)`` (stride,
    padding and dilation 1, 0 and 1 in time), then optionally a BatchNorm3d, then optionally a
    ReLU, then a temporal conv with kernel ``(kt, 1, 1)`` (stride, padding and dilation 1, 0 and
    1 in space). ``nn.Identity`` children are skipped; a DepthwiseConv3d spatial conv with
    ``activation="relu"`` counts as the ReLU. Children with forward hooks are not taken: the
    fused op would not run them.
    """
    if len(children) < 2 or any(has_hooks(child) for child in children):
        return None
    spatial, *middle, temporal = children
    if not (_is_plain_conv(spatial) and _is_plain_conv(temporal)):
        return None
    if not (spatial.kernel_size[0] == spatial.stride[0] == spatial.dilation[0] == 1 and spatial.padding[0] == 0):
        return None
    if not (temporal.kernel_size[1:] == temporal.stride[1:] == temporal.dilation[1:] == (1, 1)
            and temporal.padding[1:] == (0, 0)):
        return None
    if temporal.in_channels != spatial.out_channels or getattr(temporal, "activation", None) is not None:
        return None
    mid_activation = getattr(spatial, "activation", None)
    norm = None
    for module in middle:
        if type(module) is nn.Identity:
            continue
        if type(module) is nn.BatchNorm3d and norm is None and mid_activation is None:
            norm = module  # a BatchNorm after the activation would not be this form
        elif type(module) is nn.ReLU and mid_activation is None:
            mid_activation = "relu"
        else:
            return None
    if mid_activation not in (None, "relu") or (norm is not None and norm.num_features != spatial.out_channels):
        return None
    return Pair(
        spatial, norm, mid_activation, temporal,
        stride=(temporal.stride[0], *spatial.stride[1:]),
        padding=(temporal.padding[0], *spatial.padding[1:]),
        dilation=(temporal.dilation[0], *spatial.dilation[1:]),
    )


def runs_children_in_order(module: nn.Module) -> bool:
    """Whether ``module`` computes ``nn.Sequential``'s function: each child's output is the next child's input."""
    return isinstance(module, nn.Sequential) and type(module).forward in (nn.Sequential.forward, Conv2Plus1d.forward)


class Conv2Plus1d(nn.Sequential):
    """(2+1)D convolution: spatial ``(1, kh, kw)`` conv, optional BatchNorm3d and ReLU, temporal ``(kt, 1, 1)`` conv.

    An ``nn.Sequential`` of those children, so its ``state_dict`` is torchvision's
    ``Conv2Plus1D``'s: with ``norm=True, mid_activation="relu"`` the keys are ``0.*`` (spatial),
    ``1.*`` (BatchNorm3d), ``3.*`` (temporal). A depthwise stage is a :class:`DepthwiseConv3d`.
    The forward runs the fused :func:`vid3d.ops.conv2plus1d` (on the backend chosen with
    :func:`vid3d.backend`) whenever the children allow it: no BatchNorm, or a BatchNorm in eval
    mode with running statistics, folded into the spatial weights on the fly. Otherwise (a
    BatchNorm in training mode) it runs the children one after the other.

    Args:
        in_channels, out_channels: channels of the input and of the output.
        kernel_size, stride, dilation: an int or ``(t, h, w)``; the spatial conv takes the
            ``h, w`` parts, the temporal conv the ``t`` part.
        padding: an int or ``(t, h, w)``, split the same way, or ``"same"``/``"valid"``.
        mid_channels: channels between the two convs (default ``out_channels``).
        spatial_groups, temporal_groups: the group counts of the two convs (``in_channels`` /
            ``mid_channels`` for depthwise stages; 1 for dense ones).
        bias: whether both convs have a bias.
        norm: put a BatchNorm3d over the middle channels between the convs.
        mid_activation: None or ``"relu"``, between the convs (after the BatchNorm).
        device, dtype: of the parameters.

    Invalid arguments (sizes below 1, group counts that do not divide the channels, non-bool
    flags, ...) raise a ValueError or TypeError naming the argument before any layer is built.

    Example::

        block = vid3d.nn.Conv2Plus1d(64, 64, 3, padding=1, mid_channels=144, bias=False, norm=True,
                                     mid_activation="relu")
        block.load_state_dict(torchvision_conv2plus1d.state_dict())
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        mid_channels: int | None = None,
        spatial_groups: int = 1,
        temporal_groups: int = 1,
        bias: bool = True,
        norm: bool = False,
        mid_activation: str | None = None,
        device=None,
        dtype=None,
    ):
        owner = type(self).__name__
        in_channels, out_channels = count(owner, "in_channels", in_channels), count(owner, "out_channels", out_channels)
        mid_channels = out_channels if mid_channels is None else count(owner, "mid_channels", mid_channels)
        spatial_groups = groups_of(owner, "spatial_groups", spatial_groups, in_channels=in_channels,
                                   mid_channels=mid_channels)
        temporal_groups = groups_of(owner, "temporal_groups", temporal_groups, mid_channels=mid_channels,
                                    out_channels=out_channels)
        (kt, kh, kw), (st, sh, sw), padding, (dt, dh, dw) = conv_geometry(owner, kernel_size, stride, padding,
                                                                          dilation)
        if isinstance(padding, str):
            spatial_padding = temporal_padding = padding
        else:
            pt, ph, pw = padding
            spatial_padding, temporal_padding = (0, ph, pw), (pt, 0, 0)
        check_flag(owner, "bias", bias)
        check_flag(owner, "norm", norm)
        check_choice(owner, "mid_activation", mid_activation, (None, "relu"))
        check_dtype(owner, dtype)
        factory = dict(device=device, dtype=dtype)
        layers = [as_vid3d_conv(nn.Conv3d(in_channels, mid_channels, (1, kh, kw), (1, sh, sw), spatial_padding,
                                          (1, dh, dw), spatial_groups, bias, **factory))]
        if norm:
            layers.append(nn.BatchNorm3d(mid_channels, **factory))
        if mid_activation == "relu":
            layers.append(nn.ReLU(inplace=True))
        layers.append(as_vid3d_conv(nn.Conv3d(mid_channels, out_channels, (kt, 1, 1), (st, 1, 1), temporal_padding,
                                              (dt, 1, 1), temporal_groups, bias, **factory)))
        super().__init__(*layers)

    @classmethod
    def from_sequential(cls, sequential: nn.Sequential) -> Conv2Plus1d:
        """A Conv2Plus1d made of the children of ``sequential`` (a (2+1)D pair), under the same names.

        The ``state_dict`` keys stay those of ``sequential`` (e.g. torchvision's ``Conv2Plus1D``:
        ``0.weight, 1.*, 3.weight``) and the parameters are shared, not copied; depthwise
        ``nn.Conv3d`` children become :class:`DepthwiseConv3d`. The children must have the form
        :func:`parse_pair` describes: spatial conv, optional BatchNorm3d, optional ReLU, temporal conv.
        """
        if not runs_children_in_order(sequential):
            raise TypeError(
                "Conv2Plus1d.from_sequential expects an nn.Sequential that does not override forward, got "
                f"{type(sequential).__name__}"
            )
        children = sequential._modules  # not named_children(): it skips a child registered twice
        if parse_pair(list(children.values())) is None:
            found = ", ".join(type(child).__name__ for child in children.values())
            raise ValueError(
                "Conv2Plus1d.from_sequential expects children Conv3d (1, kh, kw), optional BatchNorm3d, optional "
                f"ReLU, Conv3d (kt, 1, 1) with zero padding given as numbers and no hooks, got [{found}]"
            )
        children = OrderedDict((name, as_vid3d_conv(child)) for name, child in children.items())
        module = cls.__new__(cls)
        nn.Sequential.__init__(module, children)
        return module.train(sequential.training)

    @property
    def spatial(self) -> nn.Conv3d:
        """The spatial ``(1, kh, kw)`` convolution (the first child)."""
        return self[0]

    @property
    def temporal(self) -> nn.Conv3d:
        """The temporal ``(kt, 1, 1)`` convolution (the last child)."""
        return self[-1]

    def forward(self, input: Tensor) -> Tensor:
        pair = parse_pair(list(self))
        if pair is None or (pair.norm is not None and not is_foldable(pair.norm, pair.spatial.out_channels)):
            return super().forward(input)
        spatial_weight, spatial_bias = pair.spatial.weight, pair.spatial.bias
        if pair.norm is not None:
            spatial_weight, spatial_bias = fold_batch_norm(spatial_weight, spatial_bias, pair.norm)
        return ops.conv2plus1d(input, spatial_weight, pair.temporal.weight, spatial_bias, pair.temporal.bias,
                               pair.stride, pair.padding, pair.dilation, pair.mid_activation)
