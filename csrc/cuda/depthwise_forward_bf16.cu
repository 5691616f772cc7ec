// Depthwise conv3d forward kernels for bfloat16 (instantiations of depthwise_forward.cuh).
#include "depthwise_forward.cuh"

namespace vid3d::cuda {
template cudaError_t launch_depthwise_forward<ScalarKind::BFloat16>(const DepthwiseParams&, cudaStream_t);
}  // namespace vid3d::cuda
