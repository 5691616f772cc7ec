// Helpers of the CUDA ops' torch glue (the .cpp files of csrc/cuda): tensor checks, the plain
// parameter structs' fields from tensors, the current stream and launch-error checks. Included by
// the glue only, never by the kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string>

#include "kernels.h"

namespace vid3d::cuda {

inline ScalarKind scalar_kind(at::ScalarType type, const char* op) {
  switch (type) {
    case at::kFloat: return ScalarKind::Float;
    case at::kDouble: return ScalarKind::Double;
    case at::kHalf: return ScalarKind::Half;
    case at::kBFloat16: return ScalarKind::BFloat16;
    default: TORCH_CHECK(false, "vid3d ", op, " (cuda): unsupported dtype ", type);
  }
}

// The kernels accumulate (and take weights and biases) in double for double tensors, else float.
inline at::ScalarType accumulation_type(at::ScalarType type) {
  return type == at::kDouble ? at::kDouble : at::kFloat;
}

inline void copy_strides(int64_t* dst, const at::Tensor& t) {
  for (int d = 0; d < 5; ++d) dst[d] = t.stride(d);
}

inline void copy_sizes(int64_t* dst, const at::Tensor& t) {
  for (int d = 0; d < 3; ++d) dst[d] = t.size(2 + d);
}

// Every tensor on the same CUDA device as `first`.
inline void check_same_cuda_device(const at::Tensor& first, std::initializer_list<const at::Tensor*> others,
                                   const char* op) {
  TORCH_CHECK(first.is_cuda(), "vid3d ", op, " (cuda): expected CUDA tensors");
  for (const at::Tensor* t : others) {
    TORCH_CHECK(t->device() == first.device(), "vid3d ", op, " (cuda): all tensors must be on ", first.device());
  }
}

// A per-channel parameter as the kernels read it: contiguous, in the accumulation type.
inline at::Tensor accumulation_copy(const at::Tensor& t, at::ScalarType input_type) {
  return t.to(accumulation_type(input_type)).contiguous();
}

inline Activation parse_activation(const std::optional<c10::string_view>& name, const char* op) {
  if (!name.has_value()) return Activation::None;
  if (*name == "relu") return Activation::ReLU;
  if (*name == "relu6") return Activation::ReLU6;
  TORCH_CHECK(false, "vid3d ", op, " (cuda): unknown activation '", std::string(name->data(), name->size()), "'");
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Streaming multiprocessors of the current device (queried once per device; no synchronization).
int multiprocessor_count();

}  // namespace vid3d::cuda
