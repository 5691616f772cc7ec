// CPU registration of vid3d_native::depthwise_conv3d_{forward,backward}: packs the
// tensors into the plain parameter struct and runs the kernels of the best
// instruction set this CPU has. Arguments are validated in Python (vid3d/ops);
// the checks here only guard the kernels' assumptions.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>

#include "depthwise_conv3d_cpu.h"

namespace vid3d::cpu {
namespace {

struct DepthwiseKernels {
  decltype(&generic::depthwise_conv3d_forward) forward;
  decltype(&generic::depthwise_conv3d_backward) backward;
  int64_t plane_vector_lanes;  // the largest plane the planes-in-vectors forward takes (0: none)
  const char* isa;
};

// The widest build the CPU supports, capped by the environment variable
// VID3D_CPU_ISA=generic|avx2|avx512 (any case; another value is ignored with a warning).
DepthwiseKernels select_kernels() {
  const DepthwiseKernels generic_kernels{generic::depthwise_conv3d_forward,
                                         generic::depthwise_conv3d_backward, generic::plane_vector_lanes(), "generic"};
  std::string limit = "avx512";
  if (const char* cap = std::getenv("VID3D_CPU_ISA")) {
    std::string value(cap);
    std::transform(value.begin(), value.end(), value.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (value == "generic" || value == "avx2" || value == "avx512") {
      limit = value;
    } else {
      TORCH_WARN("vid3d: ignoring VID3D_CPU_ISA=", cap, " (expected generic, avx2 or avx512)");
    }
  }
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                        __builtin_cpu_supports("f16c");
  const bool has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  if (limit == "avx512" && has_avx512) {
    return {avx512::depthwise_conv3d_forward, avx512::depthwise_conv3d_backward, avx512::plane_vector_lanes(),
            "avx512"};
  }
  if (limit != "generic" && has_avx2) {
    return {avx2::depthwise_conv3d_forward, avx2::depthwise_conv3d_backward, avx2::plane_vector_lanes(),
            "avx2"};
  }
#endif
  return generic_kernels;
}

const DepthwiseKernels& kernels() {
  static const DepthwiseKernels selected = select_kernels();
  return selected;
}

ScalarKind scalar_kind(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ScalarKind::Float;
    case at::kDouble: return ScalarKind::Double;
    case at::kBFloat16: return ScalarKind::BFloat16;
    case at::kHalf: return ScalarKind::Half;
    default: TORCH_CHECK(false, "vid3d depthwise_conv3d (cpu): unsupported dtype ", type);
  }
}

at::ScalarType accumulation_type(at::ScalarType type) {
  return type == at::kDouble ? at::kDouble : at::kFloat;
}

void copy_strides(int64_t* dst, const at::Tensor& t) {
  for (int d = 0; d < 5; ++d) dst[d] = t.stride(d);
}

DepthwiseConv3dParams make_params(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& output, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK(input.dim() == 5 && weight.dim() == 5 && output.dim() == 5,
              "vid3d depthwise_conv3d (cpu): expected 5-D input, weight and output");
  TORCH_CHECK(stride.size() == 3 && padding.size() == 3 && dilation.size() == 3,
              "vid3d depthwise_conv3d (cpu): stride, padding and dilation need 3 values");
  TORCH_CHECK(weight.size(0) == input.size(1) && weight.size(1) == 1,
              "vid3d depthwise_conv3d (cpu): weight must have shape (C, 1, kt, kh, kw)");
  TORCH_CHECK(output.size(0) == input.size(0) && output.size(1) == input.size(1),
              "vid3d depthwise_conv3d (cpu): output batch/channels do not match the input");
  TORCH_CHECK(output.scalar_type() == input.scalar_type(),
              "vid3d depthwise_conv3d (cpu): output dtype does not match the input");
  DepthwiseConv3dParams p{};
  p.batch = input.size(0);
  p.channels = input.size(1);
  for (int d = 0; d < 3; ++d) {
    p.in_size[d] = input.size(2 + d);
    p.out_size[d] = output.size(2 + d);
    p.kernel[d] = weight.size(2 + d);
    p.stride[d] = stride[d];
    p.padding[d] = padding[d];
    p.dilation[d] = dilation[d];
    TORCH_CHECK(p.stride[d] >= 1 && p.dilation[d] >= 1 && p.padding[d] >= 0,
                "vid3d depthwise_conv3d (cpu): invalid stride, padding or dilation");
    TORCH_CHECK(p.out_size[d] ==
                    (p.in_size[d] + 2 * p.padding[d] - p.dilation[d] * (p.kernel[d] - 1) - 1) / p.stride[d] + 1,
                "vid3d depthwise_conv3d (cpu): output size does not match the convolution");
  }
  copy_strides(p.input_strides, input);
  copy_strides(p.output_strides, output);
  p.scalar = scalar_kind(input.scalar_type());
  return p;
}

bool is_channels_last(const at::Tensor& t) {
  return t.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d;
}

// Whether each (n, c) volume of t is contiguous and the volumes follow each other along C.
bool volumes_consecutive(const at::Tensor& t) {
  int64_t expected = 1;
  for (int64_t d = 4; d >= 1; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) return false;
    expected *= t.size(d);
  }
  return true;
}

// Below this many output positions per plane, vectorizing along W wastes most lanes.
constexpr int64_t kSmallPlane = 64;
// The largest (n, c) volume, in positions, that the transposed-volumes forward takes: its input and
// output blocks of 8 channels (32 bytes per position) stay in the L1 cache.
constexpr int64_t kTransposedVolume = 512;
// Outputs this large would not stay in the caches anyway (see stream_output).
constexpr int64_t kStreamBytes = int64_t(4) << 20;
// The planar forward streams its output from this size. On the AMD EPYC of bench/README.md (32 MB
// L3), streaming made the forward 6-12% faster with a 12.8 MB output and 8-13% slower with a 6 MB
// one, which had stayed in the L3 between calls.
constexpr int64_t kStreamPlanesBytes = int64_t(8) << 20;

// The weight in the accumulation type, laid out as the kernel reads it: [taps][C] for the
// channel-vectorized kernels, [C][taps] for the planar ones and the transposed-volumes forward.
at::Tensor prepared_weight(const at::Tensor& weight, bool taps_outer) {
  const int64_t channels = weight.size(0);
  at::Tensor w = weight.to(accumulation_type(weight.scalar_type())).reshape({channels, -1});
  return (taps_outer ? w.t() : w).contiguous();
}

// The activation as a pass over the output (the CPU kernels do not fuse it).
void apply_activation(const at::Tensor& output, std::optional<c10::string_view> activation) {
  if (!activation.has_value()) return;
  if (*activation == "relu") {
    output.relu_();
  } else if (*activation == "relu6") {
    output.clamp_(0, 6);
  } else {
    TORCH_CHECK(false, "vid3d depthwise_conv3d (cpu): unknown activation '", *activation, "'");
  }
}

void depthwise_conv3d_forward(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation,
                              const at::Tensor& output, std::optional<c10::string_view> activation) {
  DepthwiseConv3dParams p = make_params(input, weight, output, stride, padding, dilation);
  if (output.numel() == 0) return;
  // Vectorize over channels for channels-last input or small planes, else along W. Small planes
  // are read in place: a planar one held in a vector where it fits, else by channel vectors.
  const bool channels_last = is_channels_last(input);
  const bool small = p.out_size[1] * p.out_size[2] < kSmallPlane;
  const int64_t plane_lanes = input.scalar_type() == at::kDouble ? 0 : kernels().plane_vector_lanes;
  const bool plane_in_vector = !channels_last && p.in_size[1] * p.in_size[2] <= plane_lanes &&
                               p.out_size[1] * p.out_size[2] <= plane_lanes;
  // The ISAs with the planes-in-vectors forward (AVX2, AVX-512) also have the transposed one.
  const bool unit_channel_strides = input.stride(1) == 1 && output.stride(1) == 1;
  p.transpose_volumes = small && input.scalar_type() == at::kFloat && plane_lanes > 0 &&
                        (channels_last ? unit_channel_strides
                                       : volumes_consecutive(input) && volumes_consecutive(output)) &&
                        p.in_size[0] * p.in_size[1] * p.in_size[2] <= kTransposedVolume &&
                        p.out_size[0] * p.out_size[1] * p.out_size[2] <= kTransposedVolume;
  p.vectorize_channels = channels_last || p.transpose_volumes || (small && !plane_in_vector);
  p.small_planes = small && (plane_in_vector || (p.vectorize_channels && unit_channel_strides));
  p.stream_output = output.nbytes() >= kStreamBytes;
  p.stream_planes = output.nbytes() >= kStreamPlanesBytes;
  const at::Tensor w = prepared_weight(weight, p.vectorize_channels && !p.transpose_volumes);
  at::Tensor b;
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.channels,
                "vid3d depthwise_conv3d (cpu): bias must have shape (C,)");
    b = bias->to(w.scalar_type()).contiguous();
  }
  kernels().forward(p, input.const_data_ptr(), w.const_data_ptr(), b.defined() ? b.const_data_ptr() : nullptr,
                    output.mutable_data_ptr());
  apply_activation(output, activation);
}

void depthwise_conv3d_backward(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& weight, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation,
                               const std::optional<at::Tensor>& grad_input,
                               const std::optional<at::Tensor>& grad_weight,
                               const std::optional<at::Tensor>& grad_bias) {
  DepthwiseConv3dParams p = make_params(input, weight, grad_output, stride, padding, dilation);
  if (grad_input.has_value()) {
    TORCH_CHECK(grad_input->sizes() == input.sizes() && grad_input->scalar_type() == input.scalar_type(),
                "vid3d depthwise_conv3d (cpu): grad_input must match the input");
    copy_strides(p.grad_input_strides, *grad_input);
  }
  // The channels-last backward kernels vectorize over C and need unit channel strides.
  p.vectorize_channels = is_channels_last(input) && input.stride(1) == 1 && grad_output.stride(1) == 1 &&
                    (!grad_input.has_value() || grad_input->stride(1) == 1);
  const int64_t taps = p.kernel[0] * p.kernel[1] * p.kernel[2];
  const auto double_opts = input.options().dtype(at::kDouble).memory_format(at::MemoryFormat::Contiguous);
  at::Tensor dw = grad_weight.has_value() ? at::empty({p.channels, taps}, double_opts) : at::Tensor();
  at::Tensor db = grad_bias.has_value() ? at::empty({p.channels}, double_opts) : at::Tensor();
  if (grad_output.numel() == 0) {
    // Nothing reads the input: its gradient is zero, and so are the parameters'.
    if (grad_input.has_value()) grad_input->zero_();
    if (dw.defined()) dw.zero_();
    if (db.defined()) db.zero_();
  } else {
    const at::Tensor w = prepared_weight(weight, p.vectorize_channels);
    kernels().backward(p, grad_output.const_data_ptr(), input.const_data_ptr(), w.const_data_ptr(),
                       grad_input.has_value() ? grad_input->mutable_data_ptr() : nullptr,
                       dw.defined() ? dw.mutable_data_ptr<double>() : nullptr,
                       db.defined() ? db.mutable_data_ptr<double>() : nullptr);
  }
  if (dw.defined()) grad_weight->copy_(dw.view(weight.sizes()));
  if (db.defined()) grad_bias->copy_(db);
}

}  // namespace

std::string cpu_isa() { return kernels().isa; }

TORCH_LIBRARY_IMPL(vid3d_native, CPU, m) {
  m.impl("depthwise_conv3d_forward", &depthwise_conv3d_forward);
  m.impl("depthwise_conv3d_backward", &depthwise_conv3d_backward);
}

}  // namespace vid3d::cpu
