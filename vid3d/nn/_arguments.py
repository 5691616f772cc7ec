"""Checks of the modules' constructor arguments, run before any layer is built.

nn.Conv3d checks few of its own: it builds a module from a kernel size 0, a stride 0 or a 2-tuple
kernel, takes any truthy ``bias`` for True, and fails deep inside PyTorch on other values. These
checks raise TypeError (wrong kind of value) or ValueError (wrong value) with a message that names
the module, the argument, what was expected and what was given. Integers are what the ops take:
ints, numpy integers, 0-d integer tensors, never bools.
"""

from __future__ import annotations

import torch

from ..ops._validation import FLOAT_DTYPES, as_int, as_triple


def _choices(choices) -> str:
    """``None, 'relu' or 'relu6'``."""
    return ", ".join(map(repr, choices[:-1])) + f" or {choices[-1]!r}"


def check_choice(owner: str, name: str, value, choices) -> None:
    # Not `value in choices`: that compares an array with each choice, and raises.
    if not (value is None and None in choices or isinstance(value, str) and value in choices):
        raise ValueError(f"{owner}: {name} must be {_choices(choices)}, got {value!r}")


def check_flag(owner: str, name: str, value) -> None:
    # nn.Conv3d would take any truthy value, "no" and 0.5 included, as True.
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")


def check_dtype(owner: str, dtype) -> None:
    """None (the default dtype) or a dtype the ops compute in."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype in FLOAT_DTYPES):
        raise TypeError(f"{owner}: dtype must be None, float32, float64, float16 or bfloat16, got {dtype!r}")


def count(owner: str, name: str, value) -> int:
    """value as an int of at least 1 (channels, groups)."""
    number = as_int(value)
    if number is None:
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if number < 1:
        raise ValueError(f"{owner}: {name} must be at least 1, got {number}")
    return number


def groups_of(owner: str, name: str, value, **channels: int) -> int:
    """value as a group count: an int of at least 1 that divides each of ``channels`` (given by name)."""
    groups = count(owner, name, value)
    if any(c % groups for c in channels.values()):
        given = ", ".join(f"{k}={c}" for k, c in channels.items())
        raise ValueError(f"{owner}: {name} must divide {' and '.join(channels)}, got {name}={groups}, {given}")
    return groups


def triple(owner: str, name: str, value, minimum: int) -> tuple[int, int, int]:
    """An int or a sequence of 3 ints (t, h, w) as a 3-tuple, each at least ``minimum``."""
    values = as_triple(value)
    if values is None:
        raise TypeError(f"{owner}: {name} must be an int or a sequence of 3 ints (t, h, w), got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{owner}: every {name} must be at least {minimum}, got {value!r}")
    return values


def conv_geometry(owner: str, kernel_size, stride, padding, dilation):
    """kernel_size, stride, padding, dilation as 3-tuples; padding may also be "valid", or "same" at stride 1."""
    kernel_size = triple(owner, "kernel_size", kernel_size, 1)
    stride = triple(owner, "stride", stride, 1)
    dilation = triple(owner, "dilation", dilation, 1)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{owner}: padding must be an int, 3 ints, 'same' or 'valid', got {padding!r}")
        if padding == "same" and stride != (1, 1, 1):
            raise ValueError(f"{owner}: padding='same' needs stride 1, got stride={stride}")
    else:
        padding = triple(owner, "padding", padding, 0)
    return kernel_size, stride, padding, dilation
