// Depthwise conv3d forward kernels for float64 (instantiations of depthwise_forward.cuh).
#include "depthwise_forward.cuh"

namespace vid3d::cuda {
template cudaError_t launch_depthwise_forward<ScalarKind::Double>(const DepthwiseParams&, cudaStream_t);
}  // namespace vid3d::cuda
