// CUDA registration of the vid3d_native ops: the glue of glue.h with the CUDA runtime. Every op
// runs under a device guard on the current stream, checks each launch (cudaGetLastError, raised
// by C10_CUDA_CHECK) and never synchronizes with the host.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <mutex>
#include <vector>

#include "glue.h"

namespace vid3d::cuda {
namespace {

struct CudaRuntime {
  static constexpr const char* kDevice = "CUDA";
  using Guard = c10::cuda::CUDAGuard;
  static bool is_device_tensor(const at::Tensor& t) { return t.is_cuda(); }
  static cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
  static void check(cudaError_t error) { C10_CUDA_CHECK(error); }
  // Queried once per device (an attribute query: no synchronization with the GPU).
  static int multiprocessors() {
    static std::mutex mutex;
    static std::vector<int> counts;
    const std::lock_guard<std::mutex> lock(mutex);
    if (counts.empty()) counts.assign(c10::cuda::device_count(), 0);
    const int device = c10::cuda::current_device();
    if (counts[device] == 0) C10_CUDA_CHECK(cudaDeviceGetAttribute(&counts[device], cudaDevAttrMultiProcessorCount, device));
    return counts[device];
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(vid3d_native, CUDA, m) {
  m.impl("depthwise_conv3d_forward", &glue::depthwise_conv3d_forward<CudaRuntime>);
  m.impl("depthwise_conv3d_backward", &glue::depthwise_conv3d_backward<CudaRuntime>);
  m.impl("cat_shuffle3d_forward", &glue::cat_shuffle3d_forward<CudaRuntime>);
  m.impl("cat_shuffle3d_backward", &glue::cat_shuffle3d_backward<CudaRuntime>);
  m.impl("conv2plus1d_depthwise_forward", &glue::conv2plus1d_depthwise_forward<CudaRuntime>);
}

}  // namespace vid3d::cuda
