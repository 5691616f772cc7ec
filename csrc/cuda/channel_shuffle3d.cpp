// CUDA registration of vid3d_native::cat_shuffle3d_{forward,backward}: one permuted copy per
// tensor of the concatenation (channel_shuffle3d_kernels.cu), on the current stream under a device guard.
// Elements move as raw bytes, so every dtype works.
#include <torch/library.h>

#include "torch_glue.h"

namespace vid3d::cuda {
namespace {

constexpr const char* kOp = "cat_shuffle3d";

void check_tensors(at::TensorList parts, const at::Tensor& whole, int64_t groups) {
  int64_t channels = 0;
  for (const auto& t : parts) channels += t.size(1);
  TORCH_CHECK(groups >= 1 && channels % groups == 0, "vid3d cat_shuffle3d (cuda): groups must divide the channel count");
  TORCH_CHECK(whole.dim() == 5 && whole.size(1) == channels, "vid3d cat_shuffle3d (cuda): channel counts do not match");
  for (const auto& t : parts) {
    TORCH_CHECK(t.dim() == 5 && t.scalar_type() == whole.scalar_type() && t.size(0) == whole.size(0) &&
                    t.size(2) == whole.size(2) && t.size(3) == whole.size(3) && t.size(4) == whole.size(4),
                "vid3d cat_shuffle3d (cuda): tensors must be 5-D with matching N, T, H, W and dtype");
    check_same_cuda_device(whole, {&t}, kOp);
  }
}

// Copies every part to (to_whole) or from its shuffled channels of `whole`.
void copy_parts(at::TensorList parts, const at::Tensor& whole, int64_t groups, bool to_whole) {
  check_tensors(parts, whole, groups);
  const c10::cuda::CUDAGuard guard(whole.device());
  const cudaStream_t stream = current_stream();
  int64_t first_channel = 0;
  for (const auto& part : parts) {
    ShuffleParams p{};
    p.batch = part.size(0);
    p.part_channels = part.size(1);
    copy_sizes(p.spatial, part);
    copy_strides(p.part_strides, part);
    copy_strides(p.whole_strides, whole);
    p.first_channel = first_channel;
    p.total_channels = whole.size(1);
    p.groups = groups;
    p.element_bytes = static_cast<int>(part.element_size());
    p.to_whole = to_whole;
    p.source = to_whole ? part.const_data_ptr() : whole.const_data_ptr();
    p.destination = to_whole ? whole.mutable_data_ptr() : part.mutable_data_ptr();
    first_channel += part.size(1);
    if (part.numel() == 0) continue;
    C10_CUDA_CHECK(launch_cat_shuffle_part(p, stream));
  }
}

void cat_shuffle3d_forward(at::TensorList inputs, int64_t groups, const at::Tensor& output) {
  copy_parts(inputs, output, groups, /*to_whole=*/true);
}

void cat_shuffle3d_backward(const at::Tensor& grad_output, int64_t groups, at::TensorList grad_inputs) {
  copy_parts(grad_inputs, grad_output, groups, /*to_whole=*/false);
}

}  // namespace

TORCH_LIBRARY_IMPL(vid3d_native, CUDA, m) {
  m.impl("cat_shuffle3d_forward", &cat_shuffle3d_forward);
  m.impl("cat_shuffle3d_backward", &cat_shuffle3d_backward);
}

}  // namespace vid3d::cuda
