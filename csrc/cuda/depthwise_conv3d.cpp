// CUDA registration of vid3d_native::depthwise_conv3d_{forward,backward}: checks the tensors,
// packs them into the plain parameter struct and launches the kernels (csrc/cuda/*.cu) on the
// current stream under a device guard, checking each launch; never synchronizes. Arguments are
// validated in Python (vid3d/ops); the checks here guard the kernels' assumptions.
// The input gradient of a stride-1 convolution is the forward convolution of grad_output with the
// flipped weight and padding (k - 1) * dilation - padding, so it runs the forward kernels
// (templated stencils, channels-last path); strided convolutions take the transposed-stencil
// kernel. Weight and bias gradients are always deterministic (see depthwise_backward.cu).
#include <ATen/ops/empty.h>
#include <ATen/ops/flip.h>
#include <torch/library.h>

#include <vector>

#include "torch_glue.h"

namespace vid3d::cuda {

int multiprocessor_count() {
  static std::vector<int> counts(c10::cuda::device_count(), 0);
  const int device = c10::cuda::current_device();
  if (counts[device] == 0) {
    int count = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    counts[device] = count;
  }
  return counts[device];
}

namespace {

constexpr const char* kOp = "depthwise_conv3d";

DepthwiseParams make_params(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& output,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK(input.dim() == 5 && weight.dim() == 5 && output.dim() == 5,
              "vid3d depthwise_conv3d (cuda): expected 5-D input, weight and output");
  TORCH_CHECK(stride.size() == 3 && padding.size() == 3 && dilation.size() == 3,
              "vid3d depthwise_conv3d (cuda): stride, padding and dilation need 3 values");
  TORCH_CHECK(weight.size(0) == input.size(1) && weight.size(1) == 1,
              "vid3d depthwise_conv3d (cuda): weight must have shape (C, 1, kt, kh, kw)");
  TORCH_CHECK(output.size(0) == input.size(0) && output.size(1) == input.size(1),
              "vid3d depthwise_conv3d (cuda): output batch/channels do not match the input");
  TORCH_CHECK(output.scalar_type() == input.scalar_type() && weight.scalar_type() == input.scalar_type(),
              "vid3d depthwise_conv3d (cuda): input, weight and output must have the same dtype");
  check_same_cuda_device(input, {&weight, &output}, kOp);
  DepthwiseParams p{};
  p.batch = input.size(0);
  p.channels = input.size(1);
  copy_sizes(p.in_size, input);
  copy_sizes(p.out_size, output);
  for (int d = 0; d < 3; ++d) {
    p.dims[d] = {weight.size(2 + d), stride[d], padding[d], dilation[d]};
    TORCH_CHECK(stride[d] >= 1 && dilation[d] >= 1 && padding[d] >= 0 && p.dims[d].kernel >= 1,
                "vid3d depthwise_conv3d (cuda): invalid kernel size, stride, padding or dilation");
    TORCH_CHECK(p.out_size[d] == conv_output_size(p.in_size[d], p.dims[d].kernel, stride[d], padding[d], dilation[d]),
                "vid3d depthwise_conv3d (cuda): output size does not match the convolution");
  }
  copy_strides(p.input_strides, input);
  copy_strides(p.output_strides, output);
  p.input = input.const_data_ptr();
  // Written by the forward, only read by the backward (grad_output): no copy-on-write materialization.
  p.output = const_cast<void*>(output.const_data_ptr());
  p.scalar = scalar_kind(input.scalar_type(), kOp);
  return p;
}

// The weight as the kernels read it: [C][taps] in the accumulation type.
at::Tensor kernel_weight(const at::Tensor& weight) {
  return accumulation_copy(weight, weight.scalar_type()).reshape({weight.size(0), -1});
}

cudaError_t launch_forward(const DepthwiseParams& p, cudaStream_t stream) {
  switch (p.scalar) {
    case ScalarKind::Float: return launch_depthwise_forward<ScalarKind::Float>(p, stream);
    case ScalarKind::Double: return launch_depthwise_forward<ScalarKind::Double>(p, stream);
    case ScalarKind::Half: return launch_depthwise_forward<ScalarKind::Half>(p, stream);
    case ScalarKind::BFloat16: return launch_depthwise_forward<ScalarKind::BFloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

template <template <ScalarKind> class Launcher>
cudaError_t launch_for(ScalarKind kind, const DepthwiseBackwardParams& b, cudaStream_t stream) {
  switch (kind) {
    case ScalarKind::Float: return Launcher<ScalarKind::Float>::run(b, stream);
    case ScalarKind::Double: return Launcher<ScalarKind::Double>::run(b, stream);
    case ScalarKind::Half: return Launcher<ScalarKind::Half>::run(b, stream);
    case ScalarKind::BFloat16: return Launcher<ScalarKind::BFloat16>::run(b, stream);
  }
  return cudaErrorInvalidValue;
}

template <ScalarKind kind>
struct InputGrad {
  static cudaError_t run(const DepthwiseBackwardParams& b, cudaStream_t s) { return launch_depthwise_input_grad<kind>(b, s); }
};

template <ScalarKind kind>
struct ParamGrad {
  static cudaError_t run(const DepthwiseBackwardParams& b, cudaStream_t s) { return launch_depthwise_param_grad<kind>(b, s); }
};

void depthwise_conv3d_forward(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, const at::Tensor& output,
                              std::optional<c10::string_view> activation) {
  DepthwiseParams p = make_params(input, weight, output, stride, padding, dilation);
  p.activation = parse_activation(activation, kOp);
  if (output.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor w = kernel_weight(weight);
  at::Tensor b;
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.channels, "vid3d depthwise_conv3d (cuda): bias must have shape (C,)");
    check_same_cuda_device(input, {&*bias}, kOp);
    b = accumulation_copy(*bias, input.scalar_type());
  }
  p.weight = w.const_data_ptr();
  p.bias = b.defined() ? b.const_data_ptr() : nullptr;
  C10_CUDA_CHECK(launch_forward(p, current_stream()));
}

// grad_input of a stride-1 convolution as a forward convolution of grad_output.
void stride_one_input_grad(const DepthwiseParams& p, const at::Tensor& weight, const at::Tensor& grad_input,
                           cudaStream_t stream) {
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
  C10_CUDA_CHECK(launch_forward(t, stream));
}

void depthwise_conv3d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               const std::optional<at::Tensor>& grad_input,
                               const std::optional<at::Tensor>& grad_weight,
                               const std::optional<at::Tensor>& grad_bias) {
  DepthwiseBackwardParams b{};
  b.conv = make_params(input, weight, grad_output, stride, padding, dilation);
  const DepthwiseParams& p = b.conv;
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = current_stream();
  if (grad_input.has_value()) {
    TORCH_CHECK(grad_input->sizes() == input.sizes() && grad_input->scalar_type() == input.scalar_type(),
                "vid3d depthwise_conv3d (cuda): grad_input must match the input");
    check_same_cuda_device(input, {&*grad_input}, kOp);
  }
  if (grad_output.numel() == 0) {
    // Nothing reads the input: its gradient is zero, and so are the parameters'.
    for (const auto* grad : {&grad_input, &grad_weight, &grad_bias})
      if (grad->has_value()) (*grad)->zero_();
    return;
  }
  if (grad_input.has_value() && grad_input->numel() > 0) {
    if (p.dims[0].stride == 1 && p.dims[1].stride == 1 && p.dims[2].stride == 1) {
      stride_one_input_grad(p, weight, *grad_input, stream);
    } else {
      const at::Tensor w = kernel_weight(weight);
      b.conv.weight = w.const_data_ptr();
      b.grad_input = grad_input->mutable_data_ptr();
      copy_strides(b.grad_input_strides, *grad_input);
      C10_CUDA_CHECK(launch_for<InputGrad>(p.scalar, b, stream));
    }
  }
  if (!grad_weight.has_value() && !grad_bias.has_value()) return;
  const int64_t taps = weight.size(2) * weight.size(3) * weight.size(4);
  const auto acc_options = input.options().dtype(accumulation_type(input.scalar_type()));
  b.chunks = depthwise_param_grad_chunks(p, multiprocessor_count());
  const at::Tensor partials = at::empty({b.chunks, p.channels, taps + 1}, acc_options);
  const at::Tensor params = at::empty({p.channels, taps + 1}, acc_options);
  b.partials = partials.mutable_data_ptr();
  b.grad_params = params.mutable_data_ptr();
  C10_CUDA_CHECK(launch_for<ParamGrad>(p.scalar, b, stream));
  if (grad_weight.has_value()) grad_weight->copy_(params.narrow(1, 0, taps).reshape(weight.sizes()));
  if (grad_bias.has_value()) grad_bias->copy_(params.select(1, taps));
}

}  // namespace

TORCH_LIBRARY_IMPL(vid3d_native, CUDA, m) {
  m.impl("depthwise_conv3d_forward", &depthwise_conv3d_forward);
  m.impl("depthwise_conv3d_backward", &depthwise_conv3d_backward);
}

}  // namespace vid3d::cuda
