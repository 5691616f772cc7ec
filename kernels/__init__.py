"""vid3d's Triton kernels (the "triton" backend), shipped as ``vid3d.kernels``.

On CUDA tensors they run on the GPU; on CPU tensors only under Triton's interpreter
(``TRITON_INTERPRET=1`` set before triton is imported), which is how they are tested without a
GPU. Each function is an out-style kernel with the signature of the native ones (see
``vid3d/ops/_kernels.py``).
"""

import os

from .channel_shuffle import cat_shuffle3d_backward, cat_shuffle3d_forward
from .conv2plus1d import conv2plus1d_depthwise_forward
from .depthwise_conv3d import depthwise_conv3d_backward, depthwise_conv3d_forward

# Triton decides at decoration time whether a kernel is interpreted.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

__all__ = ["INTERPRETED", "cat_shuffle3d_backward", "cat_shuffle3d_forward", "conv2plus1d_depthwise_forward",
           "depthwise_conv3d_backward", "depthwise_conv3d_forward"]
