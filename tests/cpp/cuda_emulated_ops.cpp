// vid3d's CUDA kernels and their torch glue, compiled for the host and run by the emulation of
// cuda_host_emulation.h, registered as the ops vid3d_emulated::* on CPU tensors (same arguments as
// vid3d_native::*). tests/test_cuda_emulated.py builds this with torch.utils.cpp_extension and runs
// the CUDA backend's tests through it: the kernels' own code, checked without a GPU.
#define VID3D_CUDA_HOST_EMULATION
#include "cuda_host_emulation.h"

#include "cuda/channel_shuffle3d_kernels.cu"
#include "cuda/conv2plus1d_kernels.cu"
#include "cuda/depthwise_backward.cu"
#include "cuda/depthwise_forward.cuh"
#include "cuda/glue.h"

#include <torch/library.h>

namespace vid3d::cuda {

template cudaError_t launch_depthwise_forward<ScalarKind::Float>(const DepthwiseParams&, cudaStream_t);
template cudaError_t launch_depthwise_forward<ScalarKind::Double>(const DepthwiseParams&, cudaStream_t);
template cudaError_t launch_depthwise_forward<ScalarKind::Half>(const DepthwiseParams&, cudaStream_t);
template cudaError_t launch_depthwise_forward<ScalarKind::BFloat16>(const DepthwiseParams&, cudaStream_t);

namespace {

struct EmulatedRuntime {
  static constexpr const char* kDevice = "CPU (emulated CUDA)";
  struct Guard {
    explicit Guard(c10::Device) {}
  };
  static bool is_device_tensor(const at::Tensor& t) { return t.is_cpu(); }
  static cudaStream_t stream() { return nullptr; }
  static void check(cudaError_t error) { TORCH_CHECK(error == cudaSuccess, "emulated launch failed: error ", int(error)); }
  static int multiprocessors() { return 2; }  // few blocks: several tiles per weight-gradient chunk
};

}  // namespace

TORCH_LIBRARY(vid3d_emulated, m) {
  m.def("depthwise_conv3d_forward", &glue::depthwise_conv3d_forward<EmulatedRuntime>);
  m.def("depthwise_conv3d_backward", &glue::depthwise_conv3d_backward<EmulatedRuntime>);
  m.def("cat_shuffle3d_forward", &glue::cat_shuffle3d_forward<EmulatedRuntime>);
  m.def("cat_shuffle3d_backward", &glue::cat_shuffle3d_backward<EmulatedRuntime>);
  m.def("conv2plus1d_depthwise_forward", &glue::conv2plus1d_depthwise_forward<EmulatedRuntime>);
}

}  // namespace vid3d::cuda
