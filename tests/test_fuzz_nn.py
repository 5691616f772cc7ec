"""Property-based tests (Hypothesis) of vid3d.nn's modules against the PyTorch layers they replace,
on configurations and inputs nobody picked by hand.

A drawn DepthwiseConv3d, ChannelShuffle3d or Conv2Plus1d has random hyper-parameters: channels
from 1 (odd counts included), kernel sizes 1-5, strides 1-3, paddings 0..k, "valid" or "same"
(uneven "same" too, which the modules pad outside the ops), dilations 1-3, bias on or off; the
padding mode and fused activation of a DepthwiseConv3d; depthwise, grouped or dense stages, with
or without the BatchNorm and the ReLU between them, of a Conv2Plus1d. It runs in train or eval
mode with its parameters in NCDHW or channels_last_3d, on an input of random N (0 included), T,
H, W (odd sizes included; any rank from 3 for the shuffle) and layout (test_fuzz.py's: NCDHW,
channels_last_3d, strided and permuted views). On each vid3d backend usable here it must compute
what the plain torch.nn model computes in float64 (nn.Conv3d(groups=C); nn.ChannelShuffle;
torchvision's Conv3d, BatchNorm3d, ReLU, Conv3d): the output, the gradients of the input and of
every parameter, and the BatchNorm's running statistics.

The constructors are fuzzed too: arguments replaced by anything (test_bad_input.py's odd values)
must build the module nn.Conv3d builds from their int values, or raise a ValueError or TypeError
that names the module and the argument; never fail otherwise or build something else.

Profiles as in test_fuzz.py: "ci", the default, and "long" (``make fuzz``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import vid3d
from vid3d.nn import ChannelShuffle3d, Conv2Plus1d, DepthwiseConv3d

from _helpers import (
    assert_close, assert_same_function, backend_params, conv2plus1d_pair, depthwise_pair, one_intra_op_thread, randn,
    triple,
)
from test_bad_input import ARGUMENT_VALUES, ODD_VALUES, triples
from test_fuzz import (
    FLOAT_DTYPES, Limits, Target, as_argument, batches, conv2plus1d_channels, geometries, layouts, view_as,
)

one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)
# nn.Conv3d's, for the uneven "same" paddings drawn on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATION_LAYERS = {None: nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6}


# The convolution modules' share of the ops' examples: each of theirs runs two models (cheap shuffles get all).
CONV_SHARE = 0.5


# ---------------------------------------------------------------- forward and backward against torch.nn


@dataclass(frozen=True)
class Run:
    """How a drawn module is run: its mode, its parameters' layout, and its input (shape, layout, seed of
    the values; the seed also initialises the parameters)."""

    training: bool
    channels_last_parameters: bool
    input_shape: tuple[int, ...]
    input_layout: object
    seed: int

    def input(self, device) -> torch.Tensor:
        return view_as(randn(self.input_shape, torch.float64, self.seed, device), self.input_layout)


@st.composite
def runs(draw, input_shape):
    return Run(draw(st.booleans()), draw(st.booleans()), tuple(input_shape), draw(layouts(len(input_shape))),
               draw(st.integers(0, 2**20)))


def check(target: Target, module: nn.Module, reference: nn.Module, run: Run) -> None:
    """module on target against reference (the same float64 parameters): output, every gradient, buffers."""
    for model in (module, reference):
        model.to(target.device).train(run.training)
    if run.channels_last_parameters:
        module.to(memory_format=torch.channels_last_3d)
    batch_statistics = run.training and any(isinstance(layer, nn.BatchNorm3d) for layer in reference.modules())
    with vid3d.backend(target.backend):
        assert_same_function(module, reference, run.input(target.device), gradients_may_vanish=batch_statistics)
    for name, buffer in reference.named_buffers():  # the BatchNorm's running statistics after a training step
        assert_close(module.get_buffer(name), buffer, torch.float64, name)


def fuzz(backend: str, device: str, examples, check_example, share: float = 1.0) -> None:
    """check_example(target, *example) for examples drawn from examples(limits): the target's limits for
    the ops with kernel sizes 1-5, and ``share`` of the ops' number of examples."""
    target = Target(backend, device)
    limits = replace(target.limits, kernel=5, share=target.limits.share * share)

    @settings(max_examples=limits.examples())
    @given(examples(limits))
    def holds(example):
        check_example(target, *example)

    holds()


def _largest_pads(kernel, geometry) -> tuple[int, int, int]:
    """The larger of the two pads of T, H and W (uneven "same" puts the extra one at the end)."""
    if geometry["padding"] == "valid":
        return (0, 0, 0)
    if geometry["padding"] == "same":
        return tuple((d * (k - 1) + 1) // 2 for k, d in zip(kernel, triple(geometry["dilation"])))
    return triple(geometry["padding"])


def padding_modes(sizes, pads):
    """The padding modes that can pad these sizes (reflect needs pads below them, circular no larger)."""
    fitting = [
        mode for mode, fits in (("reflect", all(p < s for p, s in zip(pads, sizes))),
                                ("circular", all(p <= s for p, s in zip(pads, sizes))))
        if fits
    ]
    return st.sampled_from(["zeros", "zeros", "replicate", *fitting])


@st.composite
def depthwise_examples(draw, limits: Limits):
    """((channels, nn.Conv3d keyword arguments, activation), run)."""
    sizes, kernel, geometry = draw(geometries(limits, uneven_same=True))
    channels = draw(st.integers(1, limits.channels))
    kwargs = dict(kernel_size=as_argument(draw, kernel), **geometry, bias=draw(st.booleans()),
                  padding_mode=draw(padding_modes(sizes, _largest_pads(kernel, geometry))))
    activation = draw(st.sampled_from(list(ACTIVATION_LAYERS)))
    return (channels, kwargs, activation), draw(runs((draw(batches(limits)), channels, *sizes)))


@st.composite
def conv2plus1d_examples(draw, limits: Limits):
    """(conv2plus1d_pair's case, run)."""
    sizes, kernel, geometry = draw(geometries(limits, uneven_same=True))
    c_in, spatial_groups, c_mid, temporal_groups, c_out = draw(conv2plus1d_channels(limits))
    kwargs = dict(spatial_groups=spatial_groups, temporal_groups=temporal_groups, bias=draw(st.booleans()),
                  norm=draw(st.booleans()), mid_activation=draw(st.sampled_from([None, "relu"])))
    if c_mid != c_out or draw(st.booleans()):  # else left to its default, out_channels
        kwargs["mid_channels"] = c_mid
    case = (c_in, c_out, as_argument(draw, kernel), geometry["stride"], geometry["padding"], geometry["dilation"],
            kwargs)
    return case, draw(runs((draw(batches(limits)), c_in, *sizes)))


@st.composite
def shuffle_examples(draw, limits: Limits):
    """(groups, run): 5-D input runs vid3d's op, other ranks nn.ChannelShuffle's. The group count and
    the group size are drawn apart, so that mixing them up shows."""
    rank = draw(st.sampled_from([5, 5, 5, 3, 4, 6]))
    groups, group_size = draw(st.integers(1, limits.channels)), draw(st.integers(1, limits.channels))
    channels = groups * group_size
    sizes = draw(st.lists(st.integers(1, limits.extra + 1), min_size=rank - 2, max_size=rank - 2))
    return groups, draw(runs((draw(batches(limits)), channels, *sizes)))


def check_depthwise_example(target, arguments, run):
    channels, kwargs, activation = arguments
    module, conv = depthwise_pair(channels, kwargs, run.seed)
    module.activation = activation
    check(target, nn.Sequential(module), nn.Sequential(conv, ACTIVATION_LAYERS[activation]()), run)


def check_conv2plus1d_example(target, case, run):
    module, reference = conv2plus1d_pair(case, run.seed)
    if run.training and case[-1]["norm"]:
        mid = reference[0](run.input("cpu"))  # what the BatchNorm normalises
        if mid.shape[0] * mid.shape[2:].numel() == 1:
            # A training BatchNorm refuses one value per channel (nn.BatchNorm3d raises): so must the module.
            with vid3d.backend(target.backend), pytest.raises(ValueError, match="more than 1 value per channel"):
                module.to(target.device)(run.input(target.device))
            return
    check(target, module, reference, run)


def check_shuffle_example(target, groups, run):
    check(target, ChannelShuffle3d(groups), nn.ChannelShuffle(groups), run)


@pytest.mark.parametrize("backend, device", backend_params())
def test_depthwise_conv3d_matches_conv3d(backend, device):
    fuzz(backend, device, depthwise_examples, check_depthwise_example, CONV_SHARE)


@pytest.mark.parametrize("backend, device", backend_params())
def test_conv2plus1d_matches_torchvision_layers(backend, device):
    fuzz(backend, device, conv2plus1d_examples, check_conv2plus1d_example, CONV_SHARE)


@pytest.mark.parametrize("backend, device", backend_params())
def test_channel_shuffle3d_matches_channel_shuffle(backend, device):
    fuzz(backend, device, shuffle_examples, check_shuffle_example)


# ---------------------------------------------------------------- constructor arguments

INTEGERS = st.one_of(st.integers(-2, 6), st.sampled_from(
    ODD_VALUES + [np.int64(3), torch.tensor(2, dtype=torch.int32), torch.tensor(True), 2.0]
))
FLAGS = st.sampled_from([True, False, 0, 1, None, "no"])
CONSTRUCTOR_VALUES = {
    **dict.fromkeys(["in_channels", "out_channels", "spatial_groups", "temporal_groups"], INTEGERS),
    **dict.fromkeys(["mid_channels", "groups"], st.one_of(st.none(), INTEGERS)),
    **dict.fromkeys(["kernel_size", "stride", "padding", "dilation"], triples()),
    "bias": FLAGS,
    "norm": FLAGS,
    "padding_mode": st.sampled_from([*PADDING_MODES, "Zeros", "constant", "", None, 0]),
    "activation": ARGUMENT_VALUES["activation"],
    "mid_activation": ARGUMENT_VALUES["mid_activation"],
    "dtype": st.sampled_from([None, *FLOAT_DTYPES, torch.int64, torch.bool, torch.complex64, "float32", float]),
}
VALID_ARGUMENTS = {
    DepthwiseConv3d: dict(in_channels=4, out_channels=4, kernel_size=3),
    Conv2Plus1d: dict(in_channels=4, out_channels=4, kernel_size=3),
    ChannelShuffle3d: dict(groups=2),
}


@st.composite
def constructor_overrides(draw, module_class):
    """One to three of module_class's arguments, replaced by anything (valid values included)."""
    names = sorted(CONSTRUCTOR_VALUES.keys() & inspect.signature(module_class).parameters.keys())
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    return {name: draw(CONSTRUCTOR_VALUES[name]) for name in chosen}


# The specification the constructors are checked against, written out independently of them.


def _integer(value):
    """The int a count or size argument stands for: an int, a numpy integer or a 0-d integer tensor,
    never a bool (None for anything else)."""
    if isinstance(value, torch.Tensor):
        integral = not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
        return int(value) if integral and value.dim() == 0 else None
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else None


def _at_least(minimum, value):
    number = _integer(value)
    return number if number is not None and number >= minimum else None


def _sizes(value, minimum):
    """(t, h, w) of an integer or a list or tuple of 3, each at least minimum (None if it is not one)."""
    values = [value] * 3 if _integer(value) is not None else value
    if not (isinstance(values, (list, tuple)) and len(values) == 3):
        return None
    sizes = tuple(_at_least(minimum, v) for v in values)
    return None if None in sizes else sizes


def _geometry(args):
    """(kernel_size, stride, padding, dilation) as ints, or None where one is invalid."""
    kernel, stride, dilation = (_sizes(args.get(name, 1), 1) for name in ("kernel_size", "stride", "dilation"))
    padding = args.get("padding", 0)
    if isinstance(padding, str):
        padding = padding if padding == "valid" or padding == "same" and stride == (1, 1, 1) else None
    else:
        padding = _sizes(padding, 0)
    geometry = (kernel, stride, padding, dilation)
    return None if None in geometry else geometry


def _one_of(value, choices) -> bool:
    return value is None and None in choices or isinstance(value, str) and value in choices


def _options_valid(args, flags, choices) -> bool:
    """The flags are bools, the named choices among theirs (the first is the default), the dtype None
    or one the ops take."""
    dtype = args.get("dtype")
    return (all(isinstance(args.get(flag, True), bool) for flag in flags)
            and all(_one_of(args.get(name, allowed[0]), allowed) for name, allowed in choices.items())
            and (dtype is None or isinstance(dtype, torch.dtype) and dtype in FLOAT_DTYPES))


def expected_depthwise(args):
    """The nn.Conv3d DepthwiseConv3d(**args) must be, or None where args are invalid."""
    channels, geometry = _at_least(1, args["in_channels"]), _geometry(args)
    groups = args.get("groups")
    valid = (channels is not None and _integer(args["out_channels"]) == channels
             and (groups is None or _integer(groups) == channels) and geometry is not None
             and _options_valid(args, ["bias"], {"padding_mode": PADDING_MODES,
                                                 "activation": tuple(ACTIVATION_LAYERS)}))
    if not valid:
        return None
    return nn.Conv3d(channels, channels, *geometry, groups=channels, bias=args.get("bias", True),
                     padding_mode=args.get("padding_mode", "zeros"), dtype=args.get("dtype"))


def expected_conv2plus1d(args):
    """The torchvision-style layers Conv2Plus1d(**args) must be, or None where args are invalid."""
    c_in, c_out = _at_least(1, args["in_channels"]), _at_least(1, args["out_channels"])
    c_mid = c_out if args.get("mid_channels") is None else _at_least(1, args["mid_channels"])
    spatial_groups, temporal_groups = (_at_least(1, args.get(name, 1)) for name in ("spatial_groups",
                                                                                   "temporal_groups"))
    geometry = _geometry(args)
    valid = (None not in (c_in, c_mid, c_out, spatial_groups, temporal_groups, geometry)
             and c_in % spatial_groups == c_mid % spatial_groups == 0
             and c_mid % temporal_groups == c_out % temporal_groups == 0
             and _options_valid(args, ["bias", "norm"], {"mid_activation": (None, "relu")}))
    if not valid:
        return None
    kwargs = dict(mid_channels=c_mid, spatial_groups=spatial_groups, temporal_groups=temporal_groups,
                  bias=args.get("bias", True), norm=args.get("norm", False), mid_activation=args.get("mid_activation"))
    _, reference = conv2plus1d_pair((c_in, c_out, *geometry, kwargs))
    return reference.to(args.get("dtype") or torch.get_default_dtype())


def expected_shuffle(args):
    """The nn.ChannelShuffle ChannelShuffle3d(**args) must be, or None where args are invalid."""
    groups = _at_least(1, args["groups"])
    return None if groups is None else nn.ChannelShuffle(groups)


EXPECTED = {DepthwiseConv3d: expected_depthwise, Conv2Plus1d: expected_conv2plus1d, ChannelShuffle3d: expected_shuffle}
LAYER_KINDS = (nn.Conv3d, nn.BatchNorm3d, nn.ReLU, nn.ChannelShuffle)


def structure(model: nn.Module):
    """Each layer's kind and hyper-parameters as PyTorch's layer prints them (a ReLU's in-place flag
    aside), and each state_dict entry's shape and dtype."""
    layers = [(kind.__name__, "" if kind is nn.ReLU else kind.extra_repr(layer))
              for layer in model.modules() for kind in LAYER_KINDS if isinstance(layer, kind)]
    return layers, {name: (tuple(value.shape), value.dtype) for name, value in model.state_dict().items()}


def check_constructor(module_class, overrides) -> None:
    """module_class built from valid arguments with overrides is what the specification says, or
    refuses them with a clear error where it says they are invalid."""
    args = {**VALID_ARGUMENTS[module_class], **overrides}
    expected = EXPECTED[module_class](args)
    owner = module_class.__name__
    try:
        module = module_class(**args)
    except (ValueError, TypeError) as error:
        assert expected is None, f"valid arguments refused: {type(error).__name__}: {error}"
        message = str(error)
        assert message.startswith(f"{owner}: ") and any(name in message for name in overrides), (
            f"unclear error: {type(error).__name__}: {message}"
        )
        return
    assert expected is not None, f"invalid arguments accepted: {module!r}"
    assert structure(module) == structure(expected)
    assert getattr(module, "activation", None) == args.get("activation")


@pytest.mark.parametrize("module_class", list(VALID_ARGUMENTS), ids=lambda module_class: module_class.__name__)
def test_fuzzed_constructor_arguments(module_class):
    @given(constructor_overrides(module_class))
    def builds_or_refuses(overrides):
        check_constructor(module_class, overrides)

    builds_or_refuses()


# ---------------------------------------------------------------- examples that once failed

# Each was accepted, or refused without a clear error, before the modules checked their arguments.
CONSTRUCTOR_REGRESSIONS = [
    pytest.param(DepthwiseConv3d, dict(kernel_size=(3, 3)), id="depthwise-2-tuple-kernel-built-a-4d-weight"),
    pytest.param(DepthwiseConv3d, dict(stride=0), id="depthwise-stride-0-built"),
    pytest.param(DepthwiseConv3d, dict(bias="no"), id="depthwise-bias-no-built-a-bias"),
    pytest.param(DepthwiseConv3d, dict(dilation=torch.tensor(1)), id="depthwise-tensor-dilation-iteration-error"),
    pytest.param(Conv2Plus1d, dict(in_channels=-1), id="conv2plus1d-negative-channels-runtime-error"),
    pytest.param(Conv2Plus1d, dict(mid_channels="x"), id="conv2plus1d-string-channels-formatting-error"),
    pytest.param(Conv2Plus1d, dict(spatial_groups=None), id="conv2plus1d-groups-none-comparison-error"),
    pytest.param(Conv2Plus1d, dict(kernel_size=(True, 3, 3)), id="conv2plus1d-bool-kernel-size-built"),
    pytest.param(Conv2Plus1d, dict(dtype=torch.int64), id="conv2plus1d-integer-dtype-runtime-error"),
    pytest.param(ChannelShuffle3d, dict(groups=np.int64(4)), id="shuffle-numpy-groups-refused"),
]


@pytest.mark.parametrize("module_class, overrides", CONSTRUCTOR_REGRESSIONS)
def test_constructor_regressions(module_class, overrides):
    check_constructor(module_class, overrides)
