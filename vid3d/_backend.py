"""Which implementation runs vid3d's ops: the backend setting and its resolution.

The setting is process-wide (:func:`set_backend`) with a per-thread override (:func:`backend`,
a context manager), so threads do not see each other's overrides. The override lives in a
``threading.local``, which ``torch.compile`` can read and guard on: a compiled function
recompiles when the backend in force changes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

BACKENDS = ("auto", "cuda", "triton", "cpu", "torch")

_default_backend = "auto"


class _ThreadState(threading.local):
    override: str | None = None  # every thread starts with no override


_thread_state = _ThreadState()


def _checked(name: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown vid3d backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


def set_backend(name: str) -> None:
    """Set the process-wide backend: "auto", "cuda", "triton", "cpu" or "torch".

    "auto" picks the fastest implementation available for each call's device; "torch" runs
    the plain PyTorch reference. Asking for a backend that is not built or cannot run the
    tensors of a call raises a ``RuntimeError`` at that call, naming what is missing.
    """
    global _default_backend
    _default_backend = _checked(name)


def get_backend() -> str:
    """The backend in force here: the innermost :func:`backend` block, else :func:`set_backend`'s."""
    override = _thread_state.override
    return _default_backend if override is None else override


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the ops inside the ``with`` block on backend ``name`` (see :func:`set_backend`).

    Example::

        with vid3d.backend("torch"):
            reference = model(clip)
    """
    previous = _thread_state.override
    _thread_state.override = _checked(name)
    try:
        yield
    finally:
        _thread_state.override = previous
