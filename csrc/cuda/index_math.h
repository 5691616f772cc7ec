// Index math of the CUDA kernels, usable from host and device code: convolution output sizes,
// the geometry of the shared-memory tiles (origin and extent of the input region a tile of
// outputs reads, halo included), the transposed stencil of the input gradient, the choice of tile
// sizes, and the channel permutation of the shuffles. No CUDA or torch headers: the C++ unit test
// tests/cpp/test_cuda_index_math.cpp compiles it with g++ and checks it against naive references.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define VID3D_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define VID3D_HOST_DEVICE inline
#endif

namespace vid3d::cuda {

// Rounds towards minus infinity (C++ division rounds towards zero); b > 0.
template <typename T>
VID3D_HOST_DEVICE T floor_div(T a, T b) {
  const T q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

template <typename T>
VID3D_HOST_DEVICE T ceil_div(T a, T b) {
  return -floor_div<T>(-a, b);
}

template <typename T>
VID3D_HOST_DEVICE T round_up(T a, T multiple) {
  return ceil_div<T>(a, multiple) * multiple;
}

// Output length of a convolution along one dimension (as F.conv3d).
VID3D_HOST_DEVICE int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding,
                                           int64_t dilation) {
  return (in + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
}

// One dimension of a convolution.
struct ConvDim {
  int64_t kernel, stride, padding, dilation;
};

// The input region [origin, origin + extent) that `outputs` outputs starting at output `first`
// read along one dimension (the tile's halo included).
struct Span {
  int64_t origin, extent;
};

VID3D_HOST_DEVICE Span forward_input_span(int64_t first, int64_t outputs, ConvDim d) {
  return {first * d.stride - d.padding, (outputs - 1) * d.stride + (d.kernel - 1) * d.dilation + 1};
}

// Offset of tap k of output `local` (counted from the tile's first output) in its input span.
VID3D_HOST_DEVICE int64_t forward_tap_offset(int64_t local, int64_t k, ConvDim d) {
  return local * d.stride + k * d.dilation;
}

// The input gradient as the transposed stencil: input i receives grad_output o through tap k when
// o * stride - padding + k * dilation == i. The grad_output region that `inputs` inputs starting
// at input `first` read (empty when extent <= 0, e.g. inputs that only stride skips).
VID3D_HOST_DEVICE Span transposed_output_span(int64_t first, int64_t inputs, ConvDim d) {
  const int64_t lo = ceil_div<int64_t>(first + d.padding - (d.kernel - 1) * d.dilation, d.stride);
  const int64_t hi = floor_div<int64_t>(first + inputs - 1 + d.padding, d.stride);
  return {lo, hi - lo + 1};
}

// The grad_output index that input i reads through tap k; `hit` is false where the stride skips
// it (the index is then meaningless). Templated on the integer type: kernels use int.
template <typename T>
struct TransposedTap {
  T output;
  bool hit;
};

template <typename T>
VID3D_HOST_DEVICE TransposedTap<T> transposed_tap(T input, T k, T stride, T padding, T dilation) {
  const T numerator = input + padding - k * dilation;
  const T o = floor_div<T>(numerator, stride);
  return {o, o * stride == numerator};
}

// The most grad_output positions any span of `inputs` inputs reads (the shared tile's extent):
// the inputs' numerators input + padding - k * dilation cover inputs + (kernel - 1) * dilation
// consecutive integers, of which at most this many are multiples of the stride.
VID3D_HOST_DEVICE int64_t transposed_span_max_extent(int64_t inputs, ConvDim d) {
  return ceil_div<int64_t>(inputs + (d.kernel - 1) * d.dilation, d.stride);
}

// Shared-memory row of `extent` elements starting at `origin`, widened to whole vectors of
// `vector` elements so that vector loads start at multiples of `vector` (global alignment).
struct AlignedRow {
  int64_t origin;  // first element held, a multiple of vector
  int64_t pitch;   // elements per row: the same for every tile of a launch
};

VID3D_HOST_DEVICE int64_t aligned_row_pitch(int64_t extent, int64_t vector) {
  return round_up<int64_t>(extent + vector - 1, vector);
}

VID3D_HOST_DEVICE AlignedRow aligned_row(int64_t origin, int64_t extent, int64_t vector) {
  return {floor_div<int64_t>(origin, vector) * vector, aligned_row_pitch(extent, vector)};
}

// Output tile sizes (T, H, W) of a launch. Starts from `preferred` and halves the largest
// dimension (ties: the outermost) until the input tile of `bytes_per_position` bytes per
// position fits in `max_bytes`; a 1x1x1 tile is returned even if it does not fit.
struct Tile {
  int64_t size[3];
};

VID3D_HOST_DEVICE int64_t tile_input_positions(const Tile& tile, const ConvDim* dims, int64_t row_vector) {
  int64_t positions = 1;
  for (int d = 0; d < 3; ++d) {
    const int64_t extent = forward_input_span(0, tile.size[d], dims[d]).extent;
    positions *= d == 2 ? aligned_row_pitch(extent, row_vector) : extent;
  }
  return positions;
}

VID3D_HOST_DEVICE Tile choose_tile(Tile preferred, const ConvDim* dims, int64_t row_vector,
                                   int64_t bytes_per_position, int64_t max_bytes) {
  Tile tile = preferred;
  while (tile_input_positions(tile, dims, row_vector) * bytes_per_position > max_bytes) {
    int largest = 0;
    for (int d = 1; d < 3; ++d)
      if (tile.size[d] > tile.size[largest]) largest = d;
    if (tile.size[largest] == 1) break;
    tile.size[largest] /= 2;
  }
  return tile;
}

// Channel shuffle with `groups` groups of C channels (F.channel_shuffle): channel i * (C / groups)
// + j of the input (concatenation) goes to channel j * groups + i of the output.
VID3D_HOST_DEVICE int64_t shuffled_channel(int64_t input_channel, int64_t groups, int64_t channels) {
  const int64_t per_group = channels / groups;
  return (input_channel % per_group) * groups + input_channel / per_group;
}

// The inverse: the input channel that output channel `output_channel` comes from.
VID3D_HOST_DEVICE int64_t unshuffled_channel(int64_t output_channel, int64_t groups, int64_t channels) {
  const int64_t per_group = channels / groups;
  return (output_channel % groups) * per_group + output_channel / groups;
}

}  // namespace vid3d::cuda
