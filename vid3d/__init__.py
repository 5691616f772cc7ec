"""vid3d: fast depthwise conv3d, 3D channel shuffle and (2+1)D convolution for video CNNs.

``vid3d.ops`` holds the functional ops; :func:`backend` / :func:`set_backend` choose which
implementation runs them ("auto", "cuda", "triton", "cpu" or "torch"). ``vid3d.nn`` holds the
modules built on them; :func:`convert` swaps those into an existing model and :func:`optimize`
makes an inference copy with BatchNorm folded and activations fused. ``vid3d.models`` builds
the architectures of the papers with the reference checkpoints' state_dicts; :func:`profile`
counts multiply-adds and parameters the way the Efficient-3DCNNs paper did.
"""

from . import nn, ops
from ._backend import BACKENDS, backend, get_backend, set_backend
from .convert import convert
from .optimize import optimize
from . import models  # noqa: E402  (builds on nn and convert)
from .profile import profile

__version__ = "0.1.0"

__all__ = ["BACKENDS", "backend", "convert", "get_backend", "models", "nn", "ops", "optimize", "profile",
           "set_backend"]
