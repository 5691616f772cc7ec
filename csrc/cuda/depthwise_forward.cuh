// Depthwise conv3d forward: one tiled kernel, templated on the scalar type, the index type, the
// channels each thread computes (1: planar layout, one channel per block, 16-byte loads along W;
// kVector: channels-last layout, a block of channels per block, 16-byte loads along C) and the
// stencil (kernel size and stride; 0 = read at run time, the generic kernel). Each block loads the
// input tile its outputs read (halo included) into shared memory once, then every thread sums its
// outputs' taps from there and applies bias and activation. The per-dtype files
// depthwise_forward_*.cu instantiate launch_depthwise_forward, so each compiles on its own.
#pragma once

#include <algorithm>
#include <tuple>
#include <type_traits>

#include "kernel_common.cuh"

namespace vid3d::cuda {

// A kernel size and stride compiled in; 0 means read from the parameters.
template <int KT, int KH, int KW, int ST, int SH, int SW>
struct Stencil {
  static constexpr int kt = KT, kh = KH, kw = KW, st = ST, sh = SH, sw = SW;
  static bool matches(const DepthwiseParams& p) {
    return p.dims[0].kernel == KT && p.dims[1].kernel == KH && p.dims[2].kernel == KW && p.dims[0].stride == ST &&
           p.dims[1].stride == SH && p.dims[2].stride == SW;
  }
};

using GenericStencil = Stencil<0, 0, 0, 0, 0, 0>;

// The stencils of the reference models (3x3x3 everywhere, 1x3x3 and 3x1x1 in (2+1)D and CSN
// blocks, 5x5x5 and 3x5x5 in X3D-like and searched nets), each at stride 1 and its stride-2 forms.
using TemplatedStencils = std::tuple<
    Stencil<3, 3, 3, 1, 1, 1>, Stencil<3, 3, 3, 2, 2, 2>, Stencil<3, 3, 3, 1, 2, 2>,
    Stencil<1, 3, 3, 1, 1, 1>, Stencil<1, 3, 3, 1, 2, 2>,
    Stencil<3, 1, 1, 1, 1, 1>, Stencil<3, 1, 1, 2, 1, 1>,
    Stencil<5, 5, 5, 1, 1, 1>, Stencil<5, 5, 5, 2, 2, 2>,
    Stencil<3, 5, 5, 1, 1, 1>, Stencil<3, 5, 5, 1, 2, 2>>;

// Everything a forward launch decided on the host.
struct ForwardLaunch {
  DepthwiseParams p;
  int tile[3];         // outputs per block along T, H, W
  int tiles[3];        // blocks along T, H, W
  int64_t channel_blocks;
  int block_channels;  // channels per block: 1 (planar) or a multiple of kVector (channels-last)
  int extent[3];       // input tile (halo included) along T, H, W
  int pitch;           // shared positions per tile row (W): extent[2], widened for aligned loads
  int row_vector;      // planar: elements per load along W (kVector or 1)
  bool vector_loads;   // 16-byte global loads: along W (planar) or C (channels-last)
  bool vector_stores;  // channels-last: 16-byte stores of a thread's channels
};

template <typename scalar_t, typename index_t, int CPT>
__device__ __forceinline__ void load_channels_last_tile(scalar_t* tile, const ForwardLaunch& L, const scalar_t* x,
                                                        const index_t* origin, int64_t first_channel) {
  const DepthwiseParams& p = L.p;
  const int runs_per_position = L.block_channels / CPT;
  const int positions = L.extent[0] * L.extent[1] * L.extent[2];
  const index_t size[3] = {index_t(p.in_size[0]), index_t(p.in_size[1]), index_t(p.in_size[2])};
  for (int i = threadIdx.x; i < positions * runs_per_position; i += blockDim.x) {
    const int position = i / runs_per_position;
    const int run = i - position * runs_per_position;
    const index_t w = origin[2] + position % L.extent[2];
    const index_t h = origin[1] + (position / L.extent[2]) % L.extent[1];
    const index_t t = origin[0] + position / (L.extent[2] * L.extent[1]);
    const bool inside = t >= 0 && t < size[0] && h >= 0 && h < size[1] && w >= 0 && w < size[2];
    const index_t channel = static_cast<index_t>(run) * CPT;
    const scalar_t* first =
        inside ? x + t * index_t(p.input_strides[2]) + h * index_t(p.input_strides[3]) +
                     w * index_t(p.input_strides[4]) + channel * index_t(p.input_strides[1])
               : x;
    const int valid = inside ? clamp_to_run<int64_t>(p.channels - first_channel - channel, CPT) : 0;
    copy_run(tile + position * L.block_channels + channel, first, index_t(p.input_strides[1]), CPT, 0, valid,
             L.vector_loads);
  }
}

// At most 64 registers (4 blocks of 256 threads per SM): unbounded, ptxas gave the channels-last
// 3x3x3 half kernels 128 registers (2 blocks per SM); bounded, it spills nothing (make cuda-resources).
template <typename scalar_t, typename index_t, int CPT, typename S>
__global__ void __launch_bounds__(kThreads, 4) depthwise_forward_kernel(const ForwardLaunch L) {
  using acc = acc_t<scalar_t>;
  constexpr bool channels_last = CPT > 1;
  constexpr bool kUnrollAll = S::kt * S::kh * S::kw <= 27;
  const DepthwiseParams& p = L.p;
  // Compile-time where the stencil fixes them, so the tap loops unroll.
  const int kt = S::kt ? S::kt : int(p.dims[0].kernel);
  const int kh = S::kh ? S::kh : int(p.dims[1].kernel);
  const int kw = S::kw ? S::kw : int(p.dims[2].kernel);
  const int st = S::st ? S::st : int(p.dims[0].stride);
  const int sh = S::sh ? S::sh : int(p.dims[1].stride);
  const int sw = S::sw ? S::sw : int(p.dims[2].stride);
  const int taps = kt * kh * kw;
  const int channels_per_block = L.block_channels;

  // Block -> (sample, channel block, tile); tiles fastest, so neighbours share halos in L2.
  int64_t block = blockIdx.x;
  const int tile_w = int(block % L.tiles[2]);
  block /= L.tiles[2];
  const int tile_h = int(block % L.tiles[1]);
  block /= L.tiles[1];
  const int tile_t = int(block % L.tiles[0]);
  block /= L.tiles[0];
  const int64_t first_channel = (block % L.channel_blocks) * channels_per_block;
  const int64_t n = block / L.channel_blocks;
  const index_t first_output[3] = {index_t(tile_t) * L.tile[0], index_t(tile_h) * L.tile[1],
                                   index_t(tile_w) * L.tile[2]};

  acc* weights = reinterpret_cast<acc*>(shared_buffer());  // [taps][channels_per_block]
  scalar_t* tile = reinterpret_cast<scalar_t*>(shared_buffer() + align16(int64_t(taps) * channels_per_block * sizeof(acc)));

  const acc* weight = static_cast<const acc*>(p.weight);
  for (int i = threadIdx.x; i < taps * channels_per_block; i += blockDim.x) {
    const int k = i / channels_per_block;
    const int64_t c = first_channel + i % channels_per_block;
    weights[i] = c < p.channels ? weight[c * taps + k] : acc(0);
  }

  index_t origin[3];
  for (int d = 0; d < 3; ++d) origin[d] = index_t(first_output[d] * p.dims[d].stride - p.dims[d].padding);
  const scalar_t* x = static_cast<const scalar_t*>(p.input) + n * p.input_strides[0] + first_channel * p.input_strides[1];
  int shift = 0;  // where the tile's first input column sits in a shared row
  if constexpr (channels_last) {
    load_channels_last_tile<scalar_t, index_t, CPT>(tile, L, x, origin, first_channel);
  } else {
    const index_t aligned_w = index_t(floor_div<int64_t>(origin[2], L.row_vector) * L.row_vector);
    shift = int(origin[2] - aligned_w);
    const index_t load_origin[3] = {origin[0], origin[1], aligned_w};
    const PlanarSource<scalar_t, index_t> src{
        x,
        {index_t(p.in_size[0]), index_t(p.in_size[1]), index_t(p.in_size[2])},
        {index_t(p.input_strides[2]), index_t(p.input_strides[3]), index_t(p.input_strides[4])}};
    load_planar_tile(tile, src, load_origin, L.extent, L.pitch, L.row_vector, L.vector_loads);
  }
  __syncthreads();

  const int channel_groups = channels_per_block / CPT;
  const int slots = blockDim.x / channel_groups;
  const int slot = threadIdx.x / channel_groups;
  const int group_channel = (threadIdx.x % channel_groups) * CPT;  // first channel of this thread
  if (slot >= slots) return;
  const int step_t = int(p.dims[0].dilation) * L.extent[1] * L.pitch * channels_per_block;
  const int step_h = int(p.dims[1].dilation) * L.pitch * channels_per_block;
  const int step_w = int(p.dims[2].dilation) * channels_per_block;
  const acc* bias = static_cast<const acc*>(p.bias);
  scalar_t* y = static_cast<scalar_t*>(p.output) + n * p.output_strides[0] + first_channel * p.output_strides[1];
  const int outputs = L.tile[0] * L.tile[1] * L.tile[2];

  for (int q = slot; q < outputs; q += slots) {
    const int lw = q % L.tile[2];
    const int lh = (q / L.tile[2]) % L.tile[1];
    const int lt = q / (L.tile[2] * L.tile[1]);
    const index_t ot = first_output[0] + lt, oh = first_output[1] + lh, ow = first_output[2] + lw;
    if (ot >= p.out_size[0] || oh >= p.out_size[1] || ow >= p.out_size[2]) continue;
    const int base = ((lt * st * L.extent[1] + lh * sh) * L.pitch + shift + lw * sw) * channels_per_block + group_channel;
    acc sum[CPT];
#pragma unroll
    for (int e = 0; e < CPT; ++e) sum[e] = acc(0);
    // Stencils of up to 27 taps unroll fully; larger ones (5x5x5, 3x5x5) unroll their rows only,
    // which keeps the code and the register count small.
#pragma unroll(kUnrollAll ? (S::kt > 0 ? S::kt : 1) : 1)
    for (int a = 0; a < kt; ++a) {
#pragma unroll(kUnrollAll ? (S::kh > 0 ? S::kh : 1) : 1)
      for (int b = 0; b < kh; ++b) {
#pragma unroll
        for (int c = 0; c < kw; ++c) {
          const int offset = base + a * step_t + b * step_h + c * step_w;
          const acc* w = weights + ((a * kh + b) * kw + c) * channels_per_block + group_channel;
          if constexpr (channels_last) {
            // CPT channels are 16 bytes, 16-byte aligned in the tile: one shared load.
            const uint4 raw = *reinterpret_cast<const uint4*>(tile + offset);
            const scalar_t* values = reinterpret_cast<const scalar_t*>(&raw);
#pragma unroll
            for (int e = 0; e < CPT; ++e) sum[e] += to_acc(values[e]) * w[e];
          } else {
            sum[0] += to_acc(tile[offset]) * w[0];
          }
        }
      }
    }

    scalar_t* out = y + ot * index_t(p.output_strides[2]) + oh * index_t(p.output_strides[3]) +
                    ow * index_t(p.output_strides[4]) + index_t(group_channel) * index_t(p.output_strides[1]);
    const int64_t channel0 = first_channel + group_channel;
    alignas(16) scalar_t result[CPT];
#pragma unroll
    for (int e = 0; e < CPT; ++e) {
      const acc with_bias = sum[e] + (bias != nullptr && channel0 + e < p.channels ? bias[channel0 + e] : acc(0));
      result[e] = from_acc<scalar_t>(activate(with_bias, p.activation));
    }
    if constexpr (channels_last) {
      if (L.vector_stores && channel0 + CPT <= p.channels) {
        *reinterpret_cast<uint4*>(out) = *reinterpret_cast<const uint4*>(result);
        continue;
      }
    }
#pragma unroll
    for (int e = 0; e < CPT; ++e)
      if (channel0 + e < p.channels) out[e * index_t(p.output_strides[1])] = result[e];
  }
}

template <typename scalar_t, typename index_t, int CPT, typename S>
cudaError_t launch_forward_variant(const ForwardLaunch& L, int64_t shared_bytes, cudaStream_t stream) {
  const int64_t blocks = L.p.batch * L.channel_blocks * L.tiles[0] * L.tiles[1] * L.tiles[2];
  if (blocks > int64_t(0x7fffffff)) return cudaErrorInvalidConfiguration;
  return launch(depthwise_forward_kernel<scalar_t, index_t, CPT, S>, dim3(unsigned(blocks)), dim3(kThreads),
                shared_bytes, stream, L);
}

// Calls launch_with(stencil) with the first templated stencil that matches p, else the generic one.
// Double and 64-bit indices take the generic kernel only (rare; keeps the instantiations few).
template <bool templated, typename Launch, typename... Stencils>
cudaError_t dispatch_stencil(const DepthwiseParams& p, Launch&& launch_with, std::tuple<Stencils...>*) {
  cudaError_t result = cudaSuccess;
  bool launched = false;
  if constexpr (templated) {
    ((!launched && Stencils::matches(p) ? (result = launch_with(Stencils{}), launched = true) : false), ...);
  }
  return launched ? result : launch_with(GenericStencil{});
}

template <ScalarKind kind>
cudaError_t launch_depthwise_forward(const DepthwiseParams& p, cudaStream_t stream) {
  using scalar_t = typename ScalarOf<kind>::type;
  using acc = acc_t<scalar_t>;
  constexpr int V = kVector<scalar_t>;
  const int64_t* xs = p.input_strides;
  const int64_t* ys = p.output_strides;
  const bool channels_last = xs[1] == 1 && ys[1] == 1 && p.channels > 1;

  ForwardLaunch L{};
  L.p = p;
  Tile preferred;
  int64_t bytes_per_position;
  if (channels_last) {
    // Two 16-byte vectors of channels per position: whole 32-byte sectors per load.
    L.block_channels = p.channels > V ? 2 * V : V;
    L.vector_loads = aligned16(p.input) && xs[0] % V == 0 && xs[2] % V == 0 && xs[3] % V == 0 && xs[4] % V == 0;
    L.vector_stores = aligned16(p.output) && ys[0] % V == 0 && ys[2] % V == 0 && ys[3] % V == 0 && ys[4] % V == 0;
    L.row_vector = 1;
    preferred = {{4, 8, 8}};
  } else {
    L.block_channels = 1;
    L.vector_loads = aligned16(p.input) && xs[4] == 1 && xs[0] % V == 0 && xs[1] % V == 0 && xs[2] % V == 0 &&
                     xs[3] % V == 0;
    L.row_vector = L.vector_loads ? V : 1;
    preferred = {{4, 8, 32}};
  }
  bytes_per_position = int64_t(L.block_channels) * sizeof(scalar_t);
  for (int d = 0; d < 3; ++d) preferred.size[d] = std::max<int64_t>(1, std::min(preferred.size[d], p.out_size[d]));
  const Tile tile = choose_tile(preferred, p.dims, L.row_vector, bytes_per_position, 40 * 1024);
  for (int d = 0; d < 3; ++d) {
    L.tile[d] = int(tile.size[d]);
    L.tiles[d] = int(ceil_div<int64_t>(p.out_size[d], tile.size[d]));
    L.extent[d] = int(forward_input_span(0, tile.size[d], p.dims[d]).extent);
  }
  L.pitch = channels_last ? L.extent[2] : int(aligned_row_pitch(L.extent[2], L.row_vector));
  L.channel_blocks = ceil_div<int64_t>(p.channels, L.block_channels);
  const int64_t taps = p.dims[0].kernel * p.dims[1].kernel * p.dims[2].kernel;
  const int64_t shared_bytes = align16(taps * L.block_channels * sizeof(acc)) +
                               int64_t(L.extent[0]) * L.extent[1] * L.pitch * bytes_per_position;

  const int64_t sizes_in[5] = {p.batch, p.channels, p.in_size[0], p.in_size[1], p.in_size[2]};
  const int64_t sizes_out[5] = {p.batch, p.channels, p.out_size[0], p.out_size[1], p.out_size[2]};
  const bool small = fits_int32(sizes_in, xs, 5) && fits_int32(sizes_out, ys, 5);
  constexpr bool templated = !std::is_same_v<scalar_t, double>;
  auto run = [&](auto index, auto cpt) {
    using index_t = decltype(index);
    constexpr int CPT = decltype(cpt)::value;
    constexpr bool with_templates = templated && std::is_same_v<index_t, int32_t>;
    return dispatch_stencil<with_templates>(p, [&](auto stencil) {
      return launch_forward_variant<scalar_t, index_t, CPT, decltype(stencil)>(L, shared_bytes, stream);
    }, static_cast<TemplatedStencils*>(nullptr));
  };
  using Planar = std::integral_constant<int, 1>;
  using ChannelsLast = std::integral_constant<int, V>;
  if (small) return channels_last ? run(int32_t{}, ChannelsLast{}) : run(int32_t{}, Planar{});
  return channels_last ? run(int64_t{}, ChannelsLast{}) : run(int64_t{}, Planar{});
}

}  // namespace vid3d::cuda
