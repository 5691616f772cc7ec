// Depthwise conv3d forward kernels for float32 (instantiations of depthwise_forward.cuh).
#include "depthwise_forward.cuh"

namespace vid3d::cuda {
template cudaError_t launch_depthwise_forward<ScalarKind::Float>(const DepthwiseParams&, cudaStream_t);
}  // namespace vid3d::cuda
