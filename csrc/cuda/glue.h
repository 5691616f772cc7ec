// The torch glue of the CUDA ops, templated on a Runtime: argument checks, the plain parameter
// structs filled from tensors, and the kernel launches. Arguments are validated in Python
// (vid3d/ops); the checks here guard the kernels' assumptions. No CUDA headers beyond kernels.h:
// the Runtime brings the device specifics,
//   Runtime::kDevice                    "cuda" (in error messages)
//   Runtime::is_device_tensor(t)        the tensor lives where the kernels run
//   typename Runtime::Guard(device)     makes `device` current for the op's scope
//   Runtime::stream()                   the stream to launch on
//   Runtime::check(error)               raises on a failed launch
//   Runtime::multiprocessors()          of the current device
// csrc/cuda/ops.cpp instantiates it with the CUDA runtime and registers the ops; the host
// emulation test (tests/cpp/cuda_emulated_ops.cpp) instantiates the same code with CPU threads.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/all.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/isfinite.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <utility>

#include "kernels.h"

namespace vid3d::cuda::glue {

inline ScalarKind scalar_kind(at::ScalarType type, const char* op) {
  switch (type) {
    case at::kFloat: return ScalarKind::Float;
    case at::kDouble: return ScalarKind::Double;
    case at::kHalf: return ScalarKind::Half;
    case at::kBFloat16: return ScalarKind::BFloat16;
    default: TORCH_CHECK(false, "vid3d ", op, ": unsupported dtype ", type);
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

// Every tensor on the kernels' device, the same one as `first`.
template <class Runtime>
void check_devices(const at::Tensor& first, std::initializer_list<const at::Tensor*> others, const char* op) {
  TORCH_CHECK(Runtime::is_device_tensor(first), "vid3d ", op, ": expected ", Runtime::kDevice, " tensors");
  for (const at::Tensor* t : others) {
    TORCH_CHECK(t->device() == first.device(), "vid3d ", op, ": all tensors must be on ", first.device());
  }
}

// A weight or bias as the kernels read it: contiguous, in the accumulation type.
inline at::Tensor accumulation_copy(const at::Tensor& t, at::ScalarType input_type) {
  return t.to(accumulation_type(input_type)).contiguous();
}

// The weight as the kernels read it: [C][taps] in the accumulation type.
inline at::Tensor kernel_weight(const at::Tensor& weight) {
  return accumulation_copy(weight, weight.scalar_type()).reshape({weight.size(0), -1});
}

inline Activation parse_activation(const std::optional<c10::string_view>& name, const char* op) {
  if (!name.has_value()) return Activation::None;
  if (*name == "relu") return Activation::ReLU;
  if (*name == "relu6") return Activation::ReLU6;
  TORCH_CHECK(false, "vid3d ", op, ": unknown activation '", std::string(name->data(), name->size()), "'");
}

// ---------------------------------------------------------------- depthwise conv3d

constexpr const char* kDepthwise = "depthwise_conv3d";

template <class Runtime>
DepthwiseParams depthwise_params(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK(input.dim() == 5 && weight.dim() == 5 && output.dim() == 5,
              "vid3d depthwise_conv3d: expected 5-D input, weight and output");
  TORCH_CHECK(stride.size() == 3 && padding.size() == 3 && dilation.size() == 3,
              "vid3d depthwise_conv3d: stride, padding and dilation need 3 values");
  TORCH_CHECK(weight.size(0) == input.size(1) && weight.size(1) == 1,
              "vid3d depthwise_conv3d: weight must have shape (C, 1, kt, kh, kw)");
  TORCH_CHECK(output.size(0) == input.size(0) && output.size(1) == input.size(1),
              "vid3d depthwise_conv3d: output batch/channels do not match the input");
  TORCH_CHECK(output.scalar_type() == input.scalar_type() && weight.scalar_type() == input.scalar_type(),
              "vid3d depthwise_conv3d: input, weight and output must have the same dtype");
  check_devices<Runtime>(input, {&weight, &output}, kDepthwise);
  DepthwiseParams p{};
  p.batch = input.size(0);
  p.channels = input.size(1);
  copy_sizes(p.in_size, input);
  copy_sizes(p.out_size, output);
  for (int d = 0; d < 3; ++d) {
    p.dims[d] = {weight.size(2 + d), stride[d], padding[d], dilation[d]};
    TORCH_CHECK(stride[d] >= 1 && dilation[d] >= 1 && padding[d] >= 0 && p.dims[d].kernel >= 1,
                "vid3d depthwise_conv3d: invalid kernel size, stride, padding or dilation");
    TORCH_CHECK(p.out_size[d] == conv_output_size(p.in_size[d], p.dims[d].kernel, stride[d], padding[d], dilation[d]),
                "vid3d depthwise_conv3d: output size does not match the convolution");
  }
  copy_strides(p.input_strides, input);
  copy_strides(p.output_strides, output);
  p.input = input.const_data_ptr();
  // Written by the forward, only read by the backward (grad_output): no copy-on-write materialization.
  p.output = const_cast<void*>(output.const_data_ptr());
  p.scalar = scalar_kind(input.scalar_type(), kDepthwise);
  return p;
}

inline cudaError_t launch_forward(const DepthwiseParams& p, cudaStream_t stream) {
  switch (p.scalar) {
    case ScalarKind::Float: return launch_depthwise_forward<ScalarKind::Float>(p, stream);
    case ScalarKind::Double: return launch_depthwise_forward<ScalarKind::Double>(p, stream);
    case ScalarKind::Half: return launch_depthwise_forward<ScalarKind::Half>(p, stream);
    case ScalarKind::BFloat16: return launch_depthwise_forward<ScalarKind::BFloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

inline cudaError_t launch_input_grad(const DepthwiseBackwardParams& b, cudaStream_t stream) {
  switch (b.conv.scalar) {
    case ScalarKind::Float: return launch_depthwise_input_grad<ScalarKind::Float>(b, stream);
    case ScalarKind::Double: return launch_depthwise_input_grad<ScalarKind::Double>(b, stream);
    case ScalarKind::Half: return launch_depthwise_input_grad<ScalarKind::Half>(b, stream);
    case ScalarKind::BFloat16: return launch_depthwise_input_grad<ScalarKind::BFloat16>(b, stream);
  }
  return cudaErrorInvalidValue;
}

inline cudaError_t launch_param_grad(const DepthwiseBackwardParams& b, cudaStream_t stream) {
  switch (b.conv.scalar) {
    case ScalarKind::Float: return launch_depthwise_param_grad<ScalarKind::Float>(b, stream);
    case ScalarKind::Double: return launch_depthwise_param_grad<ScalarKind::Double>(b, stream);
    case ScalarKind::Half: return launch_depthwise_param_grad<ScalarKind::Half>(b, stream);
    case ScalarKind::BFloat16: return launch_depthwise_param_grad<ScalarKind::BFloat16>(b, stream);
  }
  return cudaErrorInvalidValue;
}

template <class Runtime>
void depthwise_conv3d_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                              at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                              const at::Tensor& output, std::optional<c10::string_view> activation) {
  DepthwiseParams p = depthwise_params<Runtime>(input, weight, output, stride, padding, dilation);
  p.activation = parse_activation(activation, kDepthwise);
  if (output.numel() == 0) return;
  const typename Runtime::Guard guard(input.device());
  const at::Tensor w = kernel_weight(weight);
  at::Tensor b;
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.channels, "vid3d depthwise_conv3d: bias must have shape (C,)");
    check_devices<Runtime>(input, {&*bias}, kDepthwise);
    b = accumulation_copy(*bias, input.scalar_type());
  }
  p.weight = w.const_data_ptr();
  p.bias = b.defined() ? b.const_data_ptr() : nullptr;
  Runtime::check(launch_forward(p, Runtime::stream()));
}

// The input gradient by the transposed-stencil kernel, which sums only the taps that meet
// grad_output; with skip_if (a flag in device memory) it writes nothing when the flag is true.
template <class Runtime>
void exact_input_grad(const DepthwiseParams& p, const at::Tensor& weight, const at::Tensor& grad_input,
                      const bool* skip_if) {
  DepthwiseBackwardParams b{};
  b.conv = p;
  const at::Tensor w = kernel_weight(weight);
  b.conv.weight = w.const_data_ptr();
  b.grad_input = grad_input.mutable_data_ptr();
  copy_strides(b.grad_input_strides, grad_input);
  b.skip_if = skip_if;
  Runtime::check(launch_input_grad(b, Runtime::stream()));
}

// The input gradient of a stride-1 convolution is the forward convolution of grad_output with the
// flipped weight and padding (k - 1) * dilation - padding: it runs the forward kernels (templated
// stencils, channels-last path). Those multiply the zeros around grad_output with the weight too,
// so where the weight holds an Inf or NaN (0 * Inf = NaN where PyTorch adds nothing) the exact
// kernel rewrites the gradient, told by a flag on the device: no synchronization. `p` describes
// the convolution, p.output being grad_output.
template <class Runtime>
void stride_one_input_grad(const DepthwiseParams& p, const at::Tensor& weight, const at::Tensor& grad_input) {
  DepthwiseParams t = p;
  for (int d = 0; d < 3; ++d) {
    t.in_size[d] = p.out_size[d];
    t.out_size[d] = p.in_size[d];
    t.dims[d].padding = (p.dims[d].kernel - 1) * p.dims[d].dilation - p.dims[d].padding;
  }
  for (int d = 0; d < 5; ++d) t.input_strides[d] = p.output_strides[d];
  copy_strides(t.output_strides, grad_input);
  t.input = p.output;
  t.output = grad_input.mutable_data_ptr();
  const at::Tensor flipped = kernel_weight(weight.flip({2, 3, 4}));
  t.weight = flipped.const_data_ptr();
  t.bias = nullptr;
  t.activation = Activation::None;
  Runtime::check(launch_forward(t, Runtime::stream()));
  const at::Tensor weight_finite = at::isfinite(weight).all();
  exact_input_grad<Runtime>(p, weight, grad_input, weight_finite.const_data_ptr<bool>());
}

// Strided convolutions take the transposed-stencil kernel; weight and bias gradients are always
// deterministic (per-block partial sums reduced in a fixed order, see depthwise_backward.cu).
template <class Runtime>
void depthwise_conv3d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               const std::optional<at::Tensor>& grad_input,
                               const std::optional<at::Tensor>& grad_weight,
                               const std::optional<at::Tensor>& grad_bias) {
  DepthwiseBackwardParams b{};
  b.conv = depthwise_params<Runtime>(input, weight, grad_output, stride, padding, dilation);
  const DepthwiseParams& p = b.conv;
  const typename Runtime::Guard guard(input.device());
  if (grad_input.has_value()) {
    TORCH_CHECK(grad_input->sizes() == input.sizes() && grad_input->scalar_type() == input.scalar_type(),
                "vid3d depthwise_conv3d: grad_input must match the input");
    check_devices<Runtime>(input, {&*grad_input}, kDepthwise);
  }
  if (grad_output.numel() == 0) {
    // Nothing reads the input: its gradient is zero, and so are the parameters'.
    for (const auto* grad : {&grad_input, &grad_weight, &grad_bias})
      if (grad->has_value()) (*grad)->zero_();
    return;
  }
  if (grad_input.has_value() && grad_input->numel() > 0) {
    if (p.dims[0].stride == 1 && p.dims[1].stride == 1 && p.dims[2].stride == 1) {
      stride_one_input_grad<Runtime>(p, weight, *grad_input);
    } else {
      exact_input_grad<Runtime>(p, weight, *grad_input, nullptr);
    }
  }
  if (!grad_weight.has_value() && !grad_bias.has_value()) return;
  const int64_t taps = weight.size(2) * weight.size(3) * weight.size(4);
  const auto acc_options = input.options().dtype(accumulation_type(input.scalar_type()));
  b.chunks = depthwise_param_grad_chunks(p, Runtime::multiprocessors());
  const at::Tensor partials = at::empty({b.chunks, p.channels, taps + 1}, acc_options);
  const at::Tensor params = at::empty({p.channels, taps + 1}, acc_options);
  b.partials = partials.mutable_data_ptr();
  b.grad_params = params.mutable_data_ptr();
  Runtime::check(launch_param_grad(b, Runtime::stream()));
  if (grad_weight.has_value()) grad_weight->copy_(params.narrow(1, 0, taps).reshape(weight.sizes()));
  if (grad_bias.has_value()) grad_bias->copy_(params.select(1, taps));
}

// ---------------------------------------------------------------- cat + channel shuffle

constexpr const char* kShuffle = "cat_shuffle3d";

template <class Runtime>
void check_shuffle_tensors(at::TensorList parts, const at::Tensor& whole, int64_t groups) {
  int64_t channels = 0;
  for (const auto& t : parts) channels += t.size(1);
  TORCH_CHECK(groups >= 1 && channels % groups == 0, "vid3d cat_shuffle3d: groups must divide the channel count");
  TORCH_CHECK(whole.dim() == 5 && whole.size(1) == channels, "vid3d cat_shuffle3d: channel counts do not match");
  for (const auto& t : parts) {
    TORCH_CHECK(t.dim() == 5 && t.scalar_type() == whole.scalar_type() && t.size(0) == whole.size(0) &&
                    t.size(2) == whole.size(2) && t.size(3) == whole.size(3) && t.size(4) == whole.size(4),
                "vid3d cat_shuffle3d: tensors must be 5-D with matching N, T, H, W and dtype");
    check_devices<Runtime>(whole, {&t}, kShuffle);
  }
}

// Copies every part to (to_whole) or from its shuffled channels of `whole`, one launch per part.
// Elements move as raw bytes, so every dtype works.
template <class Runtime>
void copy_shuffled_parts(at::TensorList parts, const at::Tensor& whole, int64_t groups, bool to_whole) {
  check_shuffle_tensors<Runtime>(parts, whole, groups);
  const typename Runtime::Guard guard(whole.device());
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
    Runtime::check(launch_cat_shuffle_part(p, Runtime::stream()));
  }
}

template <class Runtime>
void cat_shuffle3d_forward(at::TensorList inputs, int64_t groups, const at::Tensor& output) {
  copy_shuffled_parts<Runtime>(inputs, output, groups, /*to_whole=*/true);
}

template <class Runtime>
void cat_shuffle3d_backward(const at::Tensor& grad_output, int64_t groups, at::TensorList grad_inputs) {
  copy_shuffled_parts<Runtime>(grad_inputs, grad_output, groups, /*to_whole=*/false);
}

// ---------------------------------------------------------------- fused (2+1)D depthwise pair

constexpr const char* kConv2Plus1d = "conv2plus1d";

// Spatial weight (C, 1, 1, kh, kw) with stride/padding/dilation (1, s_h, s_w) etc., then temporal
// weight (C, 1, kt, 1, 1) with (s_t, 1, 1) etc., as vid3d.ops.conv2plus1d, in one kernel.
template <class Runtime>
void conv2plus1d_depthwise_forward(const at::Tensor& input, const at::Tensor& spatial_weight,
                                   const at::Tensor& temporal_weight, const std::optional<at::Tensor>& spatial_bias,
                                   const std::optional<at::Tensor>& temporal_bias, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation,
                                   std::optional<c10::string_view> mid_activation, const at::Tensor& output) {
  TORCH_CHECK(input.dim() == 5 && output.dim() == 5 && spatial_weight.dim() == 5 && temporal_weight.dim() == 5,
              "vid3d conv2plus1d: expected 5-D input, weights and output");
  TORCH_CHECK(stride.size() == 3 && padding.size() == 3 && dilation.size() == 3,
              "vid3d conv2plus1d: stride, padding and dilation need 3 values");
  const int64_t channels = input.size(1);
  TORCH_CHECK(spatial_weight.size(0) == channels && spatial_weight.size(1) == 1 && spatial_weight.size(2) == 1 &&
                  temporal_weight.size(0) == channels && temporal_weight.size(1) == 1 &&
                  temporal_weight.size(3) == 1 && temporal_weight.size(4) == 1,
              "vid3d conv2plus1d: weights must be depthwise (C, 1, 1, kh, kw) and (C, 1, kt, 1, 1)");
  TORCH_CHECK(output.size(0) == input.size(0) && output.size(1) == channels,
              "vid3d conv2plus1d: output batch/channels do not match the input");
  TORCH_CHECK(output.scalar_type() == input.scalar_type() && spatial_weight.scalar_type() == input.scalar_type() &&
                  temporal_weight.scalar_type() == input.scalar_type(),
              "vid3d conv2plus1d: input, weights and output must have the same dtype");
  const Activation activation = parse_activation(mid_activation, kConv2Plus1d);
  TORCH_CHECK(activation != Activation::ReLU6, "vid3d conv2plus1d: mid_activation must be None or 'relu'");
  check_devices<Runtime>(input, {&spatial_weight, &temporal_weight, &output}, kConv2Plus1d);

  Conv2Plus1dParams p{};
  p.batch = input.size(0);
  p.channels = channels;
  copy_sizes(p.in_size, input);
  copy_sizes(p.out_size, output);
  const int64_t kernel[3] = {temporal_weight.size(2), spatial_weight.size(3), spatial_weight.size(4)};
  for (int d = 0; d < 3; ++d) {
    p.dims[d] = {kernel[d], stride[d], padding[d], dilation[d]};
    TORCH_CHECK(stride[d] >= 1 && dilation[d] >= 1 && padding[d] >= 0,
                "vid3d conv2plus1d: invalid stride, padding or dilation");
    TORCH_CHECK(p.out_size[d] == conv_output_size(p.in_size[d], kernel[d], stride[d], padding[d], dilation[d]),
                "vid3d conv2plus1d: output size does not match the convolution");
  }
  copy_strides(p.input_strides, input);
  copy_strides(p.output_strides, output);
  p.scalar = scalar_kind(input.scalar_type(), kConv2Plus1d);
  p.mid_relu = activation == Activation::ReLU;
  if (output.numel() == 0) return;

  const typename Runtime::Guard guard(input.device());
  const at::Tensor ws = accumulation_copy(spatial_weight, input.scalar_type());
  const at::Tensor wt = accumulation_copy(temporal_weight, input.scalar_type());
  at::Tensor bs, bt;
  for (const auto& [bias, copy] : {std::pair{&spatial_bias, &bs}, std::pair{&temporal_bias, &bt}}) {
    if (!bias->has_value()) continue;
    TORCH_CHECK((*bias)->dim() == 1 && (*bias)->size(0) == channels, "vid3d conv2plus1d: biases must have shape (C,)");
    check_devices<Runtime>(input, {&**bias}, kConv2Plus1d);
    *copy = accumulation_copy(**bias, input.scalar_type());
  }
  p.input = input.const_data_ptr();
  p.output = output.mutable_data_ptr();
  p.spatial_weight = ws.const_data_ptr();
  p.temporal_weight = wt.const_data_ptr();
  p.spatial_bias = bs.defined() ? bs.const_data_ptr() : nullptr;
  p.temporal_bias = bt.defined() ? bt.const_data_ptr() : nullptr;
  Runtime::check(launch_conv2plus1d_depthwise(p, Runtime::stream()));
}

}  // namespace vid3d::cuda::glue
