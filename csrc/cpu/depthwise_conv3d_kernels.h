// CPU depthwise conv3d kernels, templated on the element and accumulation type.
// Included once per instruction set by depthwise_conv3d_kernels_<isa>.cpp, which
// defines VID3D_CPU_ISA; the loops are written so the compiler vectorizes them
// (over W in the planar layout, over C in channels-last).
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "depthwise_conv3d_cpu.h"

namespace vid3d::cpu::VID3D_CPU_ISA {
namespace {

// Output indices o in [lo, hi) whose input index o * stride + shift lies in [0, in_size).
struct ValidRange {
  int64_t lo, hi;
};

inline ValidRange valid_range(int64_t in_size, int64_t out_size, int64_t stride, int64_t shift) {
  const int64_t lo = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
  const int64_t last = in_size - 1 - shift;
  const int64_t hi = last < 0 ? 0 : std::min(out_size, last / stride + 1);
  return {lo, std::max(lo, hi)};
}

// Per dimension and tap: the shift (k * dilation - padding) and the valid output range.
struct TapRanges {
  std::vector<int64_t> shift[3];
  std::vector<ValidRange> range[3];

  explicit TapRanges(const DepthwiseConv3dParams& p) {
    for (int d = 0; d < 3; ++d) {
      for (int64_t k = 0; k < p.kernel[d]; ++k) {
        const int64_t s = k * p.dilation[d] - p.padding[d];
        shift[d].push_back(s);
        range[d].push_back(valid_range(p.in_size[d], p.out_size[d], p.stride[d], s));
      }
    }
  }
};

inline int64_t taps_of(const DepthwiseConv3dParams& p) {
  return p.kernel[0] * p.kernel[1] * p.kernel[2];
}

// Enough work per parallel chunk to amortize the thread hand-off.
inline int64_t grain_for(int64_t work_per_item) {
  constexpr int64_t kWorkPerChunk = 1 << 15;
  return std::max<int64_t>(1, kWorkPerChunk / std::max<int64_t>(1, work_per_item));
}

// ---------------------------------------------------------------- planar (NCDHW-like)

// acc[wo] += w * in[(wo * step + base)] for wo in range, with Unit meaning step == 1.
template <bool Unit, typename scalar_t, typename acc_t>
inline void axpy_row(acc_t* __restrict acc, const scalar_t* __restrict in, acc_t w, ValidRange r,
                     int64_t base, int64_t step) {
  if constexpr (Unit) {
    const scalar_t* src = in + base;
    for (int64_t wo = r.lo; wo < r.hi; ++wo) acc[wo] += w * static_cast<acc_t>(src[wo]);
  } else {
    for (int64_t wo = r.lo; wo < r.hi; ++wo) acc[wo] += w * static_cast<acc_t>(in[(wo * step + base)]);
  }
}

template <bool Unit, typename scalar_t, typename acc_t>
void forward_planar(const DepthwiseConv3dParams& p, const scalar_t* input, const acc_t* weight,
                    const acc_t* bias, scalar_t* output) {
  const TapRanges taps(p);
  const int64_t KT = p.kernel[0], KH = p.kernel[1], KW = p.kernel[2];
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t* xs = p.input_strides;
  const int64_t* ys = p.output_strides;
  const int64_t w_step = p.stride[2] * xs[4];
  const int64_t planes = p.batch * p.channels * To;

  at::parallel_for(0, planes, grain_for(Ho * Wo * taps_of(p)), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> row(Wo);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t to = plane % To;
      const int64_t c = (plane / To) % p.channels;
      const int64_t n = plane / (To * p.channels);
      const scalar_t* x_nc = input + n * xs[0] + c * xs[1];
      const acc_t* w_c = weight + c * KT * KH * KW;
      scalar_t* y_plane = output + n * ys[0] + c * ys[1] + to * ys[2];
      const acc_t init = bias ? bias[c] : acc_t(0);
      for (int64_t ho = 0; ho < Ho; ++ho) {
        std::fill(row.begin(), row.end(), init);
        for (int64_t kd = 0; kd < KT; ++kd) {
          const int64_t ti = to * p.stride[0] + taps.shift[0][kd];
          if (ti < 0 || ti >= p.in_size[0]) continue;
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t hi = ho * p.stride[1] + taps.shift[1][kh];
            if (hi < 0 || hi >= p.in_size[1]) continue;
            const scalar_t* x_row = x_nc + ti * xs[2] + hi * xs[3];
            const acc_t* w_row = w_c + (kd * KH + kh) * KW;
            for (int64_t kw = 0; kw < KW; ++kw) {
              axpy_row<Unit>(row.data(), x_row, w_row[kw], taps.range[2][kw],
                             taps.shift[2][kw] * xs[4], w_step);
            }
          }
        }
        scalar_t* y_row = y_plane + ho * ys[3];
        for (int64_t wo = 0; wo < Wo; ++wo) y_row[wo * ys[4]] = static_cast<scalar_t>(row[wo]);
      }
    }
  });
}

// Parallel over channels so each channel's weight gradient is reduced by one
// thread in a fixed order: the result does not depend on the thread count.
template <bool Unit, typename scalar_t, typename acc_t>
void backward_planar(const DepthwiseConv3dParams& p, const scalar_t* grad_output,
                     const scalar_t* input, const acc_t* weight, scalar_t* grad_input,
                     double* grad_weight, double* grad_bias) {
  const TapRanges taps(p);
  const int64_t KT = p.kernel[0], KH = p.kernel[1], KW = p.kernel[2];
  const int64_t ntaps = taps_of(p);
  const int64_t T = p.in_size[0], H = p.in_size[1], W = p.in_size[2];
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t sw = p.stride[2];
  const int64_t* xs = p.input_strides;
  const int64_t* gs = p.output_strides;
  const int64_t* dxs = p.grad_input_strides;
  const int64_t x_step = sw * xs[4];
  const int64_t volume = p.batch * To * Ho * Wo * ntaps;

  at::parallel_for(0, p.channels, grain_for(volume), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> dx(grad_input ? T * H * W : 0);
    std::vector<acc_t> lanes(grad_weight ? ntaps * Wo : 0);  // per tap, per wo partial sums
    std::vector<acc_t> bias_lane(grad_bias ? Wo : 0);
    std::vector<acc_t> go_row(Wo);
    std::vector<double> dw(ntaps);
    for (int64_t c = begin; c < end; ++c) {
      const acc_t* w_c = weight + c * ntaps;
      std::fill(dw.begin(), dw.end(), 0.0);
      double db = 0.0;
      for (int64_t n = 0; n < p.batch; ++n) {
        const scalar_t* x_nc = input + n * xs[0] + c * xs[1];
        const scalar_t* g_nc = grad_output + n * gs[0] + c * gs[1];
        std::fill(dx.begin(), dx.end(), acc_t(0));
        std::fill(lanes.begin(), lanes.end(), acc_t(0));
        std::fill(bias_lane.begin(), bias_lane.end(), acc_t(0));
        for (int64_t to = 0; to < To; ++to) {
          for (int64_t ho = 0; ho < Ho; ++ho) {
            const scalar_t* g_src = g_nc + to * gs[2] + ho * gs[3];
            for (int64_t wo = 0; wo < Wo; ++wo) go_row[wo] = static_cast<acc_t>(g_src[wo * gs[4]]);
            if (grad_bias) {
              for (int64_t wo = 0; wo < Wo; ++wo) bias_lane[wo] += go_row[wo];
            }
            for (int64_t kd = 0; kd < KT; ++kd) {
              const int64_t ti = to * p.stride[0] + taps.shift[0][kd];
              if (ti < 0 || ti >= T) continue;
              for (int64_t kh = 0; kh < KH; ++kh) {
                const int64_t hi = ho * p.stride[1] + taps.shift[1][kh];
                if (hi < 0 || hi >= H) continue;
                const scalar_t* x_row = x_nc + ti * xs[2] + hi * xs[3];
                acc_t* dx_row = grad_input ? dx.data() + (ti * H + hi) * W : nullptr;
                for (int64_t kw = 0; kw < KW; ++kw) {
                  const int64_t tap = (kd * KH + kh) * KW + kw;
                  const ValidRange r = taps.range[2][kw];
                  const int64_t shift = taps.shift[2][kw];
                  if (dx_row) {
                    const acc_t wv = w_c[tap];
                    acc_t* dst = dx_row + shift;
                    if (sw == 1) {
                      for (int64_t wo = r.lo; wo < r.hi; ++wo) dst[wo] += wv * go_row[wo];
                    } else {
                      for (int64_t wo = r.lo; wo < r.hi; ++wo) dst[wo * sw] += wv * go_row[wo];
                    }
                  }
                  if (grad_weight) {
                    acc_t* lane = lanes.data() + tap * Wo;
                    const scalar_t* src = x_row + shift * xs[4];
                    if constexpr (Unit) {
                      for (int64_t wo = r.lo; wo < r.hi; ++wo)
                        lane[wo] += go_row[wo] * static_cast<acc_t>(src[wo]);
                    } else {
                      for (int64_t wo = r.lo; wo < r.hi; ++wo)
                        lane[wo] += go_row[wo] * static_cast<acc_t>(src[wo * x_step]);
                    }
                  }
                }
              }
            }
          }
        }
        if (grad_input) {
          scalar_t* dx_nc = grad_input + n * dxs[0] + c * dxs[1];
          for (int64_t t = 0; t < T; ++t)
            for (int64_t h = 0; h < H; ++h) {
              const acc_t* src = dx.data() + (t * H + h) * W;
              scalar_t* dst = dx_nc + t * dxs[2] + h * dxs[3];
              for (int64_t w = 0; w < W; ++w) dst[w * dxs[4]] = static_cast<scalar_t>(src[w]);
            }
        }
        for (int64_t tap = 0; tap < (grad_weight ? ntaps : 0); ++tap) {
          const acc_t* lane = lanes.data() + tap * Wo;
          for (int64_t wo = 0; wo < Wo; ++wo) dw[tap] += lane[wo];
        }
        for (int64_t wo = 0; wo < (grad_bias ? Wo : 0); ++wo) db += bias_lane[wo];
      }
      if (grad_weight) std::copy(dw.begin(), dw.end(), grad_weight + c * ntaps);
      if (grad_bias) grad_bias[c] = db;
    }
  });
}

// ---------------------------------------------------------------- channels-last (NDHWC-like)

// Calls fn(tap, ti, hi, wi) for every tap of output position (to, ho, wo) that reads inside the input.
template <typename Fn>
inline void for_each_tap(const DepthwiseConv3dParams& p, const TapRanges& taps, int64_t to,
                         int64_t ho, int64_t wo, Fn&& fn) {
  const int64_t KT = p.kernel[0], KH = p.kernel[1], KW = p.kernel[2];
  for (int64_t kd = 0; kd < KT; ++kd) {
    const int64_t ti = to * p.stride[0] + taps.shift[0][kd];
    if (ti < 0 || ti >= p.in_size[0]) continue;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t hi = ho * p.stride[1] + taps.shift[1][kh];
      if (hi < 0 || hi >= p.in_size[1]) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t wi = wo * p.stride[2] + taps.shift[2][kw];
        if (wi < 0 || wi >= p.in_size[2]) continue;
        fn((kd * KH + kh) * KW + kw, ti, hi, wi);
      }
    }
  }
}

// Output index o such that o * stride + shift == i, or -1.
inline int64_t source_index(int64_t i, int64_t shift, int64_t stride, int64_t out_size) {
  const int64_t num = i - shift;
  if (num < 0 || num % stride != 0) return -1;
  const int64_t o = num / stride;
  return o < out_size ? o : -1;
}

template <typename scalar_t, typename acc_t>
inline void fma_channels(acc_t* __restrict acc, const acc_t* __restrict w,
                         const scalar_t* __restrict x, int64_t C, int64_t x_cstride) {
  if (x_cstride == 1) {
    for (int64_t c = 0; c < C; ++c) acc[c] += w[c] * static_cast<acc_t>(x[c]);
  } else {
    for (int64_t c = 0; c < C; ++c) acc[c] += w[c] * static_cast<acc_t>(x[c * x_cstride]);
  }
}

template <typename scalar_t, typename acc_t>
inline void store_channels(scalar_t* y, const acc_t* acc, int64_t C, int64_t y_cstride) {
  if (y_cstride == 1) {
    for (int64_t c = 0; c < C; ++c) y[c] = static_cast<scalar_t>(acc[c]);
  } else {
    for (int64_t c = 0; c < C; ++c) y[c * y_cstride] = static_cast<scalar_t>(acc[c]);
  }
}

template <typename scalar_t, typename acc_t>
void forward_channels_last(const DepthwiseConv3dParams& p, const scalar_t* input,
                           const acc_t* weight, const acc_t* bias, scalar_t* output) {
  const TapRanges taps(p);
  const int64_t C = p.channels;
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t* xs = p.input_strides;
  const int64_t* ys = p.output_strides;
  const int64_t rows = p.batch * To * Ho;

  at::parallel_for(0, rows, grain_for(Wo * C * taps_of(p)), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t ho = row % Ho;
      const int64_t to = (row / Ho) % To;
      const int64_t n = row / (Ho * To);
      const scalar_t* x_n = input + n * xs[0];
      for (int64_t wo = 0; wo < Wo; ++wo) {
        if (bias) {
          std::copy(bias, bias + C, acc.begin());
        } else {
          std::fill(acc.begin(), acc.end(), acc_t(0));
        }
        for_each_tap(p, taps, to, ho, wo, [&](int64_t tap, int64_t ti, int64_t hi, int64_t wi) {
          fma_channels(acc.data(), weight + tap * C, x_n + ti * xs[2] + hi * xs[3] + wi * xs[4],
                             C, xs[1]);
        });
        store_channels(output + n * ys[0] + to * ys[2] + ho * ys[3] + wo * ys[4], acc.data(), C, ys[1]);
      }
    }
  });
}

template <typename scalar_t, typename acc_t>
void backward_channels_last(const DepthwiseConv3dParams& p, const scalar_t* grad_output,
                            const scalar_t* input, const acc_t* weight, scalar_t* grad_input,
                            double* grad_weight, double* grad_bias) {
  const TapRanges taps(p);
  const int64_t C = p.channels;
  const int64_t ntaps = taps_of(p);
  const int64_t KT = p.kernel[0], KH = p.kernel[1], KW = p.kernel[2];
  const int64_t T = p.in_size[0], H = p.in_size[1], W = p.in_size[2];
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t* xs = p.input_strides;
  const int64_t* gs = p.output_strides;
  const int64_t* dxs = p.grad_input_strides;

  if (grad_input) {
    // Gather form: each input position sums the output positions that read it, so no two
    // threads write the same element.
    at::parallel_for(0, p.batch * T * H, grain_for(W * C * ntaps), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(C);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t hi = row % H;
        const int64_t ti = (row / H) % T;
        const int64_t n = row / (H * T);
        const scalar_t* g_n = grad_output + n * gs[0];
        for (int64_t wi = 0; wi < W; ++wi) {
          std::fill(acc.begin(), acc.end(), acc_t(0));
          for (int64_t kd = 0; kd < KT; ++kd) {
            const int64_t to = source_index(ti, taps.shift[0][kd], p.stride[0], To);
            if (to < 0) continue;
            for (int64_t kh = 0; kh < KH; ++kh) {
              const int64_t ho = source_index(hi, taps.shift[1][kh], p.stride[1], Ho);
              if (ho < 0) continue;
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t wo = source_index(wi, taps.shift[2][kw], p.stride[2], Wo);
                if (wo < 0) continue;
                const int64_t tap = (kd * KH + kh) * KW + kw;
                fma_channels(acc.data(), weight + tap * C,
                                    g_n + to * gs[2] + ho * gs[3] + wo * gs[4], C, gs[1]);
              }
            }
          }
          store_channels(grad_input + n * dxs[0] + ti * dxs[2] + hi * dxs[3] + wi * dxs[4],
                         acc.data(), C, dxs[1]);
        }
      }
    });
  }

  if (!grad_weight && !grad_bias) return;
  // Fixed chunks of output rows (their number depends on the shape only), each reduced to a
  // double partial sum row by row, then the chunks summed in order: deterministic and accurate.
  const int64_t rows = p.batch * To * Ho;
  const int64_t lanes_per_row = (ntaps + 1) * C;  // taps, then the bias
  const int64_t max_chunks = std::max<int64_t>(1, (int64_t(8) << 20) / (lanes_per_row * 8));
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>({rows, 256, max_chunks}));
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  std::vector<double> partial(chunks * lanes_per_row, 0.0);

  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> lanes(lanes_per_row);
    std::vector<acc_t> go(C);
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      double* out = partial.data() + chunk * lanes_per_row;
      const int64_t row_end = std::min(rows, (chunk + 1) * rows_per_chunk);
      for (int64_t row = chunk * rows_per_chunk; row < row_end; ++row) {
        const int64_t ho = row % Ho;
        const int64_t to = (row / Ho) % To;
        const int64_t n = row / (Ho * To);
        const scalar_t* x_n = input + n * xs[0];
        std::fill(lanes.begin(), lanes.end(), acc_t(0));
        acc_t* bias_lane = lanes.data() + ntaps * C;
        for (int64_t wo = 0; wo < Wo; ++wo) {
          const scalar_t* g = grad_output + n * gs[0] + to * gs[2] + ho * gs[3] + wo * gs[4];
          for (int64_t c = 0; c < C; ++c) go[c] = static_cast<acc_t>(g[c * gs[1]]);
          for (int64_t c = 0; c < C; ++c) bias_lane[c] += go[c];
          if (!grad_weight) continue;
          for_each_tap(p, taps, to, ho, wo, [&](int64_t tap, int64_t ti, int64_t hi, int64_t wi) {
            fma_channels(lanes.data() + tap * C, go.data(),
                               x_n + ti * xs[2] + hi * xs[3] + wi * xs[4], C, xs[1]);
          });
        }
        for (int64_t i = 0; i < lanes_per_row; ++i) out[i] += lanes[i];
      }
    }
  });

  for (int64_t c = 0; c < C; ++c) {
    for (int64_t tap = 0; tap <= ntaps; ++tap) {
      double sum = 0.0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * lanes_per_row + tap * C + c];
      if (tap < ntaps) {
        if (grad_weight) grad_weight[c * ntaps + tap] = sum;
      } else if (grad_bias) {
        grad_bias[c] = sum;
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
void forward_typed(const DepthwiseConv3dParams& p, const void* input, const void* weight,
                   const void* bias, void* output) {
  const auto* x = static_cast<const scalar_t*>(input);
  const auto* w = static_cast<const acc_t*>(weight);
  const auto* b = static_cast<const acc_t*>(bias);
  auto* y = static_cast<scalar_t*>(output);
  if (p.channels_last) {
    forward_channels_last(p, x, w, b, y);
  } else if (p.stride[2] * p.input_strides[4] == 1) {
    forward_planar<true>(p, x, w, b, y);
  } else {
    forward_planar<false>(p, x, w, b, y);
  }
}

template <typename scalar_t, typename acc_t>
void backward_typed(const DepthwiseConv3dParams& p, const void* grad_output, const void* input,
                    const void* weight, void* grad_input, double* grad_weight, double* grad_bias) {
  const auto* g = static_cast<const scalar_t*>(grad_output);
  const auto* x = static_cast<const scalar_t*>(input);
  const auto* w = static_cast<const acc_t*>(weight);
  auto* dx = static_cast<scalar_t*>(grad_input);
  if (p.channels_last) {
    backward_channels_last(p, g, x, w, dx, grad_weight, grad_bias);
  } else if (p.stride[2] * p.input_strides[4] == 1) {
    backward_planar<true>(p, g, x, w, dx, grad_weight, grad_bias);
  } else {
    backward_planar<false>(p, g, x, w, dx, grad_weight, grad_bias);
  }
}

}  // namespace

void depthwise_conv3d_forward(const DepthwiseConv3dParams& p, const void* input, const void* weight,
                              const void* bias, void* output) {
  switch (p.scalar) {
    case ScalarKind::Float: return forward_typed<float, float>(p, input, weight, bias, output);
    case ScalarKind::Double: return forward_typed<double, double>(p, input, weight, bias, output);
    case ScalarKind::BFloat16: return forward_typed<c10::BFloat16, float>(p, input, weight, bias, output);
    case ScalarKind::Half: return forward_typed<c10::Half, float>(p, input, weight, bias, output);
  }
}

void depthwise_conv3d_backward(const DepthwiseConv3dParams& p, const void* grad_output,
                               const void* input, const void* weight, void* grad_input,
                               double* grad_weight, double* grad_bias) {
  switch (p.scalar) {
    case ScalarKind::Float:
      return backward_typed<float, float>(p, grad_output, input, weight, grad_input, grad_weight, grad_bias);
    case ScalarKind::Double:
      return backward_typed<double, double>(p, grad_output, input, weight, grad_input, grad_weight, grad_bias);
    case ScalarKind::BFloat16:
      return backward_typed<c10::BFloat16, float>(p, grad_output, input, weight, grad_input, grad_weight,
                                                  grad_bias);
    case ScalarKind::Half:
      return backward_typed<c10::Half, float>(p, grad_output, input, weight, grad_input, grad_weight,
                                              grad_bias);
  }
}

}  // namespace vid3d::cpu::VID3D_CPU_ISA
