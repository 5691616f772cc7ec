"""Launch choices shared by the Triton kernels."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def accumulator(tensor: torch.Tensor):
    """The accumulation type: float64 for float64 tensors, float32 otherwise."""
    return tl.float64 if tensor.dtype == torch.float64 else tl.float32


def tile_sizes(tensor: torch.Tensor, positions: int) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_C): a tile of positions by channels that reads contiguous memory.

    Channels innermost (channels_last_3d): wide along C. Otherwise positions are innermost: wide
    along the positions, a few channels. One configuration, so the interpreter can run it.
    """
    channels = tensor.shape[1]
    if tensor.stride(1) == 1 and channels > 1:
        block_c = min(64, triton.next_power_of_2(channels))
        return max(16, 2048 // block_c), block_c
    return min(256, max(16, triton.next_power_of_2(positions))), min(4, max(2, triton.next_power_of_2(channels)))
