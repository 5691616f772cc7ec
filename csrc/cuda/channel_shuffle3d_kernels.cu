// Cat + channel shuffle, forward and backward, as permuted copies: one launch per tensor of the
// concatenation copies its channels to (forward) or from (backward) their shuffled channels of the
// whole tensor, each element read and written once. Elements move as raw units: where both sides
// hold each (n, c) plane contiguously and 16-byte aligned, a unit is 16 bytes of a plane (wide
// loads and stores); otherwise one element, visited in the part's memory order (channels
// innermost for channels-last parts) so that the part side is coalesced.
#include <algorithm>

#include "kernel_common.cuh"

namespace vid3d::cuda {
namespace {

template <int Bytes>
struct alignas(Bytes) Unit {
  unsigned char bytes[Bytes];
};

// Sizes and strides in units; dims 2..4 are T, H, W (a plane of units is (1, 1, count)).
struct ShuffleLaunch {
  int64_t size[5];
  int64_t part_strides[5], whole_strides[5];
  int64_t first_channel, total_channels, groups;
  const void* source;
  void* destination;
  bool to_whole;
  bool channels_inner;  // visit channels fastest (channels-last part)
};

template <typename unit_t, typename index_t>
__global__ void __launch_bounds__(kThreads) shuffle_part_kernel(const ShuffleLaunch L) {
  const index_t count = index_t(L.size[0]) * index_t(L.size[1]) * index_t(L.size[2]) * index_t(L.size[3]) *
                        index_t(L.size[4]);
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += index_t(gridDim.x) * blockDim.x) {
    index_t rest = i, coord[5];
    if (L.channels_inner) {
      coord[1] = rest % index_t(L.size[1]);
      rest /= index_t(L.size[1]);
      for (int d = 4; d >= 2; --d) {
        coord[d] = rest % index_t(L.size[d]);
        rest /= index_t(L.size[d]);
      }
    } else {
      for (int d = 4; d >= 1; --d) {
        coord[d] = rest % index_t(L.size[d]);
        rest /= index_t(L.size[d]);
      }
    }
    coord[0] = rest;
    const index_t whole_channel =
        index_t(shuffled_channel(L.first_channel + coord[1], L.groups, L.total_channels));
    index_t part_offset = 0, whole_offset = whole_channel * index_t(L.whole_strides[1]);
    for (int d = 0; d < 5; ++d) {
      part_offset += coord[d] * index_t(L.part_strides[d]);
      if (d != 1) whole_offset += coord[d] * index_t(L.whole_strides[d]);
    }
    const unit_t* src = static_cast<const unit_t*>(L.source);
    unit_t* dst = static_cast<unit_t*>(L.destination);
    if (L.to_whole) {
      dst[whole_offset] = src[part_offset];
    } else {
      dst[part_offset] = src[whole_offset];
    }
  }
}

// Whether each (n, c) plane of a tensor is a dense run of elements (strides of size-1 dims do not
// matter) whose start is a multiple of 16 bytes from a 16-byte aligned base.
bool dense_planes(const int64_t* spatial, const int64_t* strides, int element_bytes, int64_t& plane_elements) {
  plane_elements = spatial[0] * spatial[1] * spatial[2];
  int64_t expected = 1;
  for (int d = 2; d >= 0; --d) {
    if (spatial[d] != 1 && strides[2 + d] != expected) return false;
    expected *= spatial[d];
  }
  const int64_t per_unit = 16 / element_bytes;
  return plane_elements % per_unit == 0 && strides[0] % per_unit == 0 && strides[1] % per_unit == 0;
}

template <typename unit_t>
cudaError_t launch_units(const ShuffleLaunch& L, cudaStream_t stream) {
  int64_t count = 1, part_span = 1, whole_span = 1;
  for (int d = 0; d < 5; ++d) {
    count *= L.size[d];
    const int64_t whole_size = d == 1 ? L.total_channels : L.size[d];
    part_span += (L.size[d] - 1) * L.part_strides[d];
    whole_span += (whole_size - 1) * L.whole_strides[d];
  }
  if (count == 0) return cudaSuccess;
  // Grid-stride loop: enough blocks to fill any GPU, few enough to stay within grid limits.
  const unsigned blocks = unsigned(std::min<int64_t>(ceil_div<int64_t>(count, kThreads), 65536));
  const bool small =
      grid_stride_fits_int32(count, blocks) && part_span < (int64_t(1) << 31) && whole_span < (int64_t(1) << 31);
  return small ? launch(shuffle_part_kernel<unit_t, int32_t>, dim3(blocks), dim3(kThreads), 0, stream, L)
               : launch(shuffle_part_kernel<unit_t, int64_t>, dim3(blocks), dim3(kThreads), 0, stream, L);
}

}  // namespace

cudaError_t launch_cat_shuffle_part(const ShuffleParams& p, cudaStream_t stream) {
  ShuffleLaunch L{};
  L.first_channel = p.first_channel;
  L.total_channels = p.total_channels;
  L.groups = p.groups;
  L.source = p.source;
  L.destination = p.destination;
  L.to_whole = p.to_whole;
  int64_t part_plane = 0, whole_plane = 0;
  const bool wide = aligned16(p.source) && aligned16(p.destination) &&
                    dense_planes(p.spatial, p.part_strides, p.element_bytes, part_plane) &&
                    dense_planes(p.spatial, p.whole_strides, p.element_bytes, whole_plane);
  const int64_t per_unit = wide ? 16 / p.element_bytes : 1;
  L.size[0] = p.batch;
  L.size[1] = p.part_channels;
  for (int d = 0; d < 5; ++d) {
    L.part_strides[d] = p.part_strides[d] / (d <= 1 ? per_unit : 1);
    L.whole_strides[d] = p.whole_strides[d] / (d <= 1 ? per_unit : 1);
  }
  if (wide) {
    L.size[2] = L.size[3] = 1;
    L.size[4] = part_plane / per_unit;
    L.part_strides[2] = L.part_strides[3] = L.whole_strides[2] = L.whole_strides[3] = 0;
    L.part_strides[4] = L.whole_strides[4] = 1;
    L.channels_inner = false;
    return launch_units<Unit<16>>(L, stream);
  }
  for (int d = 0; d < 3; ++d) L.size[2 + d] = p.spatial[d];
  // Channels innermost in the part's memory: visit them fastest.
  L.channels_inner = p.part_channels > 1 && p.part_strides[1] == 1;
  switch (p.element_bytes) {
    case 1: return launch_units<Unit<1>>(L, stream);
    case 2: return launch_units<Unit<2>>(L, stream);
    case 4: return launch_units<Unit<4>>(L, stream);
    case 8: return launch_units<Unit<8>>(L, stream);
    case 16: return launch_units<Unit<16>>(L, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace vid3d::cuda
