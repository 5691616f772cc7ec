"""Triton cat + channel shuffle of 5-D tensors, forward and backward, as permuted copies.

Shuffling the concatenation of the inputs with g groups sends concatenated channel q to output
channel (q % (C / g)) * g + q // (C / g). Each input (forward) or gradient (backward) is one
launch that copies its channels to or from their shuffled places: together one pass over memory.
Elements are moved as raw integers of their size, so every dtype up to 8 bytes works.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import tile_sizes

_RAW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@triton.jit
def _copy_channels_kernel(
    src_ptr, dst_ptr, src_ch_ptr, dst_ch_ptr,
    N, NCH, T, H, W,
    ssn, ssc, sst, ssh, ssw, sdn, sdc, sdt, sdh, sdw,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # dst[n, dst_ch[i], t, h, w] = src[n, src_ch[i], t, h, w]
    p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    i = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = p < N * T * H * W
    i_ok = i < NCH
    w = p % W
    h = (p // W) % H
    t = (p // (W * H)) % T
    n = p // (W * H * T)
    src_ch = tl.load(src_ch_ptr + i, mask=i_ok, other=0).to(tl.int64)
    dst_ch = tl.load(dst_ch_ptr + i, mask=i_ok, other=0).to(tl.int64)
    ok = p_ok[:, None] & i_ok[None, :]
    value = tl.load(src_ptr + (n * ssn + t * sst + h * ssh + w * ssw)[:, None] + (src_ch * ssc)[None, :], mask=ok)
    tl.store(dst_ptr + (n * sdn + t * sdt + h * sdh + w * sdw)[:, None] + (dst_ch * sdc)[None, :], value, mask=ok)


def _raw(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.element_size() not in _RAW:
        raise RuntimeError(f"vid3d (triton): channel shuffles of {tensor.dtype} are not supported")
    return tensor.view(_RAW[tensor.element_size()])


def _copy_channels(src, dst, src_channels, dst_channels):
    count = src_channels.numel()
    positions = src.numel() // src.shape[1] if src.shape[1] else 0
    if count == 0 or positions == 0:
        return
    block_p, block_c = tile_sizes(src, positions)
    grid = (triton.cdiv(positions, block_p), triton.cdiv(count, block_c))
    n, _, t, h, w = src.shape
    _copy_channels_kernel[grid](_raw(src), _raw(dst), src_channels, dst_channels, n, count, t, h, w,
                                *src.stride(), *dst.stride(), BLOCK_P=block_p, BLOCK_C=block_c)


def _shuffled_channels(channels: int, groups: int, device) -> torch.Tensor:
    """Output channel of each concatenated channel."""
    q = torch.arange(channels, device=device, dtype=torch.int32)
    per_group = channels // groups
    return (q % per_group) * groups + q // per_group


def _pieces(tensors, groups, device):
    """(local channels, shuffled channels) of each tensor of the concatenation."""
    target = _shuffled_channels(sum(t.shape[1] for t in tensors), groups, device)
    offset = 0
    for t in tensors:
        local = torch.arange(t.shape[1], device=device, dtype=torch.int32)
        yield t, local, target[offset : offset + t.shape[1]]
        offset += t.shape[1]


def cat_shuffle3d_forward(inputs, groups, output):
    for tensor, local, shuffled in _pieces(inputs, groups, output.device):
        _copy_channels(tensor, output, local, shuffled)


def cat_shuffle3d_backward(grad_output, groups, grad_inputs):
    for grad, local, shuffled in _pieces(grad_inputs, groups, grad_output.device):
        _copy_channels(grad_output, grad, shuffled, local)
