"""The kernel backends behind the ops, and the choice of one for a call.

A backend here is a set of out-style kernels (the caller allocates every output):

- ``depthwise_conv3d_forward(input, weight, bias, stride, padding, dilation, output, activation)``
  (activation: None, "relu" or "relu6", applied to the output)
- ``depthwise_conv3d_backward(grad_output, input, weight, stride, padding, dilation,
  grad_input, grad_weight, grad_bias)`` (each grad may be None: not wanted)
- ``cat_shuffle3d_forward(inputs, groups, output)``
- ``cat_shuffle3d_backward(grad_output, groups, grad_inputs)``

"cpu" and "cuda" are vid3d's native kernels (``torch.ops.vid3d_native``, dispatched on the
tensors' device; "cuda" also fuses the (2+1)D depthwise pair, ``conv2plus1d_depthwise_forward``);
"triton" is vid3d's Triton kernels (``vid3d.kernels``, imported on first use); "torch" has no
kernels of its own: the public ops run the PyTorch reference for it.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import torch

from .._backend import get_backend
from ._shapes import memory_format_of

try:
    from .. import _C
except ImportError as error:  # a source tree that was never built
    _C = None
    _NATIVE_IMPORT_ERROR = str(error)
    warnings.warn(
        f"vid3d: the native extension vid3d._C could not be imported ({error}); only the 'torch' backend "
        "is usable. Install vid3d (pip install --no-build-isolation .) and import it from outside the source tree.",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    _NATIVE_IMPORT_ERROR = ""


@dataclass(frozen=True)
class KernelSet:
    depthwise_conv3d_forward: object
    depthwise_conv3d_backward: object
    cat_shuffle3d_forward: object
    cat_shuffle3d_backward: object
    # (input, spatial_weight, temporal_weight, spatial_bias, temporal_bias, stride, padding, dilation,
    #  mid_activation, output) for a (2+1)D conv whose stages are both depthwise, fused; or None
    conv2plus1d_depthwise_forward: object = None


@functools.cache  # built once: the ops look their kernels up on every call
def _native_kernels(device_type: str) -> KernelSet:
    ops = torch.ops.vid3d_native
    return KernelSet(
        ops.depthwise_conv3d_forward,
        ops.depthwise_conv3d_backward,
        ops.cat_shuffle3d_forward,
        ops.cat_shuffle3d_backward,
        # Only the CUDA kernels fuse the (2+1)D depthwise pair; on the CPU the stages run apart.
        conv2plus1d_depthwise_forward=ops.conv2plus1d_depthwise_forward if device_type == "cuda" else None,
    )


def unavailable_reason(name: str, device: torch.device) -> str | None:
    """Why backend ``name`` cannot run tensors on ``device`` here, or None if it can."""
    if name == "torch":
        return None
    if name in ("cpu", "cuda"):
        if _C is None:
            return f"the native extension vid3d._C is not built ({_NATIVE_IMPORT_ERROR}); reinstall vid3d"
        if name == "cuda" and not _C.WITH_CUDA:
            return "vid3d._C was built without CUDA kernels (reinstall with a CUDA build of torch and nvcc)"
        if device.type != name:
            return f"it runs only {name} tensors and these are on {device}"
        return None
    if name == "triton":
        try:
            from .. import kernels as triton_kernels
        except ImportError as error:
            return f"Triton is not installed ({error}); pip install triton"
        if device.type == "cuda":
            return None
        if device.type == "cpu" and triton_kernels.INTERPRETED:
            return None
        return (f"Triton runs {device.type} tensors only under its interpreter: set TRITON_INTERPRET=1 before "
                "vid3d's Triton kernels are first used (before triton is imported)")
    raise ValueError(f"unknown vid3d backend {name!r}")


# "auto" takes the first usable backend of its device's list, except where the op's wrapper
# says PyTorch is faster for the call (see cpu_native_is_faster).
# The hand-written CUDA kernels ("cuda") are not in the CUDA list yet: the one GPU session so far
# (bench/NOTES.md) found them faster only for channels_last_3d forwards, and their backward still
# turns a non-finite weight into NaN where PyTorch does not. They run when asked for,
# vid3d.backend("cuda").
AUTO_ORDER = {"cpu": ("cpu", "torch"), "cuda": ("triton", "torch")}


def native_backend(device: torch.device) -> str | None:
    """The first of vid3d's own backends that can run tensors on ``device`` here, or None."""
    for name in AUTO_ORDER.get(device.type, ()):
        if name != "torch" and unavailable_reason(name, device) is None:
            return name
    return None


def cpu_native_is_faster(op: str, tensors, depthwise: bool = True, groups: int = 1) -> bool:
    """Whether vid3d's CPU kernels beat PyTorch's for this call: the decision table of "auto".

    Measured on the CPU (bench/README.md): vid3d's depthwise backward is 2-20x PyTorch's in both
    layouts, so any call that will be differentiated runs vid3d. For inference vid3d's forward
    wins on planes of 64 positions or more in both layouts. On smaller planes it wins on float32
    NCDHW volumes of up to 512 positions with the AVX2/AVX-512 kernels (channel blocks transposed
    into vectors), and is not reliably faster than PyTorch's oneDNN kernel otherwise.

    The shuffles need a million elements or more to repay the call (on 8x960x2x4x4, 245,760
    elements, vid3d's channel shuffle and NCDHW cat + shuffle took 18-78 us longer than PyTorch's
    in the records). On NCDHW input PyTorch's channel shuffle is about as fast as vid3d's, and the
    one-pass cat + shuffle wins. On channels_last_3d input, where vid3d transposes each position
    with vectors (:func:`_shuffle_transposes`), its channel shuffle is about as fast as PyTorch's
    with 4 groups (0.88-1.02x, geometric means over the benchmark's shapes) and 2-4x faster with 2
    or 3 (8x240x4x14x14). Its cat + shuffle is 4-7x faster there, and already repays the call from
    16,384 elements (forward, two halves, 2 groups: 1.25x on 1x64x4x8x8, 2.0x on 2x96x4x8x8, 0.84x
    on 1x32x2x4x4). With group counts whose transpose is a plain loop, vid3d's channel shuffle was
    at least 2.3x PyTorch's with 5 or 6 groups of 240 channels but 0.67-0.84x with 10 or 24: the
    group count alone does not say which wins, so those are left to PyTorch.
    """
    first = tensors[0]
    if op in ("channel_shuffle3d", "cat_shuffle3d"):
        elements = sum(t.numel() for t in tensors)
        concatenates = op == "cat_shuffle3d" and len(tensors) > 1
        if elements < (1 << 14 if concatenates else 1 << 20):
            return False
        transposes = _shuffle_transposes(tensors, groups)
        if elements < 1 << 20:
            return concatenates and transposes
        return transposes or (concatenates and _planar(first))
    if not depthwise:
        return False
    if first.shape[3] * first.shape[4] >= 64:
        return True
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return True  # a call that will be differentiated
    transposed_volumes = first.dtype == torch.float32 and math.prod(first.shape[2:]) <= 512 and _planar(first)
    return transposed_volumes and cpu_vector_isa()


def _planar(x: torch.Tensor) -> bool:
    return x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last_3d)


def _shuffle_transposes(tensors, groups: int) -> bool:
    """Whether vid3d's CPU shuffle copies ``tensors`` as a vectorized transpose per position (see
    csrc/cpu/channel_shuffle3d.cpp): channels unit-strided in every tensor and in the output (which
    takes the first tensor's layout), each group of channels inside one tensor, and groups (or, for
    one tensor, channels // groups) one of 1, 2, 3, 4, 8."""
    if memory_format_of(tensors[0]) != torch.channels_last_3d:
        return False
    per_group = sum(t.shape[1] for t in tensors) // groups
    if any(t.shape[1] != 1 and t.stride(1) != 1 or t.shape[1] % per_group for t in tensors):
        return False
    vectorized = (1, 2, 3, 4, 8)
    return groups in vectorized or (len(tensors) == 1 and per_group in vectorized)


@functools.cache
def cpu_vector_isa() -> bool:
    """Whether vid3d's CPU kernels run with AVX2 or AVX-512 here (not the generic build)."""
    return torch.ops.vid3d_native.cpu_isa() != "generic"


def resolve(op: str, tensors, depthwise: bool = True, groups: int = 1) -> str:
    """The concrete backend that runs ``op`` on ``tensors`` (a call's tensor arguments, None for an
    absent bias) under the current setting. Under "auto" on the CPU, vid3d's kernels run where
    :func:`cpu_native_is_faster` says they win; ``depthwise`` and ``groups`` are its inputs."""
    requested = get_backend()
    device = tensors[0].device
    if requested == "auto":
        native = native_backend(device)
        if native == "cpu" and not cpu_native_is_faster(op, tensors, depthwise, groups):
            return "torch"
        return "torch" if native is None else native
    reason = unavailable_reason(requested, device)
    if reason is not None:
        raise RuntimeError(f"vid3d.ops.{op}: backend {requested!r} is not usable: {reason}")
    return requested


@functools.cache
def _triton_kernels() -> KernelSet:
    from .. import kernels as triton_kernels

    return KernelSet(
        triton_kernels.depthwise_conv3d_forward,
        triton_kernels.depthwise_conv3d_backward,
        triton_kernels.cat_shuffle3d_forward,
        triton_kernels.cat_shuffle3d_backward,
        conv2plus1d_depthwise_forward=triton_kernels.conv2plus1d_depthwise_forward,
    )


def kernels(name: str) -> KernelSet:
    """The kernel set of a resolved, non-"torch" backend."""
    if name in ("cpu", "cuda"):
        return _native_kernels(name)
    if name == "triton":
        return _triton_kernels()
    raise RuntimeError(f"vid3d: backend {name!r} has no kernels")
