// CUDA registration of vid3d_native::conv2plus1d_depthwise_forward, the (2+1)D convolution of a
// depthwise pair in one kernel (conv2plus1d_kernels.cu): spatial weight (C, 1, 1, kh, kw) with stride,
// padding and dilation (1, s_h, s_w) etc., then temporal weight (C, 1, kt, 1, 1) with (s_t, 1, 1)
// etc., as vid3d.ops.conv2plus1d. Other backends have no such op and run the stages separately.
#include <torch/library.h>

#include "torch_glue.h"

namespace vid3d::cuda {
namespace {

constexpr const char* kOp = "conv2plus1d";

void conv2plus1d_depthwise_forward(const at::Tensor& input, const at::Tensor& spatial_weight,
                                   const at::Tensor& temporal_weight, const std::optional<at::Tensor>& spatial_bias,
                                   const std::optional<at::Tensor>& temporal_bias, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation,
                                   std::optional<c10::string_view> mid_activation, const at::Tensor& output) {
  TORCH_CHECK(input.dim() == 5 && output.dim() == 5 && spatial_weight.dim() == 5 && temporal_weight.dim() == 5,
              "vid3d conv2plus1d (cuda): expected 5-D input, weights and output");
  TORCH_CHECK(stride.size() == 3 && padding.size() == 3 && dilation.size() == 3,
              "vid3d conv2plus1d (cuda): stride, padding and dilation need 3 values");
  const int64_t channels = input.size(1);
  TORCH_CHECK(spatial_weight.size(0) == channels && spatial_weight.size(1) == 1 && spatial_weight.size(2) == 1 &&
                  temporal_weight.size(0) == channels && temporal_weight.size(1) == 1 &&
                  temporal_weight.size(3) == 1 && temporal_weight.size(4) == 1,
              "vid3d conv2plus1d (cuda): weights must be depthwise (C, 1, 1, kh, kw) and (C, 1, kt, 1, 1)");
  TORCH_CHECK(output.size(0) == input.size(0) && output.size(1) == channels,
              "vid3d conv2plus1d (cuda): output batch/channels do not match the input");
  TORCH_CHECK(output.scalar_type() == input.scalar_type() && spatial_weight.scalar_type() == input.scalar_type() &&
                  temporal_weight.scalar_type() == input.scalar_type(),
              "vid3d conv2plus1d (cuda): input, weights and output must have the same dtype");
  const Activation activation = parse_activation(mid_activation, kOp);
  TORCH_CHECK(activation != Activation::ReLU6, "vid3d conv2plus1d (cuda): mid_activation must be None or 'relu'");
  check_same_cuda_device(input, {&spatial_weight, &temporal_weight, &output}, kOp);

  Conv2Plus1dParams p{};
  p.batch = input.size(0);
  p.channels = channels;
  copy_sizes(p.in_size, input);
  copy_sizes(p.out_size, output);
  const int64_t kernel[3] = {temporal_weight.size(2), spatial_weight.size(3), spatial_weight.size(4)};
  for (int d = 0; d < 3; ++d) {
    p.dims[d] = {kernel[d], stride[d], padding[d], dilation[d]};
    TORCH_CHECK(stride[d] >= 1 && dilation[d] >= 1 && padding[d] >= 0,
                "vid3d conv2plus1d (cuda): invalid stride, padding or dilation");
    TORCH_CHECK(p.out_size[d] == conv_output_size(p.in_size[d], kernel[d], stride[d], padding[d], dilation[d]),
                "vid3d conv2plus1d (cuda): output size does not match the convolution");
  }
  copy_strides(p.input_strides, input);
  copy_strides(p.output_strides, output);
  p.scalar = scalar_kind(input.scalar_type(), kOp);
  p.mid_relu = activation == Activation::ReLU;
  if (output.numel() == 0) return;

  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor ws = accumulation_copy(spatial_weight, input.scalar_type());
  const at::Tensor wt = accumulation_copy(temporal_weight, input.scalar_type());
  at::Tensor bs, bt;
  for (const auto& [bias, copy] : {std::pair{&spatial_bias, &bs}, std::pair{&temporal_bias, &bt}}) {
    if (!bias->has_value()) continue;
    TORCH_CHECK((*bias)->dim() == 1 && (*bias)->size(0) == channels, "vid3d conv2plus1d (cuda): biases must have shape (C,)");
    check_same_cuda_device(input, {&**bias}, kOp);
    *copy = accumulation_copy(**bias, input.scalar_type());
  }
  p.input = input.const_data_ptr();
  p.output = output.mutable_data_ptr();
  p.spatial_weight = ws.const_data_ptr();
  p.temporal_weight = wt.const_data_ptr();
  p.spatial_bias = bs.defined() ? bs.const_data_ptr() : nullptr;
  p.temporal_bias = bt.defined() ? bt.const_data_ptr() : nullptr;
  C10_CUDA_CHECK(launch_conv2plus1d_depthwise(p, current_stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(vid3d_native, CUDA, m) {
  m.impl("conv2plus1d_depthwise_forward", &conv2plus1d_depthwise_forward);
}

}  // namespace vid3d::cuda
