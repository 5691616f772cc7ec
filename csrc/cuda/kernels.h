// Plain parameter structs and launchers of the CUDA kernels. No torch headers: the kernels
// (*.cu) include this and the torch glue (glue.h, registered by ops.cpp) fills the structs from
// tensors and calls the launchers on the current stream.
// Every launcher checks its launch with cudaGetLastError and returns the error; none synchronizes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "index_math.h"

namespace vid3d::cuda {

enum class ScalarKind { Float, Double, Half, BFloat16 };

enum class Activation : int { None = 0, ReLU = 1, ReLU6 = 2 };

// A 5-D depthwise convolution: input (N, C, in_size) -> output (N, C, out_size), any strides
// (in elements). weight is [C][taps] and bias [C] (or null), both in the accumulation type
// (double for Double, float otherwise).
struct DepthwiseParams {
  int64_t batch, channels;
  int64_t in_size[3], out_size[3];
  ConvDim dims[3];
  int64_t input_strides[5], output_strides[5];
  const void* input;
  const void* weight;
  const void* bias;
  void* output;
  Activation activation;
  ScalarKind scalar;
};

// output = activation(depthwise conv of input + bias). Channels-last tensors (unit channel
// stride in and out) take the kernel that vectorizes over channels, others the one that
// vectorizes along W. Also computes the input gradient of a stride-1 convolution (the caller
// passes grad_output as input, the flipped weight and padding (k - 1) * dilation - padding).
template <ScalarKind kind>
cudaError_t launch_depthwise_forward(const DepthwiseParams& p, cudaStream_t stream);

// The backward of a depthwise convolution: conv.input is the input, conv.output the grad_output
// (read), conv.weight the weight ([C][taps], accumulation type).
struct DepthwiseBackwardParams {
  DepthwiseParams conv;
  // grad_input, written by launch_depthwise_input_grad (the transposed stencil, gathered, no
  // atomics; it sums only the taps that meet grad_output). With skip_if set, a flag in device
  // memory, the kernel writes nothing when the flag is true.
  void* grad_input;
  int64_t grad_input_strides[5];
  const bool* skip_if;
  // Weight and bias gradients (launch_depthwise_param_grad): per-block partial sums into
  // `partials` (chunks x C x (taps + 1), accumulation type), then a fixed-order sum into
  // grad_params ([C][taps + 1]: the weight taps, then the bias), so the result does not depend on
  // scheduling. chunks comes from depthwise_param_grad_chunks.
  void* partials;
  void* grad_params;
  int64_t chunks;
};

template <ScalarKind kind>
cudaError_t launch_depthwise_input_grad(const DepthwiseBackwardParams& p, cudaStream_t stream);

template <ScalarKind kind>
cudaError_t launch_depthwise_param_grad(const DepthwiseBackwardParams& p, cudaStream_t stream);

// Number of chunks the weight gradient splits its (batch x output tiles) into per channel: enough
// blocks to fill `multiprocessors`, at most one tile each.
int64_t depthwise_param_grad_chunks(const DepthwiseParams& p, int multiprocessors);

// Cat + channel shuffle, one tensor of the concatenation at a time: `part` holds channels
// [first_channel, first_channel + part_channels) of the concatenation, which the shuffle with
// `groups` groups sends to channels shuffled_channel(...) of `whole` (total_channels channels).
// Forward copies part -> whole, backward whole -> part. Elements are moved as raw bytes.
struct ShuffleParams {
  int64_t batch, part_channels, spatial[3];
  int64_t part_strides[5], whole_strides[5];  // in elements
  int64_t first_channel, total_channels, groups;
  int element_bytes;
  const void* source;  // part (forward) or whole (backward)
  void* destination;
  bool to_whole;       // forward
};

cudaError_t launch_cat_shuffle_part(const ShuffleParams& p, cudaStream_t stream);

// The (2+1)D convolution of a depthwise pair, fused: spatial (1, kh, kw) conv with spatial_bias
// and the optional ReLU, then temporal (kt, 1, 1) conv with temporal_bias, the intermediate kept
// in registers. spatial = conv over (H, W) with dims[1..2]; temporal over T with dims[0].
struct Conv2Plus1dParams {
  int64_t batch, channels;
  int64_t in_size[3], out_size[3];
  ConvDim dims[3];  // T from the temporal stage, H and W from the spatial one
  int64_t input_strides[5], output_strides[5];
  const void* input;
  const void* spatial_weight;   // [C][kh * kw], accumulation type
  const void* temporal_weight;  // [C][kt]
  const void* spatial_bias;     // [C] or null
  const void* temporal_bias;    // [C] or null
  void* output;
  bool mid_relu;
  ScalarKind scalar;
};

cudaError_t launch_conv2plus1d_depthwise(const Conv2Plus1dParams& p, cudaStream_t stream);

}  // namespace vid3d::cuda
