// Device helpers shared by the CUDA kernels: scalar types and their accumulation types, the
// shared-memory tile loader (runs of elements copied with one 16-byte load where the whole run is
// in bounds and aligned, element by element otherwise, zeros outside the tensor), the bias +
// activation epilogue, and launch helpers. Included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels.h"

namespace vid3d::cuda {

constexpr int kThreads = 256;

template <ScalarKind kind>
struct ScalarOf;
template <>
struct ScalarOf<ScalarKind::Float> { using type = float; };
template <>
struct ScalarOf<ScalarKind::Double> { using type = double; };
template <>
struct ScalarOf<ScalarKind::Half> { using type = __half; };
template <>
struct ScalarOf<ScalarKind::BFloat16> { using type = __nv_bfloat16; };

template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Explicit conversions: torch builds CUDA code with the implicit half/bfloat16 conversions off.
template <typename scalar_t>
__device__ __forceinline__ acc_t<scalar_t> to_acc(scalar_t v) {
  if constexpr (std::is_same_v<scalar_t, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<scalar_t, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return v;
  }
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t from_acc(acc_t<scalar_t> v) {
  if constexpr (std::is_same_v<scalar_t, __half>) {
    return __float2half_rn(v);
  } else if constexpr (std::is_same_v<scalar_t, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return v;
  }
}

// Elements per 16-byte vector.
template <typename scalar_t>
constexpr int kVector = 16 / sizeof(scalar_t);

// Copies `run` elements that lie at src[i * stride], i < run, to dst[i], taking element i only
// where valid_begin <= i < valid_end (zeros elsewhere). One 16-byte load when `vector` (the caller
// checked alignment and unit stride) and the whole run is valid; run == kVector then.
template <typename scalar_t, typename index_t>
__device__ __forceinline__ void copy_run(scalar_t* dst, const scalar_t* src, index_t stride, int run,
                                         int valid_begin, int valid_end, bool vector) {
  if (vector && valid_begin <= 0 && valid_end >= run) {
    *reinterpret_cast<uint4*>(dst) = __ldg(reinterpret_cast<const uint4*>(src));
    return;
  }
  const scalar_t zero = from_acc<scalar_t>(0);
  for (int i = 0; i < run; ++i) dst[i] = (i >= valid_begin && i < valid_end) ? src[i * stride] : zero;
}

// Clamps a bound of the valid elements of a run to [0, run].
template <typename index_t>
__device__ __forceinline__ int clamp_to_run(index_t bound, int run) {
  return bound < 0 ? 0 : (bound > run ? run : static_cast<int>(bound));
}

// A region of one (n, c) plane of a 5-D tensor, for the planar tile loader.
template <typename scalar_t, typename index_t>
struct PlanarSource {
  const scalar_t* plane;  // element (n, c, 0, 0, 0)
  index_t size[3];        // T, H, W
  index_t stride[3];      // T, H, W strides in elements
};

// Loads elements [origin, origin + extent) (T, H) x [origin_w, origin_w + pitch) (W) of the plane
// into tile[t][h][pitch] by the whole block, zeros outside the tensor. origin_w is a multiple of
// row_vector, which is kVector when `vector` (unit W stride, aligned rows) and 1 otherwise.
template <typename scalar_t, typename index_t>
__device__ __forceinline__ void load_planar_tile(scalar_t* tile, const PlanarSource<scalar_t, index_t>& src,
                                                 const index_t* origin, const int* extent, int pitch,
                                                 int row_vector, bool vector) {
  const int runs_per_row = pitch / row_vector;
  const int runs = extent[0] * extent[1] * runs_per_row;
  for (int i = threadIdx.x; i < runs; i += blockDim.x) {
    const int row = i / runs_per_row;
    const int run = i - row * runs_per_row;
    const index_t t = origin[0] + row / extent[1];
    const index_t h = origin[1] + row % extent[1];
    const index_t w = origin[2] + static_cast<index_t>(run) * row_vector;
    const bool row_ok = t >= 0 && t < src.size[0] && h >= 0 && h < src.size[1];
    const scalar_t* first = row_ok ? src.plane + t * src.stride[0] + h * src.stride[1] + w * src.stride[2]
                                   : src.plane;
    copy_run(tile + row * pitch + run * row_vector, first, src.stride[2], row_vector,
             row_ok ? clamp_to_run<index_t>(-w, row_vector) : 0,
             row_ok ? clamp_to_run<index_t>(src.size[2] - w, row_vector) : 0, vector);
  }
}

// Written so that NaN fails every comparison and passes through, as F.relu and F.relu6 keep it.
template <typename acc>
__device__ __forceinline__ acc activate(acc v, Activation activation) {
  if (activation == Activation::ReLU) return v < acc(0) ? acc(0) : v;
  if (activation == Activation::ReLU6) return v < acc(0) ? acc(0) : (v > acc(6) ? acc(6) : v);
  return v;
}

// The dynamic shared memory of a block, 16-byte aligned. (VID3D_CUDA_HOST_EMULATION: the kernels
// run on the host for tests/test_cuda_emulated.py, see tests/cpp/cuda_host_emulation.h.)
__device__ __forceinline__ unsigned char* shared_buffer() {
#if defined(VID3D_CUDA_HOST_EMULATION)
  return vid3d_emulation::block_shared_memory();
#else
  extern __shared__ __align__(16) unsigned char buffer[];
  return buffer;
#endif
}

__host__ __device__ constexpr int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

inline bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// Whether offsets up to the largest offset of a tensor of these sizes and strides fit in int32.
inline bool fits_int32(const int64_t* sizes, const int64_t* strides, int dims) {
  int64_t span = 1;
  for (int d = 0; d < dims; ++d) span += (sizes[d] > 0 ? sizes[d] - 1 : 0) * (strides[d] < 0 ? -strides[d] : strides[d]);
  return span < (int64_t(1) << 31);
}

// Grid-stride loops of `count` items on `blocks` blocks: whether every index they form, the last
// step past the end included, fits in int32.
inline bool grid_stride_fits_int32(int64_t count, unsigned blocks) {
  return count + int64_t(blocks) * kThreads < (int64_t(1) << 31);
}

// Launches kernel with `bytes` of dynamic shared memory, raising the per-kernel limit above the
// default 48 KB when needed; returns the launch's error.
template <typename... KernelArgs, typename... Args>
cudaError_t launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, int64_t bytes, cudaStream_t stream,
                   Args&&... args) {
#if defined(VID3D_CUDA_HOST_EMULATION)
  (void)stream;
  return vid3d_emulation::run_grid(kernel, grid, block, bytes, std::forward<Args>(args)...);
#else
  if (bytes > 48 * 1024) {
    const cudaError_t raised =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    if (raised != cudaSuccess) return raised;
  }
  kernel<<<grid, block, bytes, stream>>>(std::forward<Args>(args)...);
  return cudaGetLastError();
#endif
}

}  // namespace vid3d::cuda
