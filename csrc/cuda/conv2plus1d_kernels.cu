// (2+1)D convolution of a depthwise pair, fused: each thread computes one output element; for
// each temporal tap it computes the spatial (1, kh, kw) conv of the frame that tap reads, adds the
// spatial bias and applies the ReLU, and accumulates it with the temporal weight. The intermediate
// lives in registers and never goes to memory; the spatial conv is recomputed once per temporal
// tap instead (kt x more spatial work, in exchange for one pass over memory). Frames outside the
// clip are the temporal conv's zero padding. Threads walk outputs in the output's memory order
// (channels fastest for channels-last), so neighbouring threads read neighbouring inputs.
#include <algorithm>

#include "kernel_common.cuh"

namespace vid3d::cuda {
namespace {

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads) conv2plus1d_depthwise_kernel(const Conv2Plus1dParams p,
                                                                         bool channels_inner) {
  using acc = acc_t<scalar_t>;
  const int kt = int(p.dims[0].kernel), kh = int(p.dims[1].kernel), kw = int(p.dims[2].kernel);
  const index_t sizes[5] = {index_t(p.batch), index_t(p.channels), index_t(p.out_size[0]), index_t(p.out_size[1]),
                            index_t(p.out_size[2])};
  const index_t count = sizes[0] * sizes[1] * sizes[2] * sizes[3] * sizes[4];
  const scalar_t* input = static_cast<const scalar_t*>(p.input);
  const acc* spatial_weight = static_cast<const acc*>(p.spatial_weight);
  const acc* temporal_weight = static_cast<const acc*>(p.temporal_weight);
  const acc* spatial_bias = static_cast<const acc*>(p.spatial_bias);
  const acc* temporal_bias = static_cast<const acc*>(p.temporal_bias);
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += index_t(gridDim.x) * blockDim.x) {
    index_t rest = i, coord[5];
    if (channels_inner) {
      coord[1] = rest % sizes[1];
      rest /= sizes[1];
      for (int d = 4; d >= 2; --d) {
        coord[d] = rest % sizes[d];
        rest /= sizes[d];
      }
    } else {
      for (int d = 4; d >= 1; --d) {
        coord[d] = rest % sizes[d];
        rest /= sizes[d];
      }
    }
    coord[0] = rest;
    const index_t c = coord[1];
    const scalar_t* x = input + coord[0] * index_t(p.input_strides[0]) + c * index_t(p.input_strides[1]);
    const index_t h0 = coord[3] * index_t(p.dims[1].stride) - index_t(p.dims[1].padding);
    const index_t w0 = coord[4] * index_t(p.dims[2].stride) - index_t(p.dims[2].padding);
    acc total = temporal_bias != nullptr ? temporal_bias[c] : acc(0);
    for (int a = 0; a < kt; ++a) {
      const index_t t = coord[2] * index_t(p.dims[0].stride) - index_t(p.dims[0].padding) + a * index_t(p.dims[0].dilation);
      if (t < 0 || t >= p.in_size[0]) continue;
      acc mid = spatial_bias != nullptr ? spatial_bias[c] : acc(0);
      for (int b = 0; b < kh; ++b) {
        const index_t h = h0 + b * index_t(p.dims[1].dilation);
        if (h < 0 || h >= p.in_size[1]) continue;
        const scalar_t* row = x + t * index_t(p.input_strides[2]) + h * index_t(p.input_strides[3]);
        for (int e = 0; e < kw; ++e) {
          const index_t w = w0 + e * index_t(p.dims[2].dilation);
          if (w < 0 || w >= p.in_size[2]) continue;
          mid += to_acc(row[w * index_t(p.input_strides[4])]) * spatial_weight[c * (kh * kw) + b * kw + e];
        }
      }
      if (p.mid_relu) mid = activate(mid, Activation::ReLU);
      total += mid * temporal_weight[c * kt + a];
    }
    index_t out = 0;
    for (int d = 0; d < 5; ++d) out += coord[d] * index_t(p.output_strides[d]);
    static_cast<scalar_t*>(p.output)[out] = from_acc<scalar_t>(total);
  }
}

template <typename scalar_t>
cudaError_t launch_typed(const Conv2Plus1dParams& p, cudaStream_t stream) {
  const int64_t count = p.batch * p.channels * p.out_size[0] * p.out_size[1] * p.out_size[2];
  if (count == 0) return cudaSuccess;
  const int64_t in_sizes[5] = {p.batch, p.channels, p.in_size[0], p.in_size[1], p.in_size[2]};
  const int64_t out_sizes[5] = {p.batch, p.channels, p.out_size[0], p.out_size[1], p.out_size[2]};
  const unsigned blocks = unsigned(std::min<int64_t>(ceil_div<int64_t>(count, kThreads), 65536));
  const bool small = grid_stride_fits_int32(count, blocks) && fits_int32(in_sizes, p.input_strides, 5) &&
                     fits_int32(out_sizes, p.output_strides, 5);
  const bool channels_inner = p.channels > 1 && p.output_strides[1] == 1;
  return small ? launch(conv2plus1d_depthwise_kernel<scalar_t, int32_t>, dim3(blocks), dim3(kThreads), 0, stream, p,
                        channels_inner)
               : launch(conv2plus1d_depthwise_kernel<scalar_t, int64_t>, dim3(blocks), dim3(kThreads), 0, stream, p,
                        channels_inner);
}

}  // namespace

cudaError_t launch_conv2plus1d_depthwise(const Conv2Plus1dParams& p, cudaStream_t stream) {
  switch (p.scalar) {
    case ScalarKind::Float: return launch_typed<float>(p, stream);
    case ScalarKind::Double: return launch_typed<double>(p, stream);
    case ScalarKind::Half: return launch_typed<__half>(p, stream);
    case ScalarKind::BFloat16: return launch_typed<__nv_bfloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace vid3d::cuda
