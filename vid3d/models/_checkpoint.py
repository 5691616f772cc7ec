"""Loading the reference repositories' checkpoints into vid3d's models."""

from __future__ import annotations

import os
import pickle
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
    if isinstance(path_or_dict, Mapping):
        return path_or_dict
    if not isinstance(path_or_dict, (str, os.PathLike)):
        raise TypeError(f"path_or_dict must be a path or a dict, got {type(path_or_dict).__name__}")
    if not os.path.isfile(path_or_dict):
        raise FileNotFoundError(f"no checkpoint file at {os.fspath(path_or_dict)!r}")
    try:
        # weights_only: a checkpoint file can run code when unpickled in full.
        checkpoint = torch.load(path_or_dict, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch reports both a refused class and a byte that is no pickle opcode (a truncated or
        # foreign file) as UnpicklingError; only the first names an unsupported global.
        if "Unsupported global" not in str(error):
            raise _unreadable(path_or_dict, error) from error
        raise CheckpointError(
            f"{os.fspath(path_or_dict)!r} holds Python objects that torch.load(weights_only=True) refuses "
            "to unpickle; if you trust the file, load it with torch.load(..., weights_only=False) and pass "
            f"the dict to load_checkpoint. torch.load said: {error}"
        ) from error
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise _unreadable(path_or_dict, error) from error
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{os.fspath(path_or_dict)!r} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def _unreadable(path, error: Exception) -> CheckpointError:
    return CheckpointError(f"cannot read {os.fspath(path)!r}: the file is truncated or not a PyTorch checkpoint "
                           f"({type(error).__name__}: {error})")


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
    shared = [k for k in expected if k in state]
    misshapen = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
                 for k in shared if state[k].shape != expected[k].shape]
    # What load_state_dict's copy_ would fail on (or, for complex values, silently truncate) part
    # way through the model, leaving it half-loaded: found here, before anything is copied.
    uncopyable = [f"{k}: checkpoint {_describe(state[k])}, model {expected[k].dtype}"
                  for k in shared if not _copyable(state[k], expected[k])]
    findings = [("missing keys", missing, strict), ("unexpected keys", unexpected, strict),
                ("shape mismatches", misshapen, True), ("values that cannot be copied", uncopyable, True)]
    errors, notes = [], []
    for label, items, fatal in findings:
        if items:
            (errors if fatal else notes).append(f"{len(items)} {label}:\n  " + "\n  ".join(items))
    return errors, notes


def _copyable(value: torch.Tensor, target: torch.Tensor) -> bool:
    return (value.layout == torch.strided and not value.is_meta and not value.is_quantized
            and torch.can_cast(value.dtype, target.dtype))


def _describe(value: torch.Tensor) -> str:
    kind = "meta (no data)" if value.is_meta else str(value.layout).removeprefix("torch.")
    return f"{value.dtype} {kind}"


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
        FileNotFoundError: there is no file at the path.
        CheckpointError (a RuntimeError): the file is truncated, not a PyTorch checkpoint, or holds
            objects ``weights_only=True`` refuses; or the checkpoint does not fit the model, with
            every missing, unexpected, misshapen and uncopyable (complex into real, meta, sparse)
            entry in one message. Everything is checked before anything is copied, so on an error
            the model is left exactly as it was.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    checkpoint = _read(path_or_dict)
    state = extract_state_dict(checkpoint)
    errors, notes = _problems(model, state, strict)
    if errors:
        arch = checkpoint.get("arch") if isinstance(checkpoint.get("arch"), str) else None
        saved_from = f" (the checkpoint was saved from arch {arch!r})" if arch else ""
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__}{saved_from}:\n" + "\n".join(errors))
    if notes:
        warnings.warn(f"checkpoint loaded into {type(model).__name__} with strict=False:\n" + "\n".join(notes),
                      stacklevel=2)
    model.load_state_dict(state, strict=strict)
    return model
