// CPU cat + channel shuffle of 5-D tensors, forward and backward, as one permuted copy.
// Shuffling the concatenation of the inputs with g groups sends concatenated channel
// i * (C / g) + j to output channel j * g + i; the backward sends it back and splits.
// The copy moves raw elements, so every dtype works.
//
// Where every tensor's channels are unit-strided (channels_last_3d), each position (n, t, h, w)
// holds the concatenation as a g x (C / g) matrix, row i being concatenated channels
// [i * C / g, (i + 1) * C / g), and the shuffled tensor holds its transpose: the copy is one small
// transpose per position, vectorized where g is 1, 2, 3, 4 or 8, or, with a single input, C / g is.
// Other layouts copy channel by channel: planar (NCDHW) channels are whole volumes.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace vid3d::cpu {
namespace {

// A 5-D tensor's data and its N, T, H, W strides in bytes. The data pointer is writable for the
// tensors a copy writes (taken with mutable_data_ptr); the others are only read through it.
struct TensorPositions {
  char* base;
  int64_t stride[4];

  TensorPositions(const at::Tensor& t, bool written)
      : base(written ? static_cast<char*>(t.mutable_data_ptr())
                     : static_cast<char*>(const_cast<void*>(t.const_data_ptr()))) {
    const int64_t item = t.element_size();
    const int64_t dims[4] = {0, 2, 3, 4};
    for (int d = 0; d < 4; ++d) stride[d] = t.stride(dims[d]) * item;
  }

  char* at(int64_t n, int64_t t, int64_t h, int64_t w) const {
    return base + n * stride[0] + t * stride[1] + h * stride[2] + w * stride[3];
  }
};

// Where one destination channel reads from: a source tensor and the byte offset of its channel.
struct ChannelSource {
  int64_t tensor;
  int64_t offset;
};

// The channels of the concatenation of `tensors` (which are read), in order.
struct Concatenation {
  std::vector<TensorPositions> tensors;
  std::vector<ChannelSource> channels;

  explicit Concatenation(at::TensorList list) {
    for (const auto& t : list) {
      const int64_t k = static_cast<int64_t>(tensors.size());
      tensors.emplace_back(t, /*written=*/false);
      for (int64_t c = 0; c < t.size(1); ++c) channels.push_back({k, c * t.stride(1) * t.element_size()});
    }
  }
};

int64_t total_channels(at::TensorList tensors) {
  int64_t c = 0;
  for (const auto& t : tensors) c += t.size(1);
  return c;
}

// A 16-byte element (complex128), which no integer type holds.
struct Element16 {
  char bytes[16];
};

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls body(TypeTag<E>{}) with E a raw element type of `bytes` bytes: an integer type where one
// exists, so that the transposes vectorize.
template <typename Body>
void dispatch_element_size(int64_t bytes, const Body& body) {
  switch (bytes) {
    case 1: return body(TypeTag<uint8_t>{});
    case 2: return body(TypeTag<uint16_t>{});
    case 4: return body(TypeTag<uint32_t>{});
    case 8: return body(TypeTag<uint64_t>{});
    case 16: return body(TypeTag<Element16>{});
    default: TORCH_CHECK(false, "vid3d cat_shuffle3d (cpu): unsupported element size ", bytes);
  }
}

// ---------------------------------------------------------------- planar and any other layout

// Copies channel c of `dst` from sources[c], for all (n, t, h, w).
template <typename element_t>
void gather_channels(const at::Tensor& dst, const std::vector<TensorPositions>& tensors, const ChannelSource* sources) {
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
          for (int64_t k = 0; k < K; ++k) position[k] = tensors[k].at(n, t, h, w);
          char* o = out_row + w * ds[4];
          for (int64_t c = 0; c < C; ++c)
            *reinterpret_cast<element_t*>(o + c * ds[1]) =
                *reinterpret_cast<const element_t*>(position[tensor_of[c]] + offset_of[c]);
        }
      }
    });
    return;
  }
  // Planar: each destination channel volume is one (often contiguous) copy. Small volumes are copied
  // in a few cycles, so the indices step along and each tensor's layout is checked once, not per volume.
  const int64_t volume = T * H * W;
  std::vector<char> dense_tensor(K);
  for (int64_t k = 0; k < K; ++k) {
    const TensorPositions& s = tensors[k];
    dense_tensor[k] = ds[4] == item && s.stride[3] == item && ds[3] == W * item && s.stride[2] == W * item &&
                      ds[2] == H * W * item && s.stride[1] == H * W * item;
  }
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, volume));
  at::parallel_for(0, N * C, grain, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin, c = begin % C, n = begin / C; nc < end; ++nc) {
      const int64_t k = sources[c].tensor;
      const TensorPositions& s = tensors[k];
      const char* src = s.base + sources[c].offset + n * s.stride[0];
      char* o = out + n * ds[0] + c * ds[1];
      if (dense_tensor[k]) {
        std::memcpy(o, src, volume * item);
      } else {
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
      if (++c == C) c = 0, ++n;
    }
  });
}

void gather_channels(const at::Tensor& dst, const std::vector<TensorPositions>& tensors, const ChannelSource* sources) {
  if (dst.numel() == 0) return;
  dispatch_element_size(dst.element_size(), [&](auto tag) {
    gather_channels<typename decltype(tag)::type>(dst, tensors, sources);
  });
}

// ---------------------------------------------------------------- unit-strided channels

// out[j * G + i] = in[i][j] for i < G, j < n: G streams interleaved into one.
template <int G, typename E>
void interleave(E* __restrict out, const E* const* in, int64_t n) {
  const E* stream[G];
  std::copy(in, in + G, stream);
  for (int64_t j = 0; j < n; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < G; ++i) out[j * G + i] = stream[i][j];
}

// out[i][j] = in[j * G + i] for i < G, j < n: one stream split into G.
template <int G, typename E>
void deinterleave(E* const* out, const E* __restrict in, int64_t n) {
  E* stream[G];
  std::copy(out, out + G, stream);
  for (int64_t j = 0; j < n; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < G; ++i) stream[i][j] = in[j * G + i];
}

// The interleave (Split false) or deinterleave of `g` streams, g not a compile-time constant.
template <bool Split, typename E>
void interleave_any(E* joined, E* const* streams, int64_t g, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < g; ++i) {
      if constexpr (Split) {
        streams[i][j] = joined[j * g + i];
      } else {
        joined[j * g + i] = streams[i][j];
      }
    }
}

// The stream counts with an instantiated interleave<G>/deinterleave<G>: those that vectorize well
// (vid3d/ops/_kernels.py's _shuffle_transposes mirrors this list).
using FastInterleaves = std::integer_sequence<int, 1, 2, 3, 4, 8>;

template <int... G>
bool has_fast_interleave(std::integer_sequence<int, G...>, int64_t g) {
  return ((g == G) || ...);
}

bool has_fast_interleave(int64_t g) { return has_fast_interleave(FastInterleaves{}, g); }

// interleave<G> or deinterleave<G> for the G given at run time where it is one of G..., else
// interleave_any.
template <bool Split, typename E, int... G>
void interleave_streams(std::integer_sequence<int, G...>, E* joined, E* const* streams, int64_t g, int64_t n) {
  const auto run = [&](auto size) {
    constexpr int kSize = decltype(size)::value;
    if (g != kSize) return false;
    if constexpr (Split) {
      deinterleave<kSize>(streams, static_cast<const E*>(joined), n);
    } else {
      interleave<kSize>(joined, streams, n);
    }
    return true;
  };
  if (!(run(std::integral_constant<int, G>{}) || ...)) interleave_any<Split>(joined, streams, g, n);
}

template <bool Split, typename E>
void interleave_streams(E* joined, E* const* streams, int64_t g, int64_t n) {
  interleave_streams<Split>(FastInterleaves{}, joined, streams, g, n);
}

// Whether the transpose per position applies: unit channel strides everywhere, and each of the
// g rows of the concatenation inside one tensor.
bool transposes_apply(at::TensorList parts, const at::Tensor& shuffled, int64_t groups) {
  const auto unit_channels = [](const at::Tensor& t) { return t.size(1) == 1 || t.stride(1) == 1; };
  if (shuffled.numel() == 0 || !unit_channels(shuffled)) return false;
  const int64_t per_group = shuffled.size(1) / groups;
  for (const auto& t : parts)
    if (!unit_channels(t) || t.size(1) % per_group != 0) return false;
  return true;
}

// Shuffled channel j * g + i = concatenated channel i * (C / g) + j at every position, copied
// from the parts into `shuffled` (Split false, the forward) or from `shuffled` into the parts (the
// backward), one transpose per position. With g not one of the vectorized sizes but C / g one,
// the transpose runs along the other side, where it can: with a single part, its rows are
// equally spaced, and the g x (C / g) matrix is C / g interleaved streams of g.
template <bool Split, typename E>
void transpose_positions(at::TensorList parts, const at::Tensor& shuffled, int64_t groups) {
  const int64_t N = shuffled.size(0), C = shuffled.size(1), T = shuffled.size(2), H = shuffled.size(3),
                W = shuffled.size(4);
  const int64_t per_group = C / groups;
  const bool by_columns = !has_fast_interleave(groups) && has_fast_interleave(per_group) && parts.size() == 1;
  const int64_t streams = by_columns ? per_group : groups;
  // Stream i starts at element `stream_offset[i]` of part `stream_part[i]` (by rows), or at
  // element i * g of the shuffled position (by columns).
  std::vector<int64_t> stream_part(by_columns ? 0 : streams), stream_offset(streams);
  for (int64_t i = 0, part = 0, first = 0; i < streams; ++i) {
    if (by_columns) {
      stream_offset[i] = i * groups;
      continue;
    }
    while (i * per_group >= first + parts[part].size(1)) first += parts[part++].size(1);
    stream_part[i] = part;
    stream_offset[i] = i * per_group - first;
  }
  std::vector<TensorPositions> part_positions;
  for (const auto& part : parts) part_positions.emplace_back(part, /*written=*/Split);
  const TensorPositions shuffled_positions(shuffled, /*written=*/!Split);
  at::parallel_for(0, N * T * H, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, W * C)),
                   [&](int64_t begin, int64_t end) {
    std::vector<E*> stream(streams);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t h = r % H, t = (r / H) % T, n = r / (H * T);
      for (int64_t w = 0; w < W; ++w) {
        auto* position = reinterpret_cast<E*>(shuffled_positions.at(n, t, h, w));
        if (by_columns) {
          // Rows of the single part, read (or written) as one stream of C elements.
          auto* joined = reinterpret_cast<E*>(part_positions[0].at(n, t, h, w));
          for (int64_t i = 0; i < streams; ++i) stream[i] = position + stream_offset[i];
          interleave_streams<!Split>(joined, stream.data(), per_group, groups);
          continue;
        }
        for (int64_t i = 0; i < streams; ++i)
          stream[i] = reinterpret_cast<E*>(part_positions[stream_part[i]].at(n, t, h, w)) + stream_offset[i];
        interleave_streams<Split>(position, stream.data(), groups, per_group);
      }
    }
  });
}

template <bool Split>
void transpose_positions(at::TensorList parts, const at::Tensor& shuffled, int64_t groups) {
  dispatch_element_size(shuffled.element_size(), [&](auto tag) {
    transpose_positions<Split, typename decltype(tag)::type>(parts, shuffled, groups);
  });
}

// ---------------------------------------------------------------- ops

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
  if (transposes_apply(inputs, output, groups)) return transpose_positions<false>(inputs, output, groups);
  const Concatenation cat(inputs);
  const int64_t C = output.size(1), per_group = C / groups;
  std::vector<ChannelSource> sources(C);  // indexed by output channel
  for (int64_t i = 0; i < groups; ++i)
    for (int64_t j = 0; j < per_group; ++j) sources[j * groups + i] = cat.channels[i * per_group + j];
  gather_channels(output, cat.tensors, sources.data());
}

void cat_shuffle3d_backward(const at::Tensor& grad_output, int64_t groups, at::TensorList grad_inputs) {
  check_tensors(grad_inputs, grad_output, groups);
  if (transposes_apply(grad_inputs, grad_output, groups))
    return transpose_positions<true>(grad_inputs, grad_output, groups);
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
