"""Loading the reference repositories' checkpoints into vid3d's models."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import torch
from torch import nn

_DATA_PARALLEL_PREFIX = "module."
# Checkpoints from PyTorch before 0.4.1 have no BatchNorm ``num_batches_tracked``; BatchNorm fills it in.
_OPTIONAL_SUFFIX = ".num_batches_tracked"


class CheckpointError(RuntimeError):
    """A checkpoint does not fit the model; the message lists every missing, unexpected and misshapen key."""


def _read(path_or_dict) -> Mapping:
    if isinstance(path_or_dict, (str, os.PathLike)):
        # weights_only: a checkpoint file can run code when unpickled in full.
        return torch.load(path_or_dict, map_location="cpu", weights_only=True)
    if isinstance(path_or_dict, Mapping):
        return path_or_dict
    raise TypeError(f"path_or_dict must be a path or a dict, got {type(path_or_dict).__name__}")


def extract_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The bare state_dict of a checkpoint: the ``state_dict`` entry of a training checkpoint
    (``{'epoch', 'arch', 'state_dict', 'optimizer', ...}``) or the mapping itself, with the
    ``module.`` prefix of ``nn.DataParallel`` / DDP removed when every key has it."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"the checkpoint's 'state_dict' is a {type(state).__name__}, not a mapping")
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            "the checkpoint is neither a state_dict nor a dict holding one under 'state_dict' "
            f"(entries that are not tensors: {', '.join(map(str, not_tensors[:8]))})"
        )
    if state and all(key.startswith(_DATA_PARALLEL_PREFIX) for key in state):
        state = {key[len(_DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}
    return dict(state)


def _problems(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool) -> tuple[list[str], list[str]]:
    """(errors, warnings) describing how ``state`` does not fit ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    misshapen = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
                 for k in expected if k in state and state[k].shape != expected[k].shape]
    findings = [("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", misshapen)]
    errors, notes = [], []
    for label, items in findings:
        if not items:
            continue
        text = f"{len(items)} {label}:\n  " + "\n  ".join(items)
        # Shapes must always match; missing/unexpected keys only matter when strict.
        (errors if strict or label == "shape mismatches" else notes).append(text)
    return errors, notes


def load_checkpoint(model: nn.Module, path_or_dict, strict: bool = True) -> nn.Module:
    """Load a checkpoint into ``model`` and return ``model``.

    Args:
        model: the model to fill, e.g. ``vid3d.models.create("shufflenet", groups=3, num_classes=600)``.
        path_or_dict: a file path (read with ``torch.load(weights_only=True)`` onto the CPU; the
            values are then copied to the model's device and dtype), a training checkpoint dict as
            the reference repositories save (``{'epoch', 'arch', 'state_dict', 'optimizer', ...}``),
            or a bare state_dict. Keys saved under ``nn.DataParallel`` (``module.`` prefix) load too.
        strict: as in ``nn.Module.load_state_dict``: every key must match. With ``strict=False``
            missing and unexpected keys are reported by a warning; shapes must match either way.

    Raises:
        CheckpointError (a RuntimeError): the checkpoint does not fit, with every missing,
        unexpected and misshapen key in one message. Everything is checked before anything is
        copied, so on an error the model is left exactly as it was.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    state = extract_state_dict(_read(path_or_dict))
    errors, notes = _problems(model, state, strict)
    if errors:
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__}:\n" + "\n".join(errors))
    if notes:
        warnings.warn(f"checkpoint loaded into {type(model).__name__} with strict=False:\n" + "\n".join(notes),
                      stacklevel=2)
    model.load_state_dict(state, strict=strict)
    return model
