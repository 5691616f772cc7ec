"""vid3d.convert: swap vid3d's modules into an existing model, keeping its function and state_dict."""

from __future__ import annotations

from torch import nn

from .nn import ChannelShuffle3d, Conv2Plus1d
from .nn._conv2plus1d import parse_pair, runs_children_in_order
from .nn._depthwise import as_vid3d_conv, has_hooks


def _replacement(module: nn.Module) -> nn.Module | None:
    """The vid3d module that computes what ``module`` computes, or None if there is none.

    Only the exact PyTorch classes are taken (``nn.Conv3d``, ``nn.ChannelShuffle``, a plain
    ``nn.Sequential`` or a subclass without its own forward, as torchvision's ``Conv2Plus1D``):
    a subclass may compute something else. A module with forward hooks is left alone too: its
    replacement would not run them.
    """
    if has_hooks(module):
        return None
    if type(module) is nn.ChannelShuffle:
        return ChannelShuffle3d(module.groups)
    if runs_children_in_order(module) and not isinstance(module, Conv2Plus1d) and parse_pair(list(module)) is not None:
        return Conv2Plus1d.from_sequential(module)
    converted = as_vid3d_conv(module)
    return None if converted is module else converted


def convert(model: nn.Module, verbose: bool = False) -> nn.Module:
    """Swap vid3d's modules into ``model`` in place, wherever they compute the same function.

    - ``nn.Conv3d`` with ``groups == in_channels == out_channels`` (depthwise, e.g. the
      3x3x3 ``conv_b`` of X3D and CSN bottlenecks, X3D's (5, 1, 1) ``conv_xy``) becomes
      :class:`vid3d.nn.DepthwiseConv3d`;
    - ``nn.ChannelShuffle`` becomes :class:`vid3d.nn.ChannelShuffle3d`;
    - an ``nn.Sequential`` (or a subclass without its own forward, as torchvision's
      ``Conv2Plus1D``) whose children are a (2+1)D pair (Conv3d ``(1, kh, kw)``, optional
      BatchNorm3d, optional ReLU, Conv3d ``(kt, 1, 1)``) becomes :class:`vid3d.nn.Conv2Plus1d`
      made of the same children under the same names.

    The new modules share the old ones' parameters and buffers (nothing is copied), so the
    ``state_dict`` keeps its keys and shapes and checkpoints load before or after. A module
    shared by several parents is replaced by one module, still shared. Modules with forward hooks
    or pre-hooks (e.g. old-style ``weight_norm``) are left alone, as are subclasses of the layers
    above (their forward may differ).

    Args:
        model: the model to convert (changed in place).
        verbose: print a table of what was swapped (name, from, to).

    Returns:
        ``model`` (or, if ``model`` itself is one of the layers above, its replacement).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"vid3d.convert expects an nn.Module, got {type(model).__name__}")
    swaps: list[tuple[str, str, str]] = []
    replacements: dict[int, nn.Module] = {}
    root = _replacement(model)
    if root is not None:
        swaps.append(("(model)", type(model).__name__, type(root).__name__))
        model = root
    else:
        _convert_children(model, "", swaps, replacements, visited=set())
    if verbose:
        print(_table(swaps))
    return model


def _convert_children(parent: nn.Module, prefix: str, swaps, replacements: dict, visited: set) -> None:
    # Not named_children(): it skips a module registered a second time, which must be replaced there too.
    for name, child in list(parent._modules.items()):
        if child is None:
            continue
        path = f"{prefix}{name}"
        if id(child) in replacements:  # a shared module, already replaced under another name
            setattr(parent, name, replacements[id(child)])
            continue
        new = _replacement(child)
        if new is None:
            if id(child) not in visited:
                visited.add(id(child))
                _convert_children(child, f"{path}.", swaps, replacements, visited)
            continue
        replacements[id(child)] = new
        swaps.append((path, type(child).__name__, type(new).__name__))
        setattr(parent, name, new)


def _table(swaps: list[tuple[str, str, str]]) -> str:
    rows = [("name", "from", "to"), *swaps]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"vid3d.convert: {len(swaps)} module(s) swapped"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
