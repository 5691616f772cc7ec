// Depthwise conv3d forward kernels for float16 (instantiations of depthwise_forward.cuh).
#include "depthwise_forward.cuh"

namespace vid3d::cuda {
template cudaError_t launch_depthwise_forward<ScalarKind::Half>(const DepthwiseParams&, cudaStream_t);
}  // namespace vid3d::cuda
