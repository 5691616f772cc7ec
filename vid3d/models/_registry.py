"""The model registry behind :func:`vid3d.models.create` and :func:`vid3d.models.list_models`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """One registered name: the builder it calls, the arguments the name fixes, where it comes from."""

    name: str
    builder: Callable[..., nn.Module]
    source: str
    fixed: dict = field(default_factory=dict)

    def keywords(self) -> dict[str, object]:
        """The keywords a caller may pass, with their defaults (the builder's, less the fixed ones)."""
        parameters = inspect.signature(self.builder).parameters
        return {
            name: p.default
            for name, p in parameters.items()
            if name not in self.fixed and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


_MODELS: dict[str, ModelEntry] = {}


def register(name: str, builder: Callable[..., nn.Module], source: str, **fixed) -> None:
    """Register ``builder(**fixed, **kwargs)`` under ``name``."""
    if name in _MODELS:
        raise ValueError(f"model name {name!r} is registered twice")
    _MODELS[name] = ModelEntry(name, builder, source, dict(fixed))


def entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a ``ValueError`` naming close matches when there is none."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    try:
        return _MODELS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_MODELS), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see vid3d.models.list_models()"
        raise ValueError(f"unknown model {name!r}{hint}") from None


def names() -> list[str]:
    """Every registered name, in registration order (grouped by family)."""
    return list(_MODELS)


def build(name: str, kwargs: dict) -> nn.Module:
    """Build ``name`` with ``kwargs``, rejecting keywords the model does not take with the list it does."""
    model_entry = entry(name)
    accepted = model_entry.keywords()
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"model {name!r} got unexpected keyword(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or '(none)'}"
        )
    return model_entry.builder(**model_entry.fixed, **kwargs)
