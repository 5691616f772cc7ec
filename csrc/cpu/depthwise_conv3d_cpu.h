// Plain parameter struct and entry points of the CPU depthwise conv3d kernels.
// No torch headers here: the kernels are compiled once per instruction set
// (depthwise_conv3d_kernels_*.cpp) and the torch glue picks one at run time.
#pragma once

#include <cstdint>
#include <string>

namespace vid3d::cpu {

enum class ScalarKind { Float, Double, BFloat16, Half };

struct DepthwiseConv3dParams {
  int64_t batch;
  int64_t channels;
  int64_t in_size[3];   // T, H, W
  int64_t out_size[3];  // To, Ho, Wo
  int64_t kernel[3];
  int64_t stride[3];
  int64_t padding[3];
  int64_t dilation[3];
  int64_t input_strides[5];   // N, C, T, H, W, in elements
  int64_t output_strides[5];  // output (forward) or grad_output (backward)
  int64_t grad_input_strides[5];  // backward only
  bool vectorize_channels;  // true: the kernels that vectorize over C; false: those that vectorize along W
  bool stream_output;       // a large output: channel-vectorized stores may bypass the caches
  bool stream_planes;       // a larger output: the planar forward streams its contiguous planes
  // Forward on small planes, read in place: planar layouts with each plane in one or two float vectors
  // (planes of at most plane_vector_lanes() positions), or channel vectors with unit C strides.
  bool small_planes;
  // Forward on small volumes of small planes, float NCDHW with each (n, c) volume contiguous and the
  // volumes consecutive along C (transposed), or channels-last with unit channel strides (gathered):
  // blocks of 8 channels as channel vectors in zero-padded planes.
  bool transpose_volumes;
  ScalarKind scalar;
};

// Weights and biases arrive in the accumulation type (double for double
// tensors, float otherwise). Planar kernels and the transposed-volumes forward take
// the weight as [C][taps], the other channel-vectorized kernels as [taps][C].
// grad_weight/grad_bias are double [C][taps] / [C]; any grad pointer may be null.
#define VID3D_DECLARE_DEPTHWISE_KERNELS(isa)                                              \
  namespace isa {                                                                       \
  void depthwise_conv3d_forward(const DepthwiseConv3dParams& p, const void* input,        \
                                const void* weight, const void* bias, void* output);      \
  void depthwise_conv3d_backward(const DepthwiseConv3dParams& p, const void* grad_output, \
                                 const void* input, const void* weight, void* grad_input, \
                                 double* grad_weight, double* grad_bias);                 \
  int64_t plane_vector_lanes();                                                           \
  }

VID3D_DECLARE_DEPTHWISE_KERNELS(generic)
VID3D_DECLARE_DEPTHWISE_KERNELS(avx2)
VID3D_DECLARE_DEPTHWISE_KERNELS(avx512)

#undef VID3D_DECLARE_DEPTHWISE_KERNELS

// The instruction set of the kernels in use: "generic", "avx2" or "avx512".
std::string cpu_isa();

}  // namespace vid3d::cpu
