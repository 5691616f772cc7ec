"""Triton depthwise conv3d: forward, input gradient, and weight + bias gradient.

Every kernel works on a tile of BLOCK_P flattened positions by BLOCK_C channels and reads and
writes its tensors in place through their strides (NCDHW, channels_last_3d or any view), with
64-bit offsets. Accumulation is in float32 (float64 for float64 tensors). The kernel size is a compile-time constant (the tap
loops unroll); stride, padding and dilation are run-time values.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import accumulator, tile_sizes

ACTIVATIONS = {None: 0, "relu": 1, "relu6": 2}


@triton.jit
def _tile(positions, channels, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's BLOCK_P positions and BLOCK_C channels (64-bit), and which are in range."""
    p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    return p, c, p < positions, c < channels


@triton.jit
def _inside(ti, hi, wi, T, H, W, p_ok):
    """Which positions (ti, hi, wi) lie inside the input."""
    return p_ok & (ti >= 0) & (ti < T) & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)


@triton.jit
def _load_tap(x_nc, ti, hi, wi, T, H, W, sxt, sxh, sxw, p_ok, c_ok):
    """The [positions, channels] input values at (ti, hi, wi), zero outside the input."""
    inside = _inside(ti, hi, wi, T, H, W, p_ok)
    return tl.load(x_nc + (ti * sxt + hi * sxh + wi * sxw)[:, None], mask=inside[:, None] & c_ok[None, :], other=0.0)


@triton.jit
def _activate(x, ACTIVATION: tl.constexpr):
    """ReLU (1) or ReLU6 (2) of x, keeping NaN as F.relu does (tl.maximum would turn it into 0)."""
    if ACTIVATION == 1:
        x = tl.where(x < 0, 0.0, x)
    if ACTIVATION == 2:
        x = tl.where(x < 0, 0.0, tl.where(x > 6, 6.0, x))
    return x


@triton.jit
def _split_position(p, A, B, D):
    """p = ((n * A + a) * B + b) * D + d, as (n, a, b, d)."""
    d = p % D
    b = (p // D) % B
    a = (p // (D * B)) % A
    n = p // (D * B * A)
    return n, a, b, d


@triton.jit
def _forward_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    N, C, T, H, W, To, Ho, Wo,
    sxn, sxc, sxt, sxh, sxw, syn, syc, syt, syh, syw,
    ST, SH, SW, PT, PH, PW, DT, DH, DW,
    KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, ACC: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    p, c, p_ok, c_ok = _tile(N * To * Ho * Wo, C, BLOCK_P, BLOCK_C)
    n, to, ho, wo = _split_position(p, To, Ho, Wo)
    x_nc = x_ptr + (n * sxn)[:, None] + (c * sxc)[None, :]
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
    for kt in tl.static_range(KT):
        ti = to * ST - PT + kt * DT
        for kh in tl.static_range(KH):
            hi = ho * SH - PH + kh * DH
            for kw in tl.static_range(KW):
                wi = wo * SW - PW + kw * DW
                x = _load_tap(x_nc, ti, hi, wi, T, H, W, sxt, sxh, sxw, p_ok, c_ok)
                w = tl.load(w_ptr + c * (KT * KH * KW) + ((kt * KH + kh) * KW + kw), mask=c_ok, other=0.0)
                acc += x.to(ACC) * w.to(ACC)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + c, mask=c_ok, other=0.0).to(ACC)[None, :]
    acc = _activate(acc, ACTIVATION)
    y = y_ptr + (n * syn + to * syt + ho * syh + wo * syw)[:, None] + (c * syc)[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])


@triton.jit
def _input_grad_kernel(
    g_ptr, w_ptr, dx_ptr,
    N, C, T, H, W, To, Ho, Wo,
    sgn, sgc, sgt, sgh, sgw, sdn, sdc, sdt, sdh, sdw,
    ST, SH, SW, PT, PH, PW, DT, DH, DW,
    KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # Gather form: each input position sums the output positions that read it.
    p, c, p_ok, c_ok = _tile(N * T * H * W, C, BLOCK_P, BLOCK_C)
    n, ti, hi, wi = _split_position(p, T, H, W)
    g_nc = g_ptr + (n * sgn)[:, None] + (c * sgc)[None, :]
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
    for kt in tl.static_range(KT):
        num_t = ti + PT - kt * DT
        to = num_t // ST
        t_ok = (num_t >= 0) & (num_t % ST == 0) & (to < To)
        for kh in tl.static_range(KH):
            num_h = hi + PH - kh * DH
            ho = num_h // SH
            h_ok = (num_h >= 0) & (num_h % SH == 0) & (ho < Ho)
            for kw in tl.static_range(KW):
                num_w = wi + PW - kw * DW
                wo = num_w // SW
                ok = p_ok & t_ok & h_ok & (num_w >= 0) & (num_w % SW == 0) & (wo < Wo)
                ok = ok[:, None] & c_ok[None, :]
                g = tl.load(g_nc + (to * sgt + ho * sgh + wo * sgw)[:, None], mask=ok, other=0.0)
                w = tl.load(w_ptr + c * (KT * KH * KW) + ((kt * KH + kh) * KW + kw), mask=c_ok, other=0.0)
                # Only the terms that exist: 0 * Inf would add NaN where PyTorch adds nothing.
                acc += tl.where(ok, g.to(ACC) * w.to(ACC)[None, :], 0.0)
    dx = dx_ptr + (n * sdn + ti * sdt + hi * sdh + wi * sdw)[:, None] + (c * sdc)[None, :]
    tl.store(dx, acc.to(dx_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])


@triton.jit
def _param_grad_kernel(
    g_ptr, x_ptr, dw_part_ptr, db_part_ptr,
    N, C, T, H, W, To, Ho, Wo,
    sgn, sgc, sgt, sgh, sgw, sxn, sxc, sxt, sxh, sxw,
    ST, SH, SW, PT, PH, PW, DT, DH, DW,
    KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    WANT_WEIGHT: tl.constexpr, WANT_BIAS: tl.constexpr, ACC: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # One tile of output positions: its partial sums for every tap (and the bias), written to
    # their own slot of the partial buffers, to be summed in a fixed order: no atomics.
    tile = tl.program_id(0).to(tl.int64)  # (tile * taps + tap) * C may pass 2**31
    p, c, p_ok, c_ok = _tile(N * To * Ho * Wo, C, BLOCK_P, BLOCK_C)
    n, to, ho, wo = _split_position(p, To, Ho, Wo)
    g = tl.load(g_ptr + (n * sgn + to * sgt + ho * sgh + wo * sgw)[:, None] + (c * sgc)[None, :],
                mask=p_ok[:, None] & c_ok[None, :], other=0.0).to(ACC)
    if WANT_BIAS:
        tl.store(db_part_ptr + tile * C + c, tl.sum(g, axis=0), mask=c_ok)
    if WANT_WEIGHT:
        x_nc = x_ptr + (n * sxn)[:, None] + (c * sxc)[None, :]
        for kt in tl.static_range(KT):
            ti = to * ST - PT + kt * DT
            for kh in tl.static_range(KH):
                hi = ho * SH - PH + kh * DH
                for kw in tl.static_range(KW):
                    wi = wo * SW - PW + kw * DW
                    x = _load_tap(x_nc, ti, hi, wi, T, H, W, sxt, sxh, sxw, p_ok, c_ok)
                    tap = (kt * KH + kh) * KW + kw
                    inside = _inside(ti, hi, wi, T, H, W, p_ok)[:, None]
                    part = tl.sum(tl.where(inside, g * x.to(ACC), 0.0), axis=0)  # no 0 * Inf terms
                    tl.store(dw_part_ptr + (tile * (KT * KH * KW) + tap) * C + c, part, mask=c_ok)


def _shape_args(input, output_sizes):
    n, c, t, h, w = input.shape
    return n, c, t, h, w, *output_sizes


def _conv_args(stride, padding, dilation):
    return (*stride, *padding, *dilation)


def depthwise_conv3d_forward(input, weight, bias, stride, padding, dilation, output, activation=None):
    """output = depthwise conv3d of input (any strides), with optional bias and activation."""
    if output.numel() == 0:
        return
    kt, kh, kw = weight.shape[2:]
    weight = weight.reshape(weight.shape[0], -1).contiguous()
    positions = output.shape[0] * output.shape[2] * output.shape[3] * output.shape[4]
    block_p, block_c = tile_sizes(input, positions)
    grid = (triton.cdiv(positions, block_p), triton.cdiv(input.shape[1], block_c))
    _forward_kernel[grid](
        input, weight, bias.contiguous() if bias is not None else weight, output,
        *_shape_args(input, output.shape[2:]), *input.stride(), *output.stride(),
        *_conv_args(stride, padding, dilation),
        KT=kt, KH=kh, KW=kw, HAS_BIAS=bias is not None, ACTIVATION=ACTIVATIONS[activation],
        ACC=accumulator(input), BLOCK_P=block_p, BLOCK_C=block_c,
    )


def depthwise_conv3d_backward(grad_output, input, weight, stride, padding, dilation, grad_input, grad_weight,
                              grad_bias):
    """Fills the wanted gradients (None: not wanted). Deterministic: partial sums per tile of
    positions are reduced in a fixed order."""
    kt, kh, kw = weight.shape[2:]
    w2d = weight.reshape(weight.shape[0], -1).contiguous()
    channels = input.shape[1]
    shapes = _shape_args(input, grad_output.shape[2:])
    conv = _conv_args(stride, padding, dilation)
    taps = dict(KT=kt, KH=kh, KW=kw, ACC=accumulator(input))
    if grad_input is not None and grad_input.numel() > 0:
        positions = input.numel() // channels
        block_p, block_c = tile_sizes(input, positions)
        grid = (triton.cdiv(positions, block_p), triton.cdiv(channels, block_c))
        _input_grad_kernel[grid](grad_output, w2d, grad_input, *shapes, *grad_output.stride(), *grad_input.stride(),
                                 *conv, **taps, BLOCK_P=block_p, BLOCK_C=block_c)
    if grad_weight is None and grad_bias is None:
        return
    positions = grad_output.numel() // channels if channels else 0
    if positions == 0:
        for grad in (grad_weight, grad_bias):
            if grad is not None:
                grad.zero_()
        return
    block_p, block_c = tile_sizes(input, positions)
    tiles = triton.cdiv(positions, block_p)
    float_opts = dict(device=input.device, dtype=torch.float64 if input.dtype == torch.float64 else torch.float32)
    dw_part = torch.empty((tiles, kt * kh * kw, channels), **float_opts) if grad_weight is not None else w2d
    db_part = torch.empty((tiles, channels), **float_opts) if grad_bias is not None else w2d
    _param_grad_kernel[(tiles, triton.cdiv(channels, block_c))](
        grad_output, input, dw_part, db_part, *shapes, *grad_output.stride(), *input.stride(), *conv, **taps,
        WANT_WEIGHT=grad_weight is not None, WANT_BIAS=grad_bias is not None, BLOCK_P=block_p, BLOCK_C=block_c,
    )
    if grad_weight is not None:
        grad_weight.copy_(dw_part.sum(0).t().reshape(grad_weight.shape))
    if grad_bias is not None:
        grad_bias.copy_(db_part.sum(0))
