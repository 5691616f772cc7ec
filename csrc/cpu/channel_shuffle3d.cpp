// CPU cat + channel shuffle of 5-D tensors, forward and backward, as one permuted copy.
// Shuffling the concatenation of the inputs with g groups sends concatenated channel
// i * (C / g) + j to output channel j * g + i; the backward sends it back and splits.
// The copy moves raw elements, so every dtype works.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

namespace vid3d::cpu {
namespace {

// A source tensor: its data and its N, T, H, W strides in bytes.
struct SourceTensor {
  const char* base;
  int64_t stride[4];
};

// Where one destination channel reads from: a source tensor and the byte offset of its channel.
struct ChannelSource {
  int64_t tensor;
  int64_t offset;
};

// The channels of the concatenation of `tensors`, in order.
struct Concatenation {
  std::vector<SourceTensor> tensors;
  std::vector<ChannelSource> channels;

  explicit Concatenation(at::TensorList list) {
    for (const auto& t : list) {
      const int64_t item = t.element_size();
      const int64_t k = static_cast<int64_t>(tensors.size());
      tensors.push_back({static_cast<const char*>(t.const_data_ptr()),
                         {t.stride(0) * item, t.stride(2) * item, t.stride(3) * item, t.stride(4) * item}});
      for (int64_t c = 0; c < t.size(1); ++c) channels.push_back({k, c * t.stride(1) * item});
    }
  }
};

int64_t total_channels(at::TensorList tensors) {
  int64_t c = 0;
  for (const auto& t : tensors) c += t.size(1);
  return c;
}

template <int Bytes>
struct Element {
  char bytes[Bytes];
};

// Copies channel c of `dst` from sources[c], for all (n, t, h, w).
template <typename element_t>
void gather_channels(const at::Tensor& dst, const std::vector<SourceTensor>& tensors, const ChannelSource* sources) {
  const int64_t N = dst.size(0), C = dst.size(1), T = dst.size(2), H = dst.size(3), W = dst.size(4);
  const int64_t K = static_cast<int64_t>(tensors.size());
  auto* out = static_cast<char*>(dst.mutable_data_ptr());
  const int64_t item = sizeof(element_t);
  const int64_t ds[5] = {dst.stride(0) * item, dst.stride(1) * item, dst.stride(2) * item,
                         dst.stride(3) * item, dst.stride(4) * item};
  if (dst.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d) {
    // Channels innermost: walk positions; at each, every destination channel reads one element
    // at a fixed offset from its source tensor's position.
    std::vector<int64_t> tensor_of(C), offset_of(C);
    for (int64_t c = 0; c < C; ++c) tensor_of[c] = sources[c].tensor, offset_of[c] = sources[c].offset;
    at::parallel_for(0, N * T * H, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, W * C)),
                     [&](int64_t begin, int64_t end) {
      std::vector<const char*> position(K);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t h = r % H, t = (r / H) % T, n = r / (H * T);
        char* out_row = out + n * ds[0] + t * ds[2] + h * ds[3];
        for (int64_t w = 0; w < W; ++w) {
          for (int64_t k = 0; k < K; ++k) {
            const SourceTensor& s = tensors[k];
            position[k] = s.base + n * s.stride[0] + t * s.stride[1] + h * s.stride[2] + w * s.stride[3];
          }
          char* o = out_row + w * ds[4];
          if (K == 1) {
            const char* src = position[0];
            for (int64_t c = 0; c < C; ++c)
              *reinterpret_cast<element_t*>(o + c * ds[1]) = *reinterpret_cast<const element_t*>(src + offset_of[c]);
          } else {
            for (int64_t c = 0; c < C; ++c)
              *reinterpret_cast<element_t*>(o + c * ds[1]) =
                  *reinterpret_cast<const element_t*>(position[tensor_of[c]] + offset_of[c]);
          }
        }
      }
    });
    return;
  }
  // Planar: each destination channel volume is one (often contiguous) copy.
  at::parallel_for(0, N * C, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, T * H * W)),
                   [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t c = nc % C, n = nc / C;
      const SourceTensor& s = tensors[sources[c].tensor];
      const char* src = s.base + sources[c].offset + n * s.stride[0];
      char* o = out + n * ds[0] + c * ds[1];
      const bool dense = ds[4] == item && s.stride[3] == item && ds[3] == W * item &&
                         s.stride[2] == W * item && ds[2] == H * W * item && s.stride[1] == H * W * item;
      if (dense) {
        std::memcpy(o, src, T * H * W * item);
        continue;
      }
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
          const char* src_row = src + t * s.stride[1] + h * s.stride[2];
          char* dst_row = o + t * ds[2] + h * ds[3];
          for (int64_t w = 0; w < W; ++w) {
            *reinterpret_cast<element_t*>(dst_row + w * ds[4]) =
                *reinterpret_cast<const element_t*>(src_row + w * s.stride[3]);
          }
        }
    }
  });
}

void gather_channels(const at::Tensor& dst, const std::vector<SourceTensor>& tensors, const ChannelSource* sources) {
  if (dst.numel() == 0) return;
  switch (dst.element_size()) {
    case 1: return gather_channels<Element<1>>(dst, tensors, sources);
    case 2: return gather_channels<Element<2>>(dst, tensors, sources);
    case 4: return gather_channels<Element<4>>(dst, tensors, sources);
    case 8: return gather_channels<Element<8>>(dst, tensors, sources);
    case 16: return gather_channels<Element<16>>(dst, tensors, sources);
    default: TORCH_CHECK(false, "vid3d cat_shuffle3d (cpu): unsupported element size ", dst.element_size());
  }
}

void check_tensors(at::TensorList tensors, const at::Tensor& other, int64_t groups) {
  const int64_t channels = total_channels(tensors);
  TORCH_CHECK(groups >= 1 && channels % groups == 0,
              "vid3d cat_shuffle3d (cpu): groups must divide the channel count");
  TORCH_CHECK(other.dim() == 5 && other.size(1) == channels,
              "vid3d cat_shuffle3d (cpu): channel counts do not match");
  for (const auto& t : tensors) {
    TORCH_CHECK(t.dim() == 5 && t.scalar_type() == other.scalar_type() && t.size(0) == other.size(0) &&
                    t.size(2) == other.size(2) && t.size(3) == other.size(3) && t.size(4) == other.size(4),
                "vid3d cat_shuffle3d (cpu): tensors must be 5-D with matching N, T, H, W and dtype");
  }
}

void cat_shuffle3d_forward(at::TensorList inputs, int64_t groups, const at::Tensor& output) {
  check_tensors(inputs, output, groups);
  const Concatenation cat(inputs);
  const int64_t C = output.size(1), per_group = C / groups;
  std::vector<ChannelSource> sources(C);  // indexed by output channel
  for (int64_t i = 0; i < groups; ++i)
    for (int64_t j = 0; j < per_group; ++j) sources[j * groups + i] = cat.channels[i * per_group + j];
  gather_channels(output, cat.tensors, sources.data());
}

void cat_shuffle3d_backward(const at::Tensor& grad_output, int64_t groups, at::TensorList grad_inputs) {
  check_tensors(grad_inputs, grad_output, groups);
  const Concatenation shuffled{at::TensorList(grad_output)};
  const int64_t C = grad_output.size(1), per_group = C / groups;
  std::vector<ChannelSource> sources(C);  // indexed by concatenated channel
  for (int64_t i = 0; i < groups; ++i)
    for (int64_t j = 0; j < per_group; ++j) sources[i * per_group + j] = shuffled.channels[j * groups + i];
  int64_t offset = 0;
  for (const auto& g : grad_inputs) {
    gather_channels(g, shuffled.tensors, sources.data() + offset);
    offset += g.size(1);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(vid3d_native, CPU, m) {
  m.impl("cat_shuffle3d_forward", &cat_shuffle3d_forward);
  m.impl("cat_shuffle3d_backward", &cat_shuffle3d_backward);
}

}  // namespace vid3d::cpu
