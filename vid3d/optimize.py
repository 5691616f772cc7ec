"""vid3d.optimize: an inference copy of a model with BatchNorm folded and activations fused."""

from __future__ import annotations

import copy
import math
import warnings
from collections import Counter
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from . import ops
from .convert import convert as convert_model
from .nn import ChannelShuffle3d, Conv2Plus1d, DepthwiseConv3d
from .nn._batch_norm import fold_batch_norm, is_foldable
from .nn._conv2plus1d import runs_children_in_order
from .nn._depthwise import has_hooks

_FUSABLE_ACTIVATIONS = {nn.ReLU: "relu", nn.ReLU6: "relu6"}


def optimize(model: nn.Module, *, convert: bool = True) -> nn.Module:
    """An inference copy of ``model`` that computes the same outputs with fewer kernel launches.

    ``model`` must be in eval mode (every submodule): a training-mode BatchNorm normalises with
    the statistics of each batch (and updates its running ones), which no folded weights
    reproduce, so a training-mode model is refused with a ``ValueError`` rather than silently
    changed. ``model`` itself is never modified: the result is a deep copy, in which

    1. (``convert=True``) :func:`vid3d.convert` swaps vid3d's modules in;
    2. each ``BatchNorm3d`` (eval mode, running statistics) whose input is the output of a
       ``Conv3d``, :class:`~vid3d.nn.DepthwiseConv3d` or :class:`~vid3d.nn.Conv2Plus1d` alone is
       folded into that convolution's weight and bias (computed in float64) and replaced by
       ``nn.Identity``; inside a ``Conv2Plus1d`` the same holds for the BatchNorm between its
       convs, which leaves the fused (2+1)D op to run;
    3. an ``nn.ReLU``/``nn.ReLU6`` module that alone consumes a ``DepthwiseConv3d``'s output (after
       the folded BatchNorm, if any) becomes the conv's ``activation`` and ``nn.Identity``.

    Which module feeds which is read from a ``torch.fx`` trace of the model. Where the model (or
    part of it) cannot be traced, e.g. control flow on tensor values, only the order of the
    children of ``nn.Sequential`` containers is relied on there, every submodule is tried
    separately, and a warning names the parts that could not be traced. Modules that are
    registered or called more than once, or have forward hooks, are left alone, and so is a
    conv whose output is also used elsewhere. The ``state_dict`` of the result
    differs from the model's (the BatchNorms are gone): save the model, not its optimized copy.

    Args:
        model: an ``nn.Module`` in eval mode.
        convert: run :func:`vid3d.convert` on the copy first (default True).

    Returns:
        The optimized copy, in eval mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"vid3d.optimize expects an nn.Module, got {type(model).__name__}")
    training = [name or "(model)" for name, module in model.named_modules() if module.training]
    if training:
        raise ValueError(
            f"vid3d.optimize is for inference, but {len(training)} module(s) are in training mode (e.g. "
            f"{training[0]!r}): call model.eval() first. In training mode BatchNorm normalises with the "
            "statistics of each batch, which no folded weights reproduce."
        )
    model = copy.deepcopy(model)
    if convert:
        model = convert_model(model)
    untraced: list[str] = []
    successors = _successors(model, "", untraced)
    if untraced:
        warnings.warn(
            f"vid3d.optimize: torch.fx could not trace {len(untraced)} part(s) of the model ({untraced[0]}); there, "
            "only the order of nn.Sequential children was used to find what to fuse",
            stacklevel=2,
        )
    for fusion in _fusions(model, successors):
        fusion.apply(model)
    return model


class _Tracer(torch.fx.Tracer):
    """Traces down to PyTorch's and vid3d's modules and vid3d's ops (which check real tensors)."""

    def __init__(self):
        super().__init__(autowrap_modules=(math, ops))

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, (DepthwiseConv3d, ChannelShuffle3d, Conv2Plus1d)) or super().is_leaf_module(
            module, qualified_name
        )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _successors(module: nn.Module, prefix: str, untraced: list[str]) -> dict[str, str]:
    """Maps the path of a module to the path of the module that alone takes its output as its only input.

    From a trace of ``module`` where one is possible, else from the order of the children of
    ``nn.Sequential`` containers, tracing each submodule on its own.
    """
    if isinstance(module, Conv2Plus1d):  # a leaf to the tracer: its children run in order
        return _sequence_successors(module, prefix)
    try:
        graph = _Tracer().trace(module)
    except Exception as error:  # tracing runs user code, which fails in many ways
        untraced.append(f"{prefix or type(module).__name__}: {type(error).__name__}: {error}".split("\n")[0])
        found = _sequence_successors(module, prefix) if runs_children_in_order(module) else {}
        for name, child in module.named_children():
            if next(child.children(), None) is not None:  # a leaf has nothing inside to fuse
                found.update(_successors(child, _join(prefix, name), untraced))
        return found
    found = _graph_successors(graph, prefix)
    for name, leaf in module.named_modules():
        if isinstance(leaf, Conv2Plus1d):
            found.update(_sequence_successors(leaf, _join(prefix, name)))
    return found


def _sequence_successors(sequence: nn.Module, prefix: str) -> dict[str, str]:
    names = [_join(prefix, name) for name in sequence._modules]  # with any child registered twice
    return dict(zip(names, names[1:]))


def _graph_successors(graph: torch.fx.Graph, prefix: str) -> dict[str, str]:
    """Module calls in ``graph`` whose output goes to exactly one other module call, as its only argument.

    Both modules must be called once in the graph and none of their attributes read directly.
    """
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    read_directly = {node.target.rpartition(".")[0] for node in graph.nodes if node.op == "get_attr"}
    found = {}
    for node in graph.nodes:
        if node.op != "call_module" or len(node.users) != 1:
            continue
        (user,) = node.users
        if (
            user.op == "call_module"
            and user.args == (node,)
            and not user.kwargs
            and calls[node.target] == calls[user.target] == 1
            and not read_directly & {node.target, user.target}
        ):
            found[_join(prefix, node.target)] = _join(prefix, user.target)
    return found


@dataclass
class _Fusion:
    """A convolution, the BatchNorm folded into it (or None) and the activation fused into it (or None)."""

    conv: str
    norm: str | None
    activation: str | None

    def apply(self, model: nn.Module) -> None:
        conv = model.get_submodule(self.conv)
        if self.norm is not None:
            _fold_into(_output_conv(conv), model.get_submodule(self.norm))
            model.set_submodule(self.norm, nn.Identity())
        if self.activation is not None:
            conv.activation = _FUSABLE_ACTIVATIONS[type(model.get_submodule(self.activation))]
            model.set_submodule(self.activation, nn.Identity())


def _output_conv(module: nn.Module) -> nn.Conv3d | None:
    """The Conv3d that produces ``module``'s output, if a following BatchNorm can be folded into it."""
    if isinstance(module, Conv2Plus1d):
        module = module.temporal
    if type(module) in (nn.Conv3d, DepthwiseConv3d) and getattr(module, "activation", None) is None:
        return module
    return None


def _fold_into(conv: nn.Conv3d, norm: nn.BatchNorm3d) -> None:
    dtype = conv.weight.dtype
    with torch.no_grad():
        weight, bias = fold_batch_norm(conv.weight.double(), None if conv.bias is None else conv.bias.double(), norm)
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=conv.weight.requires_grad)


def _fusions(model: nn.Module, successors: dict[str, str]) -> list[_Fusion]:
    """The convolutions with a BatchNorm and/or activation to fuse, read from ``successors``."""
    modules = dict(model.named_modules())
    occurrences = Counter(id(module) for _, module in model.named_modules(remove_duplicate=False))

    def changeable(path: str | None) -> bool:
        """Registered once (changing it changes no other place) and without hooks (which would see the change)."""
        return path in modules and occurrences[id(modules[path])] == 1 and not has_hooks(modules[path])

    fusions = []
    for path, module in modules.items():
        target = _output_conv(module)
        if target is None or not changeable(path):
            continue
        norm = successors.get(path)
        if not (changeable(norm) and is_foldable(modules[norm], target.out_channels)):
            norm = None
        activation = successors.get(norm or path)
        fuses_activation = (
            isinstance(module, DepthwiseConv3d)
            and changeable(activation)
            and type(modules[activation]) in _FUSABLE_ACTIVATIONS
        )
        if norm is not None or fuses_activation:
            fusions.append(_Fusion(path, norm, activation if fuses_activation else None))
    return fusions
