"""vid3d: fast depthwise conv3d, 3D channel shuffle and (2+1)D convolution for video CNNs.

``vid3d.ops`` holds the functional ops; :func:`backend` / :func:`set_backend` choose which
implementation runs them ("auto", "cuda", "triton", "cpu" or "torch").
"""

from . import ops
from ._backend import BACKENDS, backend, get_backend, set_backend

__version__ = "0.1.0"

__all__ = ["BACKENDS", "backend", "get_backend", "ops", "set_backend"]
