// Depthwise conv3d backward kernels (runtime kernel size and stride, every dtype):
// - input gradient of a strided convolution as the transposed stencil: each block loads the
//   grad_output region its input tile receives from (halo included) into shared memory and every
//   input position gathers its taps from there, only those that meet grad_output (zeros outside it
//   times an Inf weight would add NaN); no atomics. (Stride-1 convolutions take the forward
//   kernels with the flipped weight instead, and this kernel only where the weight is not finite,
//   see glue.h.)
// - weight and bias gradients, deterministic by construction: each block owns one channel and a
//   fixed range of (sample, output tile)s; per tile it loads the input tile and the grad_output
//   tile into shared memory, threads own (tap, lane) accumulators in shared memory, and the block
//   sums its lanes in a fixed order into its slot of a partial buffer; a second kernel sums the
//   slots in order (in double). No float atomics anywhere, so the result is bitwise reproducible.
#include <algorithm>

#include "kernel_common.cuh"

namespace vid3d::cuda {
namespace {

struct InputGradLaunch {
  DepthwiseBackwardParams b;
  int tile[3];    // inputs per block along T, H, W
  int tiles[3];   // blocks along T, H, W
  int extent[3];  // grad_output tile along T, H, W (the most any input tile reads)
  int pitch;
  int row_vector;
  bool vector_loads;
};

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads) input_grad_kernel(const InputGradLaunch L) {
  using acc = acc_t<scalar_t>;
  const DepthwiseParams& p = L.b.conv;
  const int kt = int(p.dims[0].kernel), kh = int(p.dims[1].kernel), kw = int(p.dims[2].kernel);
  const int taps = kt * kh * kw;

  int64_t block = blockIdx.x;
  int tile_index[3];
  for (int d = 2; d >= 0; --d) {
    tile_index[d] = int(block % L.tiles[d]);
    block /= L.tiles[d];
  }
  const int64_t c = block % p.channels;
  const int64_t n = block / p.channels;
  if (L.b.skip_if != nullptr && *L.b.skip_if) return;

  acc* weights = reinterpret_cast<acc*>(shared_buffer());
  scalar_t* tile = reinterpret_cast<scalar_t*>(shared_buffer() + align16(int64_t(taps) * sizeof(acc)));
  for (int k = threadIdx.x; k < taps; k += blockDim.x) weights[k] = static_cast<const acc*>(p.weight)[c * taps + k];

  index_t first_input[3], origin[3];
  for (int d = 0; d < 3; ++d) {
    first_input[d] = index_t(tile_index[d]) * L.tile[d];
    origin[d] = index_t(transposed_output_span(first_input[d], L.tile[d], p.dims[d]).origin);
  }
  const index_t aligned_w = index_t(floor_div<int64_t>(origin[2], L.row_vector) * L.row_vector);
  const int shift = int(origin[2] - aligned_w);
  const index_t load_origin[3] = {origin[0], origin[1], aligned_w};
  const PlanarSource<scalar_t, index_t> src{
      static_cast<const scalar_t*>(p.output) + n * p.output_strides[0] + c * p.output_strides[1],
      {index_t(p.out_size[0]), index_t(p.out_size[1]), index_t(p.out_size[2])},
      {index_t(p.output_strides[2]), index_t(p.output_strides[3]), index_t(p.output_strides[4])}};
  load_planar_tile(tile, src, load_origin, L.extent, L.pitch, L.row_vector, L.vector_loads);
  __syncthreads();

  scalar_t* dx = static_cast<scalar_t*>(L.b.grad_input) + n * L.b.grad_input_strides[0] + c * L.b.grad_input_strides[1];
  const int dims[3][3] = {{int(p.dims[0].stride), int(p.dims[0].padding), int(p.dims[0].dilation)},
                          {int(p.dims[1].stride), int(p.dims[1].padding), int(p.dims[1].dilation)},
                          {int(p.dims[2].stride), int(p.dims[2].padding), int(p.dims[2].dilation)}};
  const int inputs = L.tile[0] * L.tile[1] * L.tile[2];
  for (int q = threadIdx.x; q < inputs; q += blockDim.x) {
    const int i[3] = {int(first_input[0]) + q / (L.tile[2] * L.tile[1]),
                      int(first_input[1]) + (q / L.tile[2]) % L.tile[1], int(first_input[2]) + q % L.tile[2]};
    if (i[0] >= p.in_size[0] || i[1] >= p.in_size[1] || i[2] >= p.in_size[2]) continue;
    acc sum = 0;
    for (int a = 0; a < kt; ++a) {
      const TransposedTap<int> tap_t = transposed_tap<int>(i[0], a, dims[0][0], dims[0][1], dims[0][2]);
      if (!tap_t.hit || tap_t.output < 0 || tap_t.output >= p.out_size[0]) continue;
      for (int b = 0; b < kh; ++b) {
        const TransposedTap<int> tap_h = transposed_tap<int>(i[1], b, dims[1][0], dims[1][1], dims[1][2]);
        if (!tap_h.hit || tap_h.output < 0 || tap_h.output >= p.out_size[1]) continue;
        const int row = ((tap_t.output - int(origin[0])) * L.extent[1] + tap_h.output - int(origin[1])) * L.pitch;
        for (int e = 0; e < kw; ++e) {
          const TransposedTap<int> tap_w = transposed_tap<int>(i[2], e, dims[2][0], dims[2][1], dims[2][2]);
          if (tap_w.hit && tap_w.output >= 0 && tap_w.output < p.out_size[2])
            sum += to_acc(tile[row + shift + tap_w.output - int(origin[2])]) * weights[(a * kh + b) * kw + e];
        }
      }
    }
    dx[i[0] * index_t(L.b.grad_input_strides[2]) + i[1] * index_t(L.b.grad_input_strides[3]) +
       i[2] * index_t(L.b.grad_input_strides[4])] = from_acc<scalar_t>(sum);
  }
}

struct ParamGradLaunch {
  DepthwiseBackwardParams b;
  int tile[3];   // outputs per tile along T, H, W
  int tiles[3];  // tiles along T, H, W
  int extent[3];
  int pitch;
  int row_vector;
  bool vector_loads;
  int lanes;  // accumulators per tap: threads split a tile's outputs this many ways
};

// Shared memory of the parameter-gradient kernel, in order: the input tile (scalar), the
// grad_output tile (scalar) and the (tap, lane) accumulators (acc).
template <typename scalar_t>
struct ParamGradShared {
  int64_t input_bytes, grad_bytes, total;
  __host__ __device__ ParamGradShared(const ParamGradLaunch& L, int64_t taps_total) {
    input_bytes = align16(int64_t(L.extent[0]) * L.extent[1] * L.pitch * sizeof(scalar_t));
    grad_bytes = align16(int64_t(L.tile[0]) * L.tile[1] * L.tile[2] * sizeof(scalar_t));
    total = input_bytes + grad_bytes + taps_total * L.lanes * sizeof(acc_t<scalar_t>);
  }
};

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads) param_grad_partial_kernel(const ParamGradLaunch L) {
  using acc = acc_t<scalar_t>;
  const DepthwiseParams& p = L.b.conv;
  const int kt = int(p.dims[0].kernel), kh = int(p.dims[1].kernel), kw = int(p.dims[2].kernel);
  const int taps = kt * kh * kw;
  const int taps_total = taps + 1;  // the bias is the last "tap": grad_output times one
  const int64_t c = blockIdx.x % p.channels;
  const int64_t chunk = blockIdx.x / p.channels;
  const int64_t tiles_per_sample = int64_t(L.tiles[0]) * L.tiles[1] * L.tiles[2];
  const int64_t tiles_total = p.batch * tiles_per_sample;
  const int64_t tile_begin = chunk * tiles_total / L.b.chunks;
  const int64_t tile_end = (chunk + 1) * tiles_total / L.b.chunks;

  const ParamGradShared<scalar_t> layout(L, taps_total);
  scalar_t* x_tile = reinterpret_cast<scalar_t*>(shared_buffer());
  scalar_t* g_tile = reinterpret_cast<scalar_t*>(shared_buffer() + layout.input_bytes);
  acc* sums = reinterpret_cast<acc*>(shared_buffer() + layout.input_bytes + layout.grad_bytes);  // [taps_total][lanes]
  const int lanes = L.lanes;
  const int taps_at_once = blockDim.x / lanes;
  const int lane = threadIdx.x % lanes;
  for (int i = threadIdx.x; i < taps_total * lanes; i += blockDim.x) sums[i] = acc(0);

  const int tile_outputs = L.tile[0] * L.tile[1] * L.tile[2];
  const int pitch_h = L.pitch, pitch_t = L.extent[1] * L.pitch;
  for (int64_t j = tile_begin; j < tile_end; ++j) {
    const int64_t n = j / tiles_per_sample;
    int64_t rest = j % tiles_per_sample;
    index_t first_output[3], origin[3];
    for (int d = 2; d >= 0; --d) {
      first_output[d] = index_t(rest % L.tiles[d]) * L.tile[d];
      rest /= L.tiles[d];
      origin[d] = index_t(first_output[d] * p.dims[d].stride - p.dims[d].padding);
    }
    const index_t aligned_w = index_t(floor_div<int64_t>(origin[2], L.row_vector) * L.row_vector);
    const int shift = int(origin[2] - aligned_w);
    const index_t load_origin[3] = {origin[0], origin[1], aligned_w};
    __syncthreads();  // the previous tile is consumed
    const PlanarSource<scalar_t, index_t> x_src{
        static_cast<const scalar_t*>(p.input) + n * p.input_strides[0] + c * p.input_strides[1],
        {index_t(p.in_size[0]), index_t(p.in_size[1]), index_t(p.in_size[2])},
        {index_t(p.input_strides[2]), index_t(p.input_strides[3]), index_t(p.input_strides[4])}};
    load_planar_tile(x_tile, x_src, load_origin, L.extent, L.pitch, L.row_vector, L.vector_loads);
    const PlanarSource<scalar_t, index_t> g_src{
        static_cast<const scalar_t*>(p.output) + n * p.output_strides[0] + c * p.output_strides[1],
        {index_t(p.out_size[0]), index_t(p.out_size[1]), index_t(p.out_size[2])},
        {index_t(p.output_strides[2]), index_t(p.output_strides[3]), index_t(p.output_strides[4])}};
    load_planar_tile(g_tile, g_src, first_output, L.tile, L.tile[2], 1, false);
    __syncthreads();

    // Outputs past the tensor's end (zeros in the tile) are skipped: times an Inf input they would
    // add NaN. Each (tap, lane) accumulator belongs to one thread; threads past
    // taps_at_once * lanes have none.
    int valid[3];
    for (int d = 0; d < 3; ++d) {
      const int64_t left = p.out_size[d] - int64_t(first_output[d]);
      valid[d] = left < L.tile[d] ? int(left) : L.tile[d];
    }
    for (int k = threadIdx.x / lanes; k < taps_total && int(threadIdx.x) < taps_at_once * lanes; k += taps_at_once) {
      const bool is_bias = k == taps;
      const int a = is_bias ? 0 : k / (kh * kw), b = is_bias ? 0 : (k / kw) % kh, e = is_bias ? 0 : k % kw;
      const int tap_offset = a * int(p.dims[0].dilation) * pitch_t + b * int(p.dims[1].dilation) * pitch_h +
                             e * int(p.dims[2].dilation) + shift;
      acc sum = 0;
      for (int q = lane; q < tile_outputs; q += lanes) {
        const int lw = q % L.tile[2], lh = (q / L.tile[2]) % L.tile[1], lt = q / (L.tile[2] * L.tile[1]);
        if (lw >= valid[2] || lh >= valid[1] || lt >= valid[0]) continue;
        const acc g = to_acc(g_tile[q]);
        const int x_at = lt * int(p.dims[0].stride) * pitch_t + lh * int(p.dims[1].stride) * pitch_h +
                         lw * int(p.dims[2].stride) + tap_offset;
        sum += is_bias ? g : g * to_acc(x_tile[x_at]);
      }
      sums[k * lanes + lane] += sum;
    }
  }
  __syncthreads();
  acc* partials = static_cast<acc*>(L.b.partials) + (chunk * p.channels + c) * taps_total;
  for (int k = threadIdx.x; k < taps_total; k += blockDim.x) {
    acc total = 0;
    for (int l = 0; l < lanes; ++l) total += sums[k * lanes + l];
    partials[k] = total;
  }
}

// grad_params[c][k] = sum over chunks, in chunk order, of partials[chunk][c][k].
template <typename acc>
__global__ void __launch_bounds__(kThreads) param_grad_reduce_kernel(const acc* partials, acc* grad_params,
                                                                      int64_t chunks, int64_t entries) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= entries) return;
  double total = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) total += double(partials[chunk * entries + i]);
  grad_params[i] = acc(total);
}

// Planar tile geometry shared by both backward kernels: 16-byte loads along W where aligned.
template <typename scalar_t>
bool planar_vector_loads(const void* data, const int64_t* strides) {
  constexpr int V = kVector<scalar_t>;
  return aligned16(data) && strides[4] == 1 && strides[0] % V == 0 && strides[1] % V == 0 &&
         strides[2] % V == 0 && strides[3] % V == 0;
}

Tile clamped_tile(Tile preferred, const int64_t* sizes) {
  for (int d = 0; d < 3; ++d) preferred.size[d] = std::max<int64_t>(1, std::min(preferred.size[d], sizes[d]));
  return preferred;
}

bool int32_offsets(const DepthwiseParams& p, const int64_t* extra_strides) {
  const int64_t in[5] = {p.batch, p.channels, p.in_size[0], p.in_size[1], p.in_size[2]};
  const int64_t out[5] = {p.batch, p.channels, p.out_size[0], p.out_size[1], p.out_size[2]};
  return fits_int32(in, p.input_strides, 5) && fits_int32(out, p.output_strides, 5) &&
         (extra_strides == nullptr || fits_int32(in, extra_strides, 5));
}

}  // namespace

template <ScalarKind kind>
cudaError_t launch_depthwise_input_grad(const DepthwiseBackwardParams& b, cudaStream_t stream) {
  using scalar_t = typename ScalarOf<kind>::type;
  const DepthwiseParams& p = b.conv;
  InputGradLaunch L{};
  L.b = b;
  L.vector_loads = planar_vector_loads<scalar_t>(p.output, p.output_strides);
  L.row_vector = L.vector_loads ? kVector<scalar_t> : 1;
  const Tile tile = clamped_tile({{4, 8, 32}}, p.in_size);
  for (int d = 0; d < 3; ++d) {
    L.tile[d] = int(tile.size[d]);
    L.tiles[d] = int(ceil_div<int64_t>(p.in_size[d], tile.size[d]));
    L.extent[d] = int(transposed_span_max_extent(tile.size[d], p.dims[d]));
  }
  L.pitch = int(aligned_row_pitch(L.extent[2], L.row_vector));
  const int64_t taps = p.dims[0].kernel * p.dims[1].kernel * p.dims[2].kernel;
  const int64_t bytes = align16(taps * sizeof(acc_t<scalar_t>)) +
                        int64_t(L.extent[0]) * L.extent[1] * L.pitch * sizeof(scalar_t);
  const int64_t blocks = p.batch * p.channels * L.tiles[0] * L.tiles[1] * L.tiles[2];
  if (blocks > int64_t(0x7fffffff)) return cudaErrorInvalidConfiguration;
  if (int32_offsets(p, b.grad_input_strides)) {
    return launch(input_grad_kernel<scalar_t, int32_t>, dim3(unsigned(blocks)), dim3(kThreads), bytes, stream, L);
  }
  return launch(input_grad_kernel<scalar_t, int64_t>, dim3(unsigned(blocks)), dim3(kThreads), bytes, stream, L);
}

// The tile of the weight gradient: a whole tile of outputs and its input tile in shared memory.
static Tile param_grad_tile(const DepthwiseParams& p, int row_vector, int64_t element_bytes) {
  return choose_tile(clamped_tile({{2, 8, 32}}, p.out_size), p.dims, row_vector, element_bytes, 32 * 1024);
}

int64_t depthwise_param_grad_chunks(const DepthwiseParams& p, int multiprocessors) {
  const Tile tile = param_grad_tile(p, 1, 4);
  int64_t tiles = p.batch;
  for (int d = 0; d < 3; ++d) tiles *= ceil_div<int64_t>(p.out_size[d], tile.size[d]);
  const int64_t wanted_blocks = int64_t(multiprocessors) * 8;
  return std::max<int64_t>(1, std::min(tiles, ceil_div<int64_t>(wanted_blocks, std::max<int64_t>(1, p.channels))));
}

template <ScalarKind kind>
cudaError_t launch_depthwise_param_grad(const DepthwiseBackwardParams& b, cudaStream_t stream) {
  using scalar_t = typename ScalarOf<kind>::type;
  using acc = acc_t<scalar_t>;
  const DepthwiseParams& p = b.conv;
  ParamGradLaunch L{};
  L.b = b;
  L.vector_loads = planar_vector_loads<scalar_t>(p.input, p.input_strides);
  L.row_vector = L.vector_loads ? kVector<scalar_t> : 1;
  // The tile is chosen as for 4-byte scalars whatever the dtype, so the chunk count the caller
  // sized the partial buffer with (depthwise_param_grad_chunks) covers the same tiles.
  const Tile tile = param_grad_tile(p, 1, 4);
  for (int d = 0; d < 3; ++d) {
    L.tile[d] = int(tile.size[d]);
    L.tiles[d] = int(ceil_div<int64_t>(p.out_size[d], tile.size[d]));
    L.extent[d] = int(forward_input_span(0, tile.size[d], p.dims[d]).extent);
  }
  L.pitch = int(aligned_row_pitch(L.extent[2], L.row_vector));
  const int64_t taps_total = p.dims[0].kernel * p.dims[1].kernel * p.dims[2].kernel + 1;
  L.lanes = int(std::max<int64_t>(1, kThreads / taps_total));
  const ParamGradShared<scalar_t> shared(L, taps_total);
  const int64_t blocks = b.chunks * p.channels;
  if (blocks > int64_t(0x7fffffff)) return cudaErrorInvalidConfiguration;
  const cudaError_t partial =
      int32_offsets(p, nullptr)
          ? launch(param_grad_partial_kernel<scalar_t, int32_t>, dim3(unsigned(blocks)), dim3(kThreads), shared.total,
                   stream, L)
          : launch(param_grad_partial_kernel<scalar_t, int64_t>, dim3(unsigned(blocks)), dim3(kThreads), shared.total,
                   stream, L);
  if (partial != cudaSuccess) return partial;
  const int64_t entries = p.channels * taps_total;
  return launch(param_grad_reduce_kernel<acc>, dim3(unsigned(ceil_div<int64_t>(entries, kThreads))), dim3(kThreads),
                0, stream, static_cast<const acc*>(b.partials), static_cast<acc*>(b.grad_params), b.chunks, entries);
}

#define VID3D_INSTANTIATE_BACKWARD(kind)                                                                   \
  template cudaError_t launch_depthwise_input_grad<kind>(const DepthwiseBackwardParams&, cudaStream_t); \
  template cudaError_t launch_depthwise_param_grad<kind>(const DepthwiseBackwardParams&, cudaStream_t);
VID3D_INSTANTIATE_BACKWARD(ScalarKind::Float)
VID3D_INSTANTIATE_BACKWARD(ScalarKind::Double)
VID3D_INSTANTIATE_BACKWARD(ScalarKind::Half)
VID3D_INSTANTIATE_BACKWARD(ScalarKind::BFloat16)
#undef VID3D_INSTANTIATE_BACKWARD

}  // namespace vid3d::cuda
