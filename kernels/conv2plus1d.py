"""Triton (2+1)D convolution for a depthwise pair, fused: each program computes the spatial
conv (1, kh, kw) of the frames its temporal taps read, applies the bias and ReLU, and sums them
with the temporal weights (kt, 1, 1), so the intermediate never goes to memory. The spatial conv
is recomputed once per temporal tap instead."""

from __future__ import annotations

import triton
import triton.language as tl

from ._launch import accumulator, tile_sizes
from .depthwise_conv3d import _activate, _load_tap, _split_position, _tile


@triton.jit
def _depthwise_pair_kernel(
    x_ptr, ws_ptr, wt_ptr, bs_ptr, bt_ptr, y_ptr,
    N, C, T, H, W, To, Ho, Wo,
    sxn, sxc, sxt, sxh, sxw, syn, syc, syt, syh, syw,
    ST, SH, SW, PT, PH, PW, DT, DH, DW,
    KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    HAS_SPATIAL_BIAS: tl.constexpr, HAS_TEMPORAL_BIAS: tl.constexpr, RELU: tl.constexpr, ACC: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    p, c, p_ok, c_ok = _tile(N * To * Ho * Wo, C, BLOCK_P, BLOCK_C)
    n, to, ho, wo = _split_position(p, To, Ho, Wo)
    x_nc = x_ptr + (n * sxn)[:, None] + (c * sxc)[None, :]
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
    for kt in tl.static_range(KT):
        ti = to * ST - PT + kt * DT  # the frame of the intermediate this tap reads
        t_ok = p_ok & (ti >= 0) & (ti < T)
        mid = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
        for kh in tl.static_range(KH):
            hi = ho * SH - PH + kh * DH
            for kw in tl.static_range(KW):
                wi = wo * SW - PW + kw * DW
                x = _load_tap(x_nc, ti, hi, wi, T, H, W, sxt, sxh, sxw, p_ok, c_ok)
                w = tl.load(ws_ptr + c * (KH * KW) + (kh * KW + kw), mask=c_ok, other=0.0)
                mid += x.to(ACC) * w.to(ACC)[None, :]
        if HAS_SPATIAL_BIAS:
            mid += tl.load(bs_ptr + c, mask=c_ok, other=0.0).to(ACC)[None, :]
        if RELU:
            mid = _activate(mid, 1)
        mid = tl.where(t_ok[:, None], mid, 0.0)  # frames outside the clip are the temporal zero padding
        acc += mid * tl.load(wt_ptr + c * KT + kt, mask=c_ok, other=0.0).to(ACC)[None, :]
    if HAS_TEMPORAL_BIAS:
        acc += tl.load(bt_ptr + c, mask=c_ok, other=0.0).to(ACC)[None, :]
    y = y_ptr + (n * syn + to * syt + ho * syh + wo * syw)[:, None] + (c * syc)[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])


def conv2plus1d_depthwise_forward(input, spatial_weight, temporal_weight, spatial_bias, temporal_bias, stride,
                                  padding, dilation, mid_activation, output):
    """output = the (2+1)D conv of input when both stages are depthwise (weights (C, 1, 1, kh, kw)
    and (C, 1, kt, 1, 1)); stride/padding/dilation are (t, h, w) triples as in vid3d.ops.conv2plus1d."""
    if output.numel() == 0:
        return
    kt, kh, kw = temporal_weight.shape[2], spatial_weight.shape[3], spatial_weight.shape[4]
    ws = spatial_weight.reshape(spatial_weight.shape[0], -1).contiguous()
    wt = temporal_weight.reshape(temporal_weight.shape[0], -1).contiguous()
    bs = spatial_bias.contiguous() if spatial_bias is not None else ws
    bt = temporal_bias.contiguous() if temporal_bias is not None else wt
    positions = output.shape[0] * output.shape[2] * output.shape[3] * output.shape[4]
    block_p, block_c = tile_sizes(input, positions)
    grid = (triton.cdiv(positions, block_p), triton.cdiv(input.shape[1], block_c))
    _depthwise_pair_kernel[grid](
        input, ws, wt, bs, bt, output, *input.shape, *output.shape[2:], *input.stride(), *output.stride(),
        *stride, *padding, *dilation, KT=kt, KH=kh, KW=kw,
        HAS_SPATIAL_BIAS=spatial_bias is not None, HAS_TEMPORAL_BIAS=temporal_bias is not None,
        RELU=mid_activation == "relu", ACC=accumulator(input), BLOCK_P=block_p, BLOCK_C=block_c,
    )
