"""A model named with keywords, as the command line spells it: ``NAME[:key=value,...]``."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """A registered model name and the keywords to build it with (see :func:`vid3d.models.create`)."""

    name: str
    kwargs: dict = field(default_factory=dict)

    def label(self) -> str:
        """``name(key=value,...)``, or the bare name without keywords."""
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}({args})" if args else self.name

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``NAME`` or ``NAME:key=value,...``; values are Python literals (3, 0.5, True) or plain words (A)."""
        name, _, options = text.partition(":")
        kwargs = {}
        for option in filter(None, options.split(",")):
            key, sep, value = option.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"expected NAME[:key=value,...], got {text!r} ({option!r} is not key=value)")
            try:
                kwargs[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                kwargs[key.strip()] = value.strip()
        if not name.strip():
            raise ValueError(f"expected NAME[:key=value,...], got {text!r}")
        return cls(name.strip(), kwargs)
