// CPU depthwise conv3d kernels, templated on the element and accumulation type and written
// with GCC/Clang vector extensions: the planar kernels vectorize along W, the channel kernels
// over C. Included once per instruction set (compile_for_isa.h), inside the namespace
// VID3D_ISA_NAMESPACE, with VID3D_VECTOR_BYTES as the vector width.
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "depthwise_conv3d_cpu.h"

namespace vid3d::cpu::VID3D_ISA_NAMESPACE {
namespace {

// Output indices o in [lo, hi) whose input index o * stride + shift lies in [0, in_size).
struct ValidRange {
  int64_t lo, hi;
};

inline ValidRange valid_range(int64_t in_size, int64_t out_size, int64_t stride, int64_t shift) {
  const int64_t lo = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
  const int64_t last = in_size - 1 - shift;
  const int64_t hi = last < 0 ? 0 : std::min(out_size, last / stride + 1);
  return {lo, std::max(lo, hi)};
}

// Per dimension and tap: the shift (k * dilation - padding) and the valid output range.
struct TapRanges {
  std::vector<int64_t> shift[3];
  std::vector<ValidRange> range[3];

  explicit TapRanges(const DepthwiseConv3dParams& p) {
    for (int d = 0; d < 3; ++d) {
      for (int64_t k = 0; k < p.kernel[d]; ++k) {
        const int64_t s = k * p.dilation[d] - p.padding[d];
        shift[d].push_back(s);
        range[d].push_back(valid_range(p.in_size[d], p.out_size[d], p.stride[d], s));
      }
    }
  }
};

inline int64_t taps_of(const DepthwiseConv3dParams& p) {
  return p.kernel[0] * p.kernel[1] * p.kernel[2];
}

// Enough work per parallel chunk to amortize the thread hand-off.
inline int64_t grain_for(int64_t work_per_item) {
  constexpr int64_t kWorkPerChunk = 1 << 15;
  return std::max<int64_t>(1, kWorkPerChunk / std::max<int64_t>(1, work_per_item));
}

// The items [0, total) of a parallel loop, as one thread takes them: in chunks that it claims
// from a counter shared by the threads as it finishes the last, not in one fixed share per
// thread, so a thread that runs slower (another process on its core) takes fewer instead of
// holding up the call.
class WorkQueue {
 public:
  WorkQueue(std::atomic<int64_t>& claimed, int64_t total, int64_t chunk)
      : claimed_(claimed), total_(total), chunk_(chunk) {}

  // The next item into `item`, or false when every item is taken.
  bool next(int64_t& item) {
    if (at_ == end_) {
      at_ = claimed_.fetch_add(chunk_, std::memory_order_relaxed);
      if (at_ >= total_) {
        at_ = end_ = total_;
        return false;
      }
      end_ = std::min(total_, at_ + chunk_);
    }
    item = at_++;
    return true;
  }

 private:
  std::atomic<int64_t>& claimed_;
  const int64_t total_, chunk_;
  int64_t at_ = 0, end_ = 0;
};

// Runs per_thread(queue) on each thread, its WorkQueue sharing out [0, total) in chunks of at
// least `grain` items: about 8 a thread, long runs of consecutive items (which the prefetchers
// follow) and a claim on the shared counter per eighth of a thread's work.
template <typename PerThread>
void parallel_items(int64_t total, int64_t grain, const PerThread& per_thread) {
  constexpr int64_t kChunksPerThread = 8;
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), (total + grain - 1) / grain);
  const int64_t chunk = std::max(grain, total / std::max<int64_t>(1, threads * kChunksPerThread));
  std::atomic<int64_t> claimed{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    WorkQueue queue(claimed, total, chunk);
    per_thread(queue);
  });
}

// ---------------------------------------------------------------- planar (NCDHW-like)

// Vectors of the build's width (VID3D_VECTOR_BYTES per instruction set), as GCC/Clang vector
// extensions so the same code compiles for every ISA; loads and stores are unaligned.
template <typename T>
struct Vec {
  // typedef, not `using`: GCC drops vector_size on a dependent alias declaration.
  typedef T type __attribute__((vector_size(VID3D_VECTOR_BYTES)));
};
template <typename acc_t>
using vec_t = typename Vec<acc_t>::type;
template <typename acc_t>
constexpr int64_t kLanes = VID3D_VECTOR_BYTES / sizeof(acc_t);

static_assert(sizeof(vec_t<float>) == VID3D_VECTOR_BYTES, "vector extension not applied");

// A vector of acc_t from kLanes consecutive elements of p, converted.
template <typename acc_t, typename scalar_t>
inline vec_t<acc_t> load(const scalar_t* p) {
  vec_t<acc_t> v;
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    std::memcpy(&v, p, sizeof v);
  } else {
    acc_t tmp[kLanes<acc_t>];
    for (int64_t j = 0; j < kLanes<acc_t>; ++j) tmp[j] = static_cast<acc_t>(p[j]);
    std::memcpy(&v, tmp, sizeof v);
  }
  return v;
}

template <typename acc_t, typename scalar_t>
inline void store(scalar_t* p, const vec_t<acc_t>& v) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    std::memcpy(p, &v, sizeof v);
  } else {
    acc_t tmp[kLanes<acc_t>];
    std::memcpy(tmp, &v, sizeof v);
    for (int64_t j = 0; j < kLanes<acc_t>; ++j) p[j] = static_cast<scalar_t>(tmp[j]);
  }
}

// A vector with every lane x: one broadcast. (x + V{} costs a scalar add as well, because
// x + 0 is not x for x = -0; x - 0 is x for every x, so the subtraction folds away.)
template <typename acc_t>
inline vec_t<acc_t> splat(acc_t x) {
  return x - vec_t<acc_t>{};
}

// `size` zeroed elements, the first one vector-aligned: vector loads and stores that straddle
// cache lines cost extra (the 8x960x2x4x4 forward took 4-7% longer from malloc's 16-byte alignment).
template <typename T>
class AlignedBuffer {
 public:
  explicit AlignedBuffer(int64_t size) : storage_(size + VID3D_VECTOR_BYTES / sizeof(T), T(0)) {}
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  T* data() {
    constexpr uintptr_t bytes = VID3D_VECTOR_BYTES;
    return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(storage_.data()) + bytes - 1) / bytes * bytes);
  }

 private:
  std::vector<T> storage_;
};

// A cache-bypassing (streaming) store of v to a vector-aligned y: a large output then skips the
// read of each line before it is overwritten. Plain stores off x86.
template <typename acc_t>
inline void stream_vector(acc_t* y, const vec_t<acc_t>& v) {
#if defined(__x86_64__) && VID3D_VECTOR_BYTES == 64
  if constexpr (std::is_same_v<acc_t, float>) {
    _mm512_stream_ps(y, (__m512)v);
  } else {
    _mm512_stream_pd(y, (__m512d)v);
  }
#elif defined(__x86_64__) && VID3D_VECTOR_BYTES == 32
  if constexpr (std::is_same_v<acc_t, float>) {
    _mm256_stream_ps(y, (__m256)v);
  } else {
    _mm256_stream_pd(y, (__m256d)v);
  }
#elif defined(__x86_64__)
  if constexpr (std::is_same_v<acc_t, float>) {
    _mm_stream_ps(y, (__m128)v);
  } else {
    _mm_stream_pd(y, (__m128d)v);
  }
#else
  store<acc_t>(y, v);
#endif
}

// Orders this thread's streaming stores before what follows.
inline void finish_streaming() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

// The channel-vectorized kernels stream only where a vector is a whole cache line (AVX-512): with
// narrower vectors they write lines in parts, and streaming them was slower (bench/README.md).
#if defined(__x86_64__) && VID3D_VECTOR_BYTES == 64
constexpr bool kStreamingStores = true;
#else
constexpr bool kStreamingStores = false;
#endif

// A streaming store of v where the channel-vectorized kernels stream and y is vector-aligned; a
// plain store elsewhere.
template <typename acc_t>
inline void store_streaming(acc_t* y, const vec_t<acc_t>& v) {
  if (!kStreamingStores || reinterpret_cast<uintptr_t>(y) % VID3D_VECTOR_BYTES != 0) return store<acc_t>(y, v);
  stream_vector<acc_t>(y, v);
}

// dst[h * cols + w] = src[h * row + w] for a plane of rows x cols (cols >= kLanes), with
// streaming stores: each vector of dst's whole cache lines is one load from src, or two blended
// where it spans the end of a row. The partial lines at the ends of dst take plain stores.
template <typename acc_t>
void stream_plane(acc_t* __restrict dst, const acc_t* __restrict src, int64_t rows, int64_t cols, int64_t row) {
  using V = vec_t<acc_t>;
  using Index = std::conditional_t<sizeof(acc_t) == 4, int32_t, int64_t>;
  using Mask = typename Vec<Index>::type;
  constexpr int64_t L = kLanes<acc_t>;
  Mask lane;
  for (int64_t j = 0; j < L; ++j) lane[j] = static_cast<Index>(j);
  constexpr int64_t kLine = 64 / sizeof(acc_t);
  const int64_t n = rows * cols;
  // Whole cache lines only: a line written partly by plain stores and partly streamed is slow.
  const int64_t head = std::min<int64_t>(n, (kLine - reinterpret_cast<uintptr_t>(dst) / sizeof(acc_t) % kLine) % kLine);
  const int64_t body_end = head + (n - head) / kLine * kLine;
  // s points at element i of the plane in src, w is its column.
  const acc_t* s = src;
  int64_t i = 0, w = 0;
  const auto advance = [&](int64_t k) {
    s += k;
    w += k;
    if (w >= cols) {
      w -= cols;
      s += row - cols;
    }
  };
  for (; i < head; ++i, advance(1)) dst[i] = *s;
  for (; i < body_end; i += L, advance(L)) {
    V v = load<acc_t>(s);
    if (w + L > cols) v = lane < Mask{} + static_cast<Index>(cols - w) ? v : load<acc_t>(s + row - cols);
    stream_vector<acc_t>(dst + i, v);
  }
  for (; i < n; ++i, advance(1)) dst[i] = *s;
}

// Outputs computed together in registers by the stencil loops (four vectors); the scratch
// buffers below carry this much slack so a block may run past the end of its segment.
template <typename acc_t>
constexpr int64_t kBlock = 4 * kLanes<acc_t>;

#if defined(__x86_64__) && VID3D_VECTOR_BYTES == 64
#define VID3D_SHIFTED_TAPS 1
// Lanes s .. s + 15 of the concatenation [lo, hi]: one two-source permute.
inline vec_t<float> shifted(const vec_t<float>& lo, const vec_t<float>& hi, int64_t s) {
  static constexpr int32_t kIndex[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                         16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
  return (vec_t<float>)_mm512_permutex2var_ps((__m512)lo, _mm512_loadu_si512(kIndex + s), (__m512)hi);
}

// The first n (< 16) lanes at p, zero past them (no memory past p + n is read).
inline vec_t<float> load_head(const float* p, int64_t n) {
  return (vec_t<float>)_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
}
#endif

// dst[i] = src[i] for i in [0, n), converted: short rows (the planes' rows) in whole vectors,
// as a scalar loop's set-up, or the memmove call GCC makes of one, costs more than the copy. The
// tail is one masked vector where the ISA has them, else the last whole vector of the row again.
template <typename dst_t, typename src_t>
inline void copy_row(dst_t* __restrict dst, const src_t* __restrict src, int64_t n) {
#if defined(VID3D_SHIFTED_TAPS)
  if constexpr (std::is_same_v<dst_t, float> && std::is_same_v<src_t, float>) {
    constexpr int64_t L = kLanes<float>;
    int64_t i = 0;
    for (; i + L <= n; i += L) store<float>(dst + i, load<float>(src + i));
    if (i < n) {
      const auto mask = static_cast<__mmask16>((1u << (n - i)) - 1);
      _mm512_mask_storeu_ps(dst + i, mask, _mm512_maskz_loadu_ps(mask, src + i));
    }
    return;
  }
#endif
  if constexpr (std::is_same_v<dst_t, src_t> && (std::is_same_v<dst_t, float> || std::is_same_v<dst_t, double>)) {
    constexpr int64_t L = kLanes<dst_t>;
    if (n >= L) {
      int64_t i = 0;
      for (; i + L <= n; i += L) {
        store<dst_t>(dst + i, load<dst_t>(src + i));
        __asm__ volatile("" ::: "memory");  // keeps GCC from making the loop a memmove call again
      }
      if (i < n) store<dst_t>(dst + n - L, load<dst_t>(src + n - L));
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<dst_t>(src[i]);
}

// Taps t .. end - 1 whose offsets lie within one vector past off[t] (the kw taps of a row, for
// a kernel narrower than a vector): returns end and the largest offset past off[t].
inline int64_t shift_group(const int64_t* off, int64_t t, int64_t ntaps, int64_t lanes, int64_t* max_shift) {
  int64_t end = t + 1;
  *max_shift = 0;
  while (end < ntaps && off[end] - off[t] >= 0 && off[end] - off[t] < lanes) {
    *max_shift = std::max(*max_shift, off[end] - off[t]);
    ++end;
  }
  return end;
}

// out[i] = init + sum_t w[t] * src[off[t] + i] for i in [0, len), a block of outputs held in
// registers across all taps, the last few vectors one at a time. Writes (and reads) up to
// kLanes - 1 elements past len. With AVX-512, the taps of a row share their loads: a shifted
// tap is a permute of two loaded vectors, not a load that straddles cache lines.
template <typename acc_t>
inline void correlate(acc_t* __restrict out, const acc_t* __restrict src, int64_t len,
                      const int64_t* __restrict off, const acc_t* __restrict w, int64_t ntaps, acc_t init) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
#if defined(VID3D_SHIFTED_TAPS)
  constexpr bool shifted_taps = std::is_same_v<acc_t, float>;
#else
  constexpr bool shifted_taps = false;
#endif
  int64_t i0 = 0;
  for (; i0 + 4 * L <= len; i0 += 4 * L) {
    V a0 = splat(init), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < ntaps;) {
      const acc_t* s = src + off[t] + i0;
      int64_t max_shift = 0;
      const int64_t end = shifted_taps ? shift_group(off, t, ntaps, L, &max_shift) : t + 1;
      const V x0 = load<acc_t>(s), x1 = load<acc_t>(s + L), x2 = load<acc_t>(s + 2 * L), x3 = load<acc_t>(s + 3 * L);
      const V wt = splat(w[t]);
      a0 += wt * x0;
      a1 += wt * x1;
      a2 += wt * x2;
      a3 += wt * x3;
#if defined(VID3D_SHIFTED_TAPS)
      if constexpr (shifted_taps) {
        if (end > t + 1) {
          const V x4 = load_head(s + 4 * L, max_shift);
          for (int64_t u = t + 1; u < end; ++u) {
            const int64_t shift = off[u] - off[t];
            const V wu = splat(w[u]);
            a0 += wu * shifted(x0, x1, shift);
            a1 += wu * shifted(x1, x2, shift);
            a2 += wu * shifted(x2, x3, shift);
            a3 += wu * shifted(x3, x4, shift);
          }
        }
      }
#endif
      t = end;
    }
    store<acc_t>(out + i0, a0);
    store<acc_t>(out + i0 + L, a1);
    store<acc_t>(out + i0 + 2 * L, a2);
    store<acc_t>(out + i0 + 3 * L, a3);
  }
  for (; i0 < len; i0 += L) {
    V a = splat(init);
    for (int64_t t = 0; t < ntaps; ++t) a += splat(w[t]) * load<acc_t>(src + off[t] + i0);
    store<acc_t>(out + i0, a);
  }
}

// Rows of a padded plane correlated with kernels of three rows (unit H stride and dilation):
// out[h][w] = init + sum w[kd][kh][kw] * src[kd * slice + (h + kh) * row + w + kw * kw_step] for
// h in [0, rows), w in [0, cols) rounded up to VV vectors. A tile of R rows x VV vectors stays in
// registers while the input rows stream past it, and each loaded input vector serves all three
// kernel rows: (R + 2) * VV loads per (kd, kw) instead of 3 * R * VV, and R * VV independent sums
// to cover the FMA latency. The last tile of rows starts R rows above the end (it may overlap
// the one before), so rows >= R. Reads up to VV vectors past a row's `cols`.
//
// Output row h starts at out + h * out_row, and each row is written up to VV vectors past `cols`,
// except that nothing is written at or past out + out_end. With out_row < row (a plane written in
// place, out_row == cols) a row's excess lanes land on the next row's first columns: tiles run
// right to left and top to bottom, so the next row's own stores come later and overwrite them.
template <int R, int VV, typename acc_t>
void correlate_rows(acc_t* __restrict out, int64_t out_row, int64_t out_end, const acc_t* __restrict src,
                    int64_t rows, int64_t cols, int64_t row, int64_t slice, int64_t kd_count, int64_t kw_count,
                    int64_t kw_step, const acc_t* __restrict w, acc_t init) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
  constexpr int KH = 3;
  for (int64_t h0 = 0; h0 < rows; h0 += R) {
    const int64_t h = std::min(h0, rows - R);
    for (int64_t w0 = (cols - 1) / (VV * L) * (VV * L); w0 >= 0; w0 -= VV * L) {
      V acc[R][VV];
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < VV; ++v) acc[r][v] = splat(init);
      for (int64_t kd = 0; kd < kd_count; ++kd)
        for (int64_t kw = 0; kw < kw_count; ++kw) {
          const acc_t* s = src + kd * slice + h * row + w0 + kw * kw_step;
          const acc_t* wt = w + kd * KH * kw_count + kw;
          const V w0v = splat(wt[0]), w1v = splat(wt[kw_count]), w2v = splat(wt[2 * kw_count]);
#pragma GCC unroll 16
          for (int r = 0; r < R + KH - 1; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < VV; ++v) {
              const V x = load<acc_t>(s + r * row + v * L);
              if (r < R) acc[r][v] += w0v * x;
              if (r >= 1 && r - 1 < R) acc[r - 1][v] += w1v * x;
              if (r >= 2) acc[r - 2][v] += w2v * x;
            }
        }
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < VV; ++v) {
          const int64_t at = (h + r) * out_row + w0 + v * L;
          if (at + L <= out_end) {
            store<acc_t>(out + at, acc[r][v]);
          } else if (at < out_end) {
            acc_t lanes[L];
            std::memcpy(lanes, &acc[r][v], sizeof lanes);
            std::copy(lanes, lanes + (out_end - at), out + at);
          }
        }
    }
  }
}

// sum_i a[i] * b[i] over [0, len) rounded up to whole blocks (the caller zero-pads a).
template <typename acc_t>
inline acc_t dot(const acc_t* __restrict a, const acc_t* __restrict b, int64_t len) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
  V s0{}, s1{}, s2{}, s3{};
  for (int64_t i0 = 0; i0 < len; i0 += 4 * L) {
    s0 += load<acc_t>(a + i0) * load<acc_t>(b + i0);
    s1 += load<acc_t>(a + i0 + L) * load<acc_t>(b + i0 + L);
    s2 += load<acc_t>(a + i0 + 2 * L) * load<acc_t>(b + i0 + 2 * L);
    s3 += load<acc_t>(a + i0 + 3 * L) * load<acc_t>(b + i0 + 3 * L);
  }
  const V total = (s0 + s1) + (s2 + s3);
  acc_t lanes[L];
  std::memcpy(lanes, &total, sizeof total);
  acc_t sum = 0;
  for (int64_t j = 0; j < L; ++j) sum += lanes[j];
  return sum;
}

// A zero-padded copy of one (n, c) volume in the accumulation type. Element (t, h, w) of the
// source goes to (t + origin[0], h + origin[1], w + origin[2]); each padded row is split into
// `phases` interleaved phases (w % phases) of `row_phase` elements so that a stride-`phases`
// walk along W reads consecutive elements.
template <typename acc_t>
struct PaddedVolume {
  int64_t dims[3];   // padded T, H, W
  int64_t origin[3];
  int64_t filled[3] = {0, 0, 0};  // the size of the box the last fill copied
  int64_t phases, row_phase, row, plane;  // row = phases * row_phase, plane = dims[1] * row
  std::vector<acc_t> data;

  PaddedVolume(const int64_t* dims_, const int64_t* origin_, int64_t phases_, int64_t slack) {
    for (int d = 0; d < 3; ++d) {
      dims[d] = dims_[d];
      origin[d] = origin_[d];
    }
    phases = phases_;
    row_phase = (dims[2] + phases - 1) / phases;
    row = phases * row_phase;
    plane = dims[1] * row;
    data.assign(dims[0] * plane + slack, acc_t(0));
  }

  int64_t index(int64_t t, int64_t h, int64_t w) const {
    return t * plane + h * row + (w % phases) * row_phase + w / phases;
  }

  // Copies src[t * s[0] + h * s[1] + w * s[2]] for the size[] box; the padding stays zero.
  template <typename scalar_t>
  void fill(const scalar_t* src, const int64_t* size, const int64_t* s) {
    std::copy(size, size + 3, filled);
    for (int64_t t = 0; t < size[0]; ++t) {
      const scalar_t* src_row = src + t * s[0];
      if (phases == 1) {
        // Row pointers advance by a step: index() divides (the copy of 28x28 planes took 14% longer).
        acc_t* dst = data.data() + index(t + origin[0], origin[1], origin[2]);
        for (int64_t h = 0; h < size[1]; ++h, dst += row, src_row += s[1]) {
          if (s[2] == 1) {
            copy_row(dst, src_row, size[2]);
          } else {
            for (int64_t w = 0; w < size[2]; ++w) dst[w] = static_cast<acc_t>(src_row[w * s[2]]);
          }
        }
        continue;
      }
      for (int64_t h = 0; h < size[1]; ++h, src_row += s[1])
        for (int64_t w = 0; w < size[2]; ++w)
          data[index(t + origin[0], h + origin[1], w + origin[2])] = static_cast<acc_t>(src_row[w * s[2]]);
    }
  }
};

// Offsets into a PaddedVolume of each tap (kd, kh, kw) of a kernel with this dilation,
// relative to the element an output position starts from.
template <typename acc_t>
std::vector<int64_t> tap_offsets(const PaddedVolume<acc_t>& v, const int64_t* kernel, const int64_t* dilation) {
  std::vector<int64_t> off;
  for (int64_t kd = 0; kd < kernel[0]; ++kd)
    for (int64_t kh = 0; kh < kernel[1]; ++kh)
      for (int64_t kw = 0; kw < kernel[2]; ++kw) {
        const int64_t w = kw * dilation[2];
        off.push_back(kd * dilation[0] * v.plane + kh * dilation[1] * v.row + (w % v.phases) * v.row_phase +
                      w / v.phases);
      }
  return off;
}

template <typename acc_t>
using RowsKernel = void (*)(acc_t*, int64_t, int64_t, const acc_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t, int64_t, const acc_t*, acc_t);

// The correlate_rows tile for planes of rows x cols outputs, or null where it does not apply
// (kernels of other than three rows, H dilation, fewer than 4 rows). Tiles of two vectors where
// the row takes an even number of vectors, else one; then, of the tiles no taller than the plane,
// the tallest that wastes the fewest rows (the last tile overlaps the one before it).
template <typename acc_t>
RowsKernel<acc_t> rows_kernel_for(const int64_t* kernel, const int64_t* dilation, int64_t rows, int64_t cols) {
  if (kernel[1] != 3 || dilation[1] != 1 || rows < 4) return nullptr;
  struct Tile {
    int64_t rows;
    RowsKernel<acc_t> run;
  };
  static constexpr Tile kOneVector[] = {{8, correlate_rows<8, 1, acc_t>}, {7, correlate_rows<7, 1, acc_t>},
                                        {5, correlate_rows<5, 1, acc_t>}, {4, correlate_rows<4, 1, acc_t>}};
  static constexpr Tile kTwoVectors[] = {{7, correlate_rows<7, 2, acc_t>}, {5, correlate_rows<5, 2, acc_t>},
                                         {4, correlate_rows<4, 2, acc_t>}};
  const bool two = (cols + kLanes<acc_t> - 1) / kLanes<acc_t> % 2 == 0;
  const Tile* begin = two ? kTwoVectors : kOneVector;
  const Tile* end = two ? std::end(kTwoVectors) : std::end(kOneVector);
  const auto rows_computed = [rows](const Tile* t) { return (rows + t->rows - 1) / t->rows * t->rows; };
  const Tile* best = nullptr;  // the 4-row tile always fits
  for (const Tile* t = begin; t != end; ++t)
    if (t->rows <= rows && (!best || rows_computed(t) < rows_computed(best))) best = t;
  return best->run;
}

// A correlation over a padded volume: out[o] = init + sum_k w[k] * v[o * stride + k * dilation + start]
// per dimension, for every output position of one plane `to`, written to `dst` (plane of the
// output tensor, element strides ds[0..1] for H, W). With unit H and W strides each output
// plane is computed over the padded rows (columns past the output width are computed and
// dropped), in tiles of rows for kernels of three rows (correlate_rows), else as one flat
// segment; otherwise each output row is a segment.
template <typename scalar_t, typename acc_t>
struct PlaneStencil {
  const PaddedVolume<acc_t>& v;
  std::vector<int64_t> off;
  const int64_t* out;  // To, Ho, Wo
  const int64_t* stride;
  int64_t start;  // element offset of start[] in v
  int64_t start_slice;  // start[0]
  bool flat;
  const int64_t* kernel;
  const int64_t* dilation;
  RowsKernel<acc_t> rows_kernel;  // for flat planes where it applies
  bool stream;  // contiguous flat output planes of at least a vector per row take streaming stores

  PlaneStencil(const PaddedVolume<acc_t>& v_, const int64_t* kernel_, const int64_t* dilation_, const int64_t* out_,
               const int64_t* stride_, const int64_t* start_, bool stream_output)
      : v(v_), off(tap_offsets(v_, kernel_, dilation_)), out(out_), stride(stride_),
        start(v_.index(start_[0], start_[1], start_[2])), start_slice(start_[0]),
        flat(stride_[1] == 1 && stride_[2] == 1),
        kernel(kernel_), dilation(dilation_),
        rows_kernel(flat ? rows_kernel_for<acc_t>(kernel_, dilation_, out_[1], out_[2]) : nullptr),
        stream(stream_output && flat && std::is_same_v<scalar_t, acc_t> && out_[2] >= kLanes<acc_t>) {}

  int64_t scratch_size() const { return (flat ? out[1] * v.row : out[2]) + kBlock<acc_t>; }

  void run(int64_t to, const acc_t* weight, acc_t init, acc_t* scratch, scalar_t* dst, const int64_t* ds) const {
    // Kernel slices kd that read only the padding add nothing: the taps run over [kd_begin, kd_end).
    const int64_t first = start_slice + to * stride[0], d = dilation[0];
    const int64_t lo = v.origin[0] - first, hi = v.origin[0] + v.filled[0] - 1 - first;
    const int64_t kd_begin = lo <= 0 ? 0 : (lo + d - 1) / d;
    const int64_t kd_end = hi < 0 ? 0 : std::min(kernel[0], hi / d + 1);
    const int64_t slices = std::max<int64_t>(0, kd_end - kd_begin), slice_taps = kernel[1] * kernel[2];
    const int64_t ntaps = slices * slice_taps;
    const int64_t* tap_off = off.data() + kd_begin * slice_taps;
    weight += kd_begin * slice_taps;
    const acc_t* base = v.data.data() + start + to * stride[0] * v.plane;
    if (flat) {
      const bool dense_rows = ds[1] == 1 && ds[0] == out[2];
      const acc_t* src = base + kd_begin * d * v.plane;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        // A plane of dense rows that is not streamed is written in place: no copy from the scratch.
        if (rows_kernel && dense_rows && !stream)
          return rows_kernel(dst, out[2], out[1] * out[2], src, out[1], out[2], v.row, d * v.plane, slices,
                             kernel[2], dilation[2], weight, init);
      }
      if (rows_kernel) {
        rows_kernel(scratch, v.row, scratch_size(), src, out[1], out[2], v.row, d * v.plane, slices, kernel[2],
                    dilation[2], weight, init);
      } else {
        correlate(scratch, base, out[1] * v.row, tap_off, weight, ntaps, init);
      }
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        if (stream && dense_rows) return stream_plane(dst, scratch, out[1], out[2], v.row);
      }
      for (int64_t ho = 0; ho < out[1]; ++ho) store_row(scratch + ho * v.row, dst + ho * ds[0], ds[1]);
      return;
    }
    for (int64_t ho = 0; ho < out[1]; ++ho) {
      correlate(scratch, base + ho * stride[1] * v.row, out[2], tap_off, weight, ntaps, init);
      store_row(scratch, dst + ho * ds[0], ds[1]);
    }
  }

  void store_row(const acc_t* src, scalar_t* dst, int64_t step) const {
    if (step == 1) {
      copy_row(dst, src, out[2]);
    } else {
      for (int64_t w = 0; w < out[2]; ++w) dst[w * step] = static_cast<scalar_t>(src[w]);
    }
  }
};

template <typename acc_t>
PaddedVolume<acc_t> padded_input(const DepthwiseConv3dParams& p) {
  int64_t dims[3];
  for (int d = 0; d < 3; ++d) dims[d] = p.in_size[d] + 2 * p.padding[d];
  // Slack: a block may run a whole padded row past the last output.
  return PaddedVolume<acc_t>(dims, p.padding, p.stride[2], kBlock<acc_t> + dims[2] + 1);
}

template <typename scalar_t, typename acc_t>
void forward_planar(const DepthwiseConv3dParams& p, const scalar_t* input, const acc_t* weight,
                    const acc_t* bias, scalar_t* output) {
  const int64_t ntaps = taps_of(p);
  const int64_t* xs = p.input_strides;
  const int64_t* ys = p.output_strides;
  const int64_t volume = p.out_size[0] * p.out_size[1] * p.out_size[2] * ntaps;
  parallel_items(p.batch * p.channels, grain_for(volume), [&](WorkQueue& volumes) {
    PaddedVolume<acc_t> x_pad = padded_input<acc_t>(p);
    const int64_t start[3] = {0, 0, 0};
    const PlaneStencil<scalar_t, acc_t> stencil(x_pad, p.kernel, p.dilation, p.out_size, p.stride, start,
                                                p.stream_planes);
    std::vector<acc_t> scratch(stencil.scratch_size());
    for (int64_t nc; volumes.next(nc);) {
      const int64_t c = nc % p.channels, n = nc / p.channels;
      x_pad.fill(input + n * xs[0] + c * xs[1], p.in_size, xs + 2);
      const acc_t init = bias ? bias[c] : acc_t(0);
      for (int64_t to = 0; to < p.out_size[0]; ++to)
        stencil.run(to, weight + c * ntaps, init, scratch.data(), output + n * ys[0] + c * ys[1] + to * ys[2], ys + 3);
    }
    if (stencil.stream) finish_streaming();
  });
}

// ---------------------------------------------------------------- planes in vectors (tiny planes)
// When a whole input plane and a whole output plane each fit in one or two float vectors (4x4
// planes: one vector on AVX-512, two on AVX2), a tap (kh, kw) of a plane is a zero-masking
// two-source permute of the input plane: no padded copy, no lanes wasted on padding. Needs the
// ISA's variable permute (AVX2, AVX-512).

#if defined(__x86_64__) && (VID3D_VECTOR_BYTES == 64 || VID3D_VECTOR_BYTES == 32)
#define VID3D_PLANE_PERMUTE 1
using FloatVec = vec_t<float>;
constexpr int64_t kPlaneVectors = 2;  // the most vectors a plane may take

// One output vector of a tap: lane o takes lane source[o] of the input plane's vectors [lo, hi]
// (source < 2 * kLanes), or zero where source[o] < 0. Kept as plain arrays (loaded when applied):
// a std::vector does not keep __m512i members aligned.
struct LanePermute {
  int32_t index[kLanes<float>];
  // Which input vectors the lanes read (bit 0: lo, bit 1: hi); 0 when every lane is zero.
  int sources = 0;
#if VID3D_VECTOR_BYTES == 64
  __mmask16 keep = 0;
#else
  uint32_t keep[kLanes<float>];     // all ones where the lane is kept
  uint32_t from_hi[kLanes<float>];  // all ones where the lane reads hi
#endif

  explicit LanePermute(const int32_t* source) {
    constexpr int64_t L = kLanes<float>;
    for (int64_t o = 0; o < L; ++o) {
      const bool kept = source[o] >= 0;
      index[o] = kept ? source[o] : 0;
      if (kept) sources |= source[o] < L ? 1 : 2;
#if VID3D_VECTOR_BYTES == 64
      if (kept) keep = static_cast<__mmask16>(keep | (1u << o));
#else
      keep[o] = kept ? ~0u : 0u;
      from_hi[o] = source[o] >= L ? ~0u : 0u;
#endif
    }
  }

  FloatVec apply(FloatVec lo, FloatVec hi) const {
#if VID3D_VECTOR_BYTES == 64
    const __m512i lanes = _mm512_loadu_si512(index);
    if (sources == 1) return (FloatVec)_mm512_maskz_permutexvar_ps(keep, lanes, (__m512)lo);
    return (FloatVec)_mm512_maskz_permutex2var_ps(keep, (__m512)lo, lanes, (__m512)hi);
#else
    // vpermps reads the low three bits of each index: the lane within lo or within hi.
    const __m256i lanes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(index));
    __m256 v;
    if (sources == 1) {
      v = _mm256_permutevar8x32_ps((__m256)lo, lanes);
    } else if (sources == 2) {
      v = _mm256_permutevar8x32_ps((__m256)hi, lanes);
    } else {
      v = _mm256_blendv_ps(_mm256_permutevar8x32_ps((__m256)lo, lanes), _mm256_permutevar8x32_ps((__m256)hi, lanes),
                           _mm256_loadu_ps(reinterpret_cast<const float*>(from_hi)));
    }
    return (FloatVec)_mm256_and_ps(v, _mm256_loadu_ps(reinterpret_cast<const float*>(keep)));
#endif
  }
};

// The first n lanes of p (zero past them, n <= kLanes); the first n lanes of v stored to p.
// (AVX2's masked moves are slow on AMD cores, its masked store especially: whole vectors use
// plain ones.)
inline FloatVec load_first(const float* p, int64_t n) {
#if VID3D_VECTOR_BYTES == 64
  return (FloatVec)_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
#else
  if (n == kLanes<float>) return load<float>(p);
  return (FloatVec)_mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
#endif
}

inline void store_first(float* p, FloatVec v, int64_t n) {
#if VID3D_VECTOR_BYTES == 64
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), (__m512)v);
#else
  if (n == kLanes<float>) return store<float>(p, v);
  _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                      (__m256)v);
#endif
}

constexpr int64_t kPlaneLanes = kPlaneVectors * kLanes<float>;
#else
constexpr int64_t kPlaneLanes = 0;
#endif

#if defined(VID3D_PLANE_PERMUTE)
// The forward with each (n, c) plane held in NV vectors (see above); float accumulation.
template <int64_t NV, typename scalar_t>
void forward_planes_in_vectors(const DepthwiseConv3dParams& p, const scalar_t* input, const float* weight,
                               const float* bias, scalar_t* output) {
  constexpr int64_t L = kLanes<float>;
  const TapRanges taps(p);
  const int64_t H = p.in_size[1], W = p.in_size[2];
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t KT = p.kernel[0], KH = p.kernel[1], KW = p.kernel[2], ntaps = taps_of(p);
  const int64_t* xs = p.input_strides;
  const int64_t* ys = p.output_strides;
  // Per spatial tap and output vector: output lane ho * Wo + wo reads input lane hi * W + wi.
  std::vector<LanePermute> permutes;
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t kw = 0; kw < KW; ++kw)
      for (int64_t v = 0; v < NV; ++v) {
        int32_t source[L];
        for (int64_t lane = 0; lane < L; ++lane) {
          const int64_t o = v * L + lane, ho = o / Wo, wo = o % Wo;
          const int64_t hi = ho * p.stride[1] + taps.shift[1][kh], wi = wo * p.stride[2] + taps.shift[2][kw];
          const bool inside = ho < Ho && hi >= 0 && hi < H && wi >= 0 && wi < W;
          source[lane] = inside ? static_cast<int32_t>(hi * W + wi) : -1;
        }
        permutes.emplace_back(source);
      }
  const int64_t taps_per_plane = KH * KW;
  constexpr int64_t kPlanesAtOnce = 8;
  // float planes stored row after row are moved with masked vector loads and stores.
  const bool float_planes_in = std::is_same_v<scalar_t, float> && xs[4] == 1 && xs[3] == W;
  const bool float_planes_out = std::is_same_v<scalar_t, float> && ys[4] == 1 && ys[3] == Wo;
  parallel_items(p.batch * p.channels, grain_for(To * NV * L * ntaps), [&](WorkQueue& volumes) {
    float lanes[NV * L];
    for (int64_t nc; volumes.next(nc);) {
      const int64_t c = nc % p.channels, n = nc / p.channels;
      const scalar_t* x = input + n * xs[0] + c * xs[1];
      const float* w = weight + c * ntaps;
      for (int64_t to = 0; to < To; ++to) {
        // A permute is linear, so each spatial tap permutes the weighted sum of the input planes
        // (up to kPlanesAtOnce at a time): KH * KW permutes per output vector, not KT * KH * KW.
        FloatVec acc[NV];
#pragma GCC unroll 2
        for (int64_t v = 0; v < NV; ++v) acc[v] = splat(bias ? bias[c] : 0.0f);
        for (int64_t kd0 = 0; kd0 < KT; kd0 += kPlanesAtOnce) {
          FloatVec planes[kPlanesAtOnce][NV];
          const float* w_planes[kPlanesAtOnce];
          int64_t held = 0;
          for (int64_t kd = kd0; kd < std::min(KT, kd0 + kPlanesAtOnce); ++kd) {
            const int64_t ti = to * p.stride[0] + taps.shift[0][kd];
            if (ti < 0 || ti >= p.in_size[0]) continue;
            const scalar_t* x_plane = x + ti * xs[2];
            if (float_planes_in) {
              const float* src = reinterpret_cast<const float*>(x_plane);
#pragma GCC unroll 2
              for (int64_t v = 0; v < NV; ++v)
                planes[held][v] = load_first(src + v * L, std::clamp<int64_t>(H * W - v * L, 0, L));
            } else {
              std::fill(lanes, lanes + NV * L, 0.0f);
              for (int64_t h = 0; h < H; ++h)
                for (int64_t wi = 0; wi < W; ++wi)
                  lanes[h * W + wi] = static_cast<float>(x_plane[h * xs[3] + wi * xs[4]]);
              for (int64_t v = 0; v < NV; ++v) planes[held][v] = load<float>(lanes + v * L);
            }
            w_planes[held++] = w + kd * taps_per_plane;
          }
          if (held == 0) continue;
          for (int64_t k = 0; k < taps_per_plane; ++k) {
            FloatVec sum[NV];
#pragma GCC unroll 2
            for (int64_t v = 0; v < NV; ++v) sum[v] = w_planes[0][k] * planes[0][v];
            for (int64_t i = 1; i < held; ++i) {
#pragma GCC unroll 2
              for (int64_t v = 0; v < NV; ++v) sum[v] += w_planes[i][k] * planes[i][v];
            }
#pragma GCC unroll 2
            for (int64_t v = 0; v < NV; ++v) {
              const LanePermute& permute = permutes[k * NV + v];
              if (permute.sources != 0) acc[v] += permute.apply(sum[0], sum[NV - 1]);
            }
          }
        }
        scalar_t* y = output + n * ys[0] + c * ys[1] + to * ys[2];
        if (float_planes_out) {
          for (int64_t v = 0; v < NV; ++v)
            if (Ho * Wo > v * L) store_first(reinterpret_cast<float*>(y) + v * L, acc[v], std::min(L, Ho * Wo - v * L));
          continue;
        }
        for (int64_t v = 0; v < NV; ++v) std::memcpy(lanes + v * L, &acc[v], sizeof acc[v]);
        for (int64_t ho = 0; ho < Ho; ++ho)
          for (int64_t wo = 0; wo < Wo; ++wo) y[ho * ys[3] + wo * ys[4]] = static_cast<scalar_t>(lanes[ho * Wo + wo]);
      }
    }
  });
}
#endif

#if defined(VID3D_PLANE_PERMUTE)
// ---------------------------------------------------------------- small NCDHW volumes, transposed
// NCDHW holds the volumes of consecutive channels one after another: eight of them are an 8 x V
// matrix, which 8x8 register transposes turn into [position][channel]. There a tap of every output
// position is one 8-channel FMA with no padding, permutes or masks; the output is transposed back.
// For volumes of a few hundred positions (4x4 planes), where a plane fills few lanes. 8 channels
// (256-bit vectors) on AVX-512 too: its 16x16 transpose would take twice the shuffles per element.
constexpr int64_t kVolumeBlock = 8;

inline void transpose8x8(__m256* r) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

// rows x n (row r at rows_at + r * row_stride) into vectors of 8 lanes, column j to the vector at
// lanes + position[j] * 8 (lanes past rows are zero).
inline void rows_to_lanes(const float* rows_at, int64_t row_stride, int64_t rows, int64_t n, float* lanes,
                          const int32_t* position) {
  int64_t j = 0;
  if (rows == kVolumeBlock) {
    for (; j + kVolumeBlock <= n; j += kVolumeBlock) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(rows_at + i * row_stride + j);
      transpose8x8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(lanes + position[j + i] * kVolumeBlock, r[i]);
    }
  }
  for (; j < n; ++j)
    for (int64_t i = 0; i < kVolumeBlock; ++i)
      lanes[position[j] * kVolumeBlock + i] = i < rows ? rows_at[i * row_stride + j] : 0.0f;
}

// The inverse: n x 8 at lanes into the first rows of rows x n.
inline void lanes_to_rows(const float* lanes, int64_t n, float* rows_at, int64_t row_stride, int64_t rows) {
  int64_t j = 0;
  if (rows == kVolumeBlock) {
    for (; j + kVolumeBlock <= n; j += kVolumeBlock) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(lanes + (j + i) * kVolumeBlock);
      transpose8x8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(rows_at + i * row_stride + j, r[i]);
    }
  }
  for (; j < n; ++j)
    for (int64_t i = 0; i < rows; ++i) rows_at[i * row_stride + j] = lanes[j * kVolumeBlock + i];
}

// The 8 lanes of c0.. of a [C] row, zero past C.
inline __m256 channel_lanes(const float* row, int64_t c0, int64_t C) {
  if (c0 + kVolumeBlock <= C) return _mm256_loadu_ps(row + c0);
  float tmp[kVolumeBlock] = {};
  for (int64_t i = 0; c0 + i < C; ++i) tmp[i] = row[c0 + i];
  return _mm256_loadu_ps(tmp);
}

// Channels-last counterparts of rows_to_lanes and lanes_to_rows: the `rows` channels of a
// position are consecutive, so each position is one vector copy (per element for a partial block).
inline void positions_to_lanes(const float* x, const int64_t* position_offset, int64_t n, int64_t rows,
                               float* lanes, const int32_t* position) {
  for (int64_t j = 0; j < n; ++j) {
    const float* src = x + position_offset[j];
    float* dst = lanes + position[j] * kVolumeBlock;
    if (rows == kVolumeBlock) {
      _mm256_storeu_ps(dst, _mm256_loadu_ps(src));
    } else {
      for (int64_t i = 0; i < rows; ++i) dst[i] = src[i];
    }
  }
}

inline void lanes_to_positions(const float* lanes, int64_t n, float* y, const int64_t* position_offset,
                               int64_t rows) {
  for (int64_t j = 0; j < n; ++j) {
    float* dst = y + position_offset[j];
    if (rows == kVolumeBlock) {
      _mm256_storeu_ps(dst, _mm256_loadu_ps(lanes + j * kVolumeBlock));
    } else {
      for (int64_t i = 0; i < rows; ++i) dst[i] = lanes[j * kVolumeBlock + i];
    }
  }
}

// Output rows H0 and H0 + 1 of a 4x4 plane under a 3x3 kernel at unit stride and dilation,
// padding 1, from one input plane of x (channel vectors, zero-padded to 6x6): only the taps that
// meet the input, all unrolled, each input vector loaded once for every output it reaches (the
// padding's taps are 31% of the 3x3 x 16 multiply-adds). w holds the 9 taps' channel vectors.
template <int H0>
inline void plane4x4_rows(const float* __restrict x, const float* __restrict w, __m256* acc) {
  constexpr int kPadded = 6;
#pragma GCC unroll 4
  for (int r = H0 - 1; r <= H0 + 2; ++r) {
    if (r < 0 || r > 3) continue;
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256 xv = _mm256_loadu_ps(x + ((r + 1) * kPadded + c + 1) * kVolumeBlock);
#pragma GCC unroll 2
      for (int o = 0; o < 2; ++o) {
        const int kh = r - (H0 + o) + 1;
        if (kh < 0 || kh > 2) continue;
#pragma GCC unroll 4
        for (int col = 0; col < 4; ++col) {
          const int kw = c - col + 1;
          if (kw < 0 || kw > 2) continue;
          __m256& sum = acc[o * 4 + col];
          sum = _mm256_fmadd_ps(_mm256_loadu_ps(w + (kh * 3 + kw) * kVolumeBlock), xv, sum);
        }
      }
    }
  }
}

// Float NCDHW input and output whose (n, c) volumes are contiguous and consecutive along C, or
// channels-last ones (unit channel strides: a block's channels are gathered per position, not
// transposed); weight laid out [C][taps], transposed per block of channels by the thread that takes
// the block. The input block is transposed into planes zero-padded as far as the taps reach, so
// every tap of every output position reads a vector: each output plane is taken kPositionBlock
// positions at a time, their sums in registers (independent FMA chains), with a table of the padded
// input position each spatial tap of each output position reads.
void forward_small_volumes(const DepthwiseConv3dParams& p, const float* input, const float* weight,
                           const float* bias, float* output) {
  constexpr int64_t kPositionBlock = 8;
  const TapRanges taps(p);
  const int64_t T = p.in_size[0], H = p.in_size[1], W = p.in_size[2], V = T * H * W;
  const int64_t Ho = p.out_size[1], Wo = p.out_size[2], plane = Ho * Wo, Vo = p.out_size[0] * plane;
  const int64_t C = p.channels, blocks = (C + kVolumeBlock - 1) / kVolumeBlock, ntaps = taps_of(p);
  const int64_t KH = p.kernel[1], KW = p.kernel[2], spatial_taps = KH * KW;
  // Padding before and after along H and W (taps' shifts grow with the tap index).
  const int64_t top = std::max<int64_t>(0, -taps.shift[1][0]), left = std::max<int64_t>(0, -taps.shift[2][0]);
  const int64_t Hp = top + std::max(H, (Ho - 1) * p.stride[1] + taps.shift[1][KH - 1] + 1);
  const int64_t Wp = left + std::max(W, (Wo - 1) * p.stride[2] + taps.shift[2][KW - 1] + 1);
  const int64_t padded_plane = (plane + kPositionBlock - 1) / kPositionBlock * kPositionBlock;
  // Output position q reads, for spatial tap s, the vector at origin[q] + tap_offset[s] of the
  // padded plane (in floats). The positions past the plane that fill the last block repeat the
  // first one's origin: they read inside the plane, and are not stored.
  std::vector<int64_t> origin(padded_plane), tap_offset(spatial_taps);
  for (int64_t q = 0; q < padded_plane; ++q) {
    const int64_t at = q < plane ? q : 0;
    origin[q] = ((top + at / Wo * p.stride[1]) * Wp + left + at % Wo * p.stride[2]) * kVolumeBlock;
  }
  for (int64_t s = 0; s < spatial_taps; ++s)
    tap_offset[s] = (taps.shift[1][s / KW] * Wp + taps.shift[2][s % KW]) * kVolumeBlock;
  std::vector<int32_t> padded_position(V), tap_position(ntaps);
  for (int64_t v = 0; v < V; ++v)
    padded_position[v] = static_cast<int32_t>((v / (H * W) * Hp + top + v / W % H) * Wp + left + v % W);
  for (int64_t k = 0; k < ntaps; ++k) tap_position[k] = static_cast<int32_t>(k);
  const int64_t* xs = p.input_strides;
  const int64_t* ys = p.output_strides;
  const bool gather = xs[1] == 1, scatter = ys[1] == 1;
  // 4x4 planes under 3x3 taps at unit stride and dilation, padding 1 (as in the reference models):
  // the unrolled plane4x4_rows.
  const bool planes_4x4 = H == 4 && W == 4 && Ho == 4 && Wo == 4 && KH == 3 && KW == 3 && p.stride[1] == 1 &&
                          p.stride[2] == 1 && p.dilation[1] == 1 && p.dilation[2] == 1 && p.padding[1] == 1 &&
                          p.padding[2] == 1;
  // Where each position's channels start, for the channels-last gather and scatter.
  std::vector<int64_t> x_offset(gather ? V : 0), y_offset(scatter ? Vo : 0);
  for (int64_t v = 0; v < int64_t(x_offset.size()); ++v)
    x_offset[v] = v / (H * W) * xs[2] + v / W % H * xs[3] + v % W * xs[4];
  for (int64_t v = 0; v < int64_t(y_offset.size()); ++v)
    y_offset[v] = v / plane * ys[2] + v / Wo % Ho * ys[3] + v % Wo * ys[4];
  parallel_items(p.batch * blocks, grain_for(Vo * kVolumeBlock * ntaps), [&](WorkQueue& tasks) {
    // The padding stays zero: the transposes write only the inside of the planes.
    AlignedBuffer<float> x_buffer(T * Hp * Wp * kVolumeBlock), y_buffer(Vo * kVolumeBlock);
    float* const x_lanes = x_buffer.data();
    float* const y_lanes = y_buffer.data();
    // The weight of the block in hand, [tap][channel]: the tasks run block by block, each block's
    // for every n in turn, so a thread transposes a block's weight about once.
    AlignedBuffer<float> w_buffer(ntaps * kVolumeBlock);
    float* const w_lanes = w_buffer.data();
    int64_t w_block = -1;
    for (int64_t task; tasks.next(task);) {
      const int64_t block = task / p.batch, n = task % p.batch;
      const int64_t c0 = block * kVolumeBlock, rows = std::min(kVolumeBlock, C - c0);
      if (block != w_block) {
        rows_to_lanes(weight + c0 * ntaps, ntaps, rows, ntaps, w_lanes, tap_position.data());
        w_block = block;
      }
      if (gather) {
        positions_to_lanes(input + n * xs[0] + c0, x_offset.data(), V, rows, x_lanes, padded_position.data());
      } else {
        rows_to_lanes(input + n * xs[0] + c0 * xs[1], xs[1], rows, V, x_lanes, padded_position.data());
      }
      const __m256 init = bias ? channel_lanes(bias, c0, C) : _mm256_setzero_ps();
      for (int64_t to = 0; to < p.out_size[0]; ++to) {
        for (int64_t q0 = 0; q0 < plane; q0 += kPositionBlock) {
          __m256 acc[kPositionBlock];
          int64_t at[kPositionBlock];
#pragma GCC unroll 8
          for (int64_t j = 0; j < kPositionBlock; ++j) {
            acc[j] = init;
            at[j] = origin[q0 + j];
          }
          for (int64_t kd = 0; kd < p.kernel[0]; ++kd) {
            const int64_t ti = to * p.stride[0] + taps.shift[0][kd];
            if (ti < 0 || ti >= T) continue;
            const float* x = x_lanes + ti * Hp * Wp * kVolumeBlock;
            const float* w = w_lanes + kd * spatial_taps * kVolumeBlock;
            if (planes_4x4) {
              if (q0 == 0) {
                plane4x4_rows<0>(x, w, acc);
              } else {
                plane4x4_rows<2>(x, w, acc);
              }
              continue;
            }
            for (int64_t s = 0; s < spatial_taps; ++s) {
              const __m256 ws = _mm256_loadu_ps(w + s * kVolumeBlock);
              const float* x_tap = x + tap_offset[s];
#pragma GCC unroll 8
              for (int64_t j = 0; j < kPositionBlock; ++j)
                acc[j] = _mm256_fmadd_ps(ws, _mm256_loadu_ps(x_tap + at[j]), acc[j]);
            }
          }
          float* y = y_lanes + (to * plane + q0) * kVolumeBlock;
#pragma GCC unroll 8
          for (int64_t j = 0; j < kPositionBlock; ++j)
            if (j < plane - q0) _mm256_storeu_ps(y + j * kVolumeBlock, acc[j]);
        }
      }
      if (scatter) {
        lanes_to_positions(y_lanes, Vo, output + n * ys[0] + c0, y_offset.data(), rows);
      } else {
        lanes_to_rows(y_lanes, Vo, output + n * ys[0] + c0 * ys[1], ys[1], rows);
      }
    }
  });
}
#endif

// The backward of one (n, c) volume for any strides, summing only the terms that lie inside the
// input and the output (as PyTorch does: no zero padding that could meet an Inf): the input
// gradient is scattered from each output row into a per-volume buffer, the weight and bias
// gradients are summed per tap and output column, then per volume into double. Unit: the input
// is read with unit steps along W (W stride times the stride along W is 1).
template <bool Unit, typename scalar_t, typename acc_t>
struct ExactVolumeBackward {
  const DepthwiseConv3dParams& p;
  const TapRanges taps;
  const bool want_dx, want_dw, want_db;
  std::vector<acc_t> dx, lanes, bias_lane, go_row;  // per volume; per tap and wo; per wo; one row

  ExactVolumeBackward(const DepthwiseConv3dParams& p_, bool dx_, bool dw_, bool db_)
      : p(p_), taps(p_), want_dx(dx_), want_dw(dw_), want_db(db_),
        dx(dx_ ? p_.in_size[0] * p_.in_size[1] * p_.in_size[2] : 0),
        lanes(dw_ ? taps_of(p_) * p_.out_size[2] : 0), bias_lane(db_ ? p_.out_size[2] : 0), go_row(p_.out_size[2]) {}

  // Writes the input gradient of volume (n, c) and adds its weight and bias gradients to dw, db.
  void run(const scalar_t* grad_output, const scalar_t* input, const acc_t* weight, scalar_t* grad_input,
           int64_t n, int64_t c, double* dw, double* db) {
    const int64_t KT = p.kernel[0], KH = p.kernel[1], KW = p.kernel[2], ntaps = taps_of(p);
    const int64_t T = p.in_size[0], H = p.in_size[1], W = p.in_size[2];
    const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
    const int64_t sw = p.stride[2];
    const int64_t* xs = p.input_strides;
    const int64_t* gs = p.output_strides;
    const int64_t x_step = sw * xs[4];
    const acc_t* w_c = weight + c * ntaps;
    const scalar_t* x_nc = input + n * xs[0] + c * xs[1];
    const scalar_t* g_nc = grad_output + n * gs[0] + c * gs[1];
    std::fill(dx.begin(), dx.end(), acc_t(0));
    std::fill(lanes.begin(), lanes.end(), acc_t(0));
    std::fill(bias_lane.begin(), bias_lane.end(), acc_t(0));
    for (int64_t to = 0; to < To; ++to) {
      for (int64_t ho = 0; ho < Ho; ++ho) {
        const scalar_t* g_src = g_nc + to * gs[2] + ho * gs[3];
        for (int64_t wo = 0; wo < Wo; ++wo) go_row[wo] = static_cast<acc_t>(g_src[wo * gs[4]]);
        if (want_db) {
          for (int64_t wo = 0; wo < Wo; ++wo) bias_lane[wo] += go_row[wo];
        }
        for (int64_t kd = 0; kd < KT; ++kd) {
          const int64_t ti = to * p.stride[0] + taps.shift[0][kd];
          if (ti < 0 || ti >= T) continue;
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t hi = ho * p.stride[1] + taps.shift[1][kh];
            if (hi < 0 || hi >= H) continue;
            const scalar_t* x_row = x_nc + ti * xs[2] + hi * xs[3];
            acc_t* dx_row = want_dx ? dx.data() + (ti * H + hi) * W : nullptr;
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t tap = (kd * KH + kh) * KW + kw;
              const ValidRange r = taps.range[2][kw];
              const int64_t shift = taps.shift[2][kw];
              if (dx_row) {
                const acc_t wv = w_c[tap];
                acc_t* dst = dx_row + shift;
                if (sw == 1) {
                  for (int64_t wo = r.lo; wo < r.hi; ++wo) dst[wo] += wv * go_row[wo];
                } else {
                  for (int64_t wo = r.lo; wo < r.hi; ++wo) dst[wo * sw] += wv * go_row[wo];
                }
              }
              if (want_dw) {
                acc_t* lane = lanes.data() + tap * Wo;
                const scalar_t* src = x_row + shift * xs[4];
                if constexpr (Unit) {
                  for (int64_t wo = r.lo; wo < r.hi; ++wo) lane[wo] += go_row[wo] * static_cast<acc_t>(src[wo]);
                } else {
                  for (int64_t wo = r.lo; wo < r.hi; ++wo)
                    lane[wo] += go_row[wo] * static_cast<acc_t>(src[wo * x_step]);
                }
              }
            }
          }
        }
      }
    }
    if (want_dx) {
      const int64_t* dxs = p.grad_input_strides;
      scalar_t* dx_nc = grad_input + n * dxs[0] + c * dxs[1];
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
          const acc_t* src = dx.data() + (t * H + h) * W;
          scalar_t* dst = dx_nc + t * dxs[2] + h * dxs[3];
          for (int64_t w = 0; w < W; ++w) dst[w * dxs[4]] = static_cast<scalar_t>(src[w]);
        }
    }
    for (int64_t tap = 0; tap < (want_dw ? ntaps : 0); ++tap) {
      const acc_t* lane = lanes.data() + tap * Wo;
      for (int64_t wo = 0; wo < Wo; ++wo) dw[tap] += lane[wo];
    }
    for (int64_t wo = 0; wo < (want_db ? Wo : 0); ++wo) *db += bias_lane[wo];
  }
};

// Whether every element of the size[] box at src (element strides s) is finite: x * 0 is 0
// exactly when x is neither Inf nor NaN.
template <typename acc_t, typename scalar_t>
bool box_is_finite(const scalar_t* src, const int64_t* size, const int64_t* s) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
  V lanes{};
  acc_t rest = 0;
  for (int64_t t = 0; t < size[0]; ++t)
    for (int64_t h = 0; h < size[1]; ++h) {
      const scalar_t* row = src + t * s[0] + h * s[1];
      int64_t w = 0;
      if (s[2] == 1) {
        for (; w + L <= size[2]; w += L) lanes += load<acc_t>(row + w) * acc_t(0);
      }
      for (; w < size[2]; ++w) rest += static_cast<acc_t>(row[w * s[2]]) * acc_t(0);
    }
  acc_t values[L];
  std::memcpy(values, &lanes, sizeof lanes);
  for (int64_t j = 0; j < L; ++j) rest += values[j];
  return rest == acc_t(0);
}

// Stride-1 backward. The input gradient is the correlation of the zero-extended output gradient
// with the flipped kernel; the weight gradient of tap k is the dot product of the output gradient
// with the padded input shifted by k. Parallel over channels, each reduced by one thread in a
// fixed order, so the result does not depend on the thread count.
template <typename scalar_t, typename acc_t>
void backward_planar_unit_stride(const DepthwiseConv3dParams& p, const scalar_t* grad_output,
                                 const scalar_t* input, const acc_t* weight, scalar_t* grad_input,
                                 double* grad_weight, double* grad_bias) {
  const int64_t ntaps = taps_of(p);
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t* xs = p.input_strides;
  const int64_t* gs = p.output_strides;
  const int64_t* dxs = p.grad_input_strides;
  // Output gradient placed so that dx[i] = sum_k' w[K-1-k'] * g_pad[i + k' * d + shift - lo].
  int64_t g_dims[3], g_origin[3], g_base[3];
  for (int d = 0; d < 3; ++d) {
    const int64_t lo = (p.kernel[d] - 1) * p.dilation[d] - p.padding[d];
    g_origin[d] = std::max<int64_t>(lo, 0);
    g_base[d] = g_origin[d] - lo;
    g_dims[d] = std::max(p.out_size[d] + g_origin[d], p.in_size[d] + (p.kernel[d] - 1) * p.dilation[d] + g_base[d]);
  }
  const int64_t unit[3] = {1, 1, 1};
  const int64_t volume = p.batch * To * Ho * Wo * ntaps;

  parallel_items(p.channels, grain_for(volume), [&](WorkQueue& channels) {
    PaddedVolume<acc_t> x_pad = padded_input<acc_t>(p);
    PaddedVolume<acc_t> g_pad(g_dims, g_origin, 1, kBlock<acc_t> + g_dims[2] + 1);
    const PlaneStencil<scalar_t, acc_t> dx_stencil(g_pad, p.kernel, p.dilation, p.in_size, unit, g_base, false);
    const std::vector<int64_t> x_off = tap_offsets(x_pad, p.kernel, p.dilation);
    std::vector<acc_t> scratch(dx_stencil.scratch_size());
    // The output gradient with the padded input's row pitch, zeros past Wo and past each plane
    // up to a whole block, for the dot products.
    constexpr int64_t B = kBlock<acc_t>;
    const int64_t g_flat_plane = (Ho * x_pad.row + B - 1) / B * B;
    std::vector<acc_t> g_flat(To * g_flat_plane, acc_t(0));
    std::vector<acc_t> flipped(ntaps);
    std::vector<double> dw(ntaps);
    // The zero padding below meets every tap; with an Inf or NaN there, 0 * Inf would add NaN
    // where PyTorch adds nothing. Such volumes take the exact (slower) path.
    ExactVolumeBackward<false, scalar_t, acc_t> exact(p, grad_input != nullptr, grad_weight != nullptr,
                                                      grad_bias != nullptr);
    for (int64_t c; channels.next(c);) {
      std::reverse_copy(weight + c * ntaps, weight + (c + 1) * ntaps, flipped.begin());
      std::fill(dw.begin(), dw.end(), 0.0);
      double db = 0.0;
      const int64_t w_size[3] = {1, 1, ntaps}, w_strides[3] = {0, 0, 1};
      const bool weight_finite = box_is_finite<acc_t>(weight + c * ntaps, w_size, w_strides);
      for (int64_t n = 0; n < p.batch; ++n) {
        const scalar_t* g_nc = grad_output + n * gs[0] + c * gs[1];
        const scalar_t* x_nc = input + n * xs[0] + c * xs[1];
        if (!weight_finite || !box_is_finite<acc_t>(g_nc, p.out_size, gs + 2) ||
            (grad_weight && !box_is_finite<acc_t>(x_nc, p.in_size, xs + 2))) {
          exact.run(grad_output, input, weight, grad_input, n, c, dw.data(), &db);
          continue;
        }
        if (grad_input) {
          g_pad.fill(g_nc, p.out_size, gs + 2);
          scalar_t* dx_nc = grad_input + n * dxs[0] + c * dxs[1];
          for (int64_t t = 0; t < p.in_size[0]; ++t) {
            dx_stencil.run(t, flipped.data(), acc_t(0), scratch.data(), dx_nc + t * dxs[2], dxs + 3);
          }
        }
        if (!grad_weight && !grad_bias) continue;
        for (int64_t to = 0; to < To; ++to)
          for (int64_t ho = 0; ho < Ho; ++ho) {
            const scalar_t* src = g_nc + to * gs[2] + ho * gs[3];
            acc_t* dst = g_flat.data() + to * g_flat_plane + ho * x_pad.row;
            for (int64_t wo = 0; wo < Wo; ++wo) dst[wo] = static_cast<acc_t>(src[wo * gs[4]]);
          }
        if (grad_bias) {
          for (int64_t i = 0; i < To * g_flat_plane; ++i) db += g_flat[i];
        }
        if (!grad_weight) continue;
        x_pad.fill(x_nc, p.in_size, xs + 2);
        for (int64_t to = 0; to < To; ++to) {
          const acc_t* g_plane = g_flat.data() + to * g_flat_plane;
          const acc_t* x_plane = x_pad.data.data() + to * x_pad.plane;
          for (int64_t t = 0; t < ntaps; ++t) dw[t] += dot(g_plane, x_plane + x_off[t], g_flat_plane);
        }
      }
      if (grad_weight) std::copy(dw.begin(), dw.end(), grad_weight + c * ntaps);
      if (grad_bias) grad_bias[c] = db;
    }
  });
}

// Backward for any strides: each volume by ExactVolumeBackward, in parallel over channels, each
// channel's sums over the batch in a fixed order.
template <bool Unit, typename scalar_t, typename acc_t>
void backward_planar(const DepthwiseConv3dParams& p, const scalar_t* grad_output,
                     const scalar_t* input, const acc_t* weight, scalar_t* grad_input,
                     double* grad_weight, double* grad_bias) {
  const int64_t ntaps = taps_of(p);
  const int64_t volume = p.batch * p.out_size[0] * p.out_size[1] * p.out_size[2] * ntaps;
  parallel_items(p.channels, grain_for(volume), [&](WorkQueue& channels) {
    ExactVolumeBackward<Unit, scalar_t, acc_t> exact(p, grad_input != nullptr, grad_weight != nullptr,
                                                     grad_bias != nullptr);
    std::vector<double> dw(ntaps);
    for (int64_t c; channels.next(c);) {
      std::fill(dw.begin(), dw.end(), 0.0);
      double db = 0.0;
      for (int64_t n = 0; n < p.batch; ++n) exact.run(grad_output, input, weight, grad_input, n, c, dw.data(), &db);
      if (grad_weight) std::copy(dw.begin(), dw.end(), grad_weight + c * ntaps);
      if (grad_bias) grad_bias[c] = db;
    }
  });
}

// ---------------------------------------------------------------- channels-last (NDHWC-like)
// These kernels need unit channel strides (the glue sends anything else to the planar ones).

// y[c] = init[c] + sum_k w[w_off[k] + c] * src[src_off[k] + c] for c in [0, C): channel
// vectors in registers across the taps. init may be null (zero).
template <typename scalar_t, typename acc_t>
inline void accumulate_taps(scalar_t* y, const scalar_t* src, const acc_t* w, const int64_t* src_off,
                            const int64_t* w_off, int64_t ntaps, const acc_t* init, int64_t C) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
  int64_t c0 = 0;
  for (; c0 + 4 * L <= C; c0 += 4 * L) {
    V a0 = init ? load<acc_t>(init + c0) : V{};
    V a1 = init ? load<acc_t>(init + c0 + L) : V{};
    V a2 = init ? load<acc_t>(init + c0 + 2 * L) : V{};
    V a3 = init ? load<acc_t>(init + c0 + 3 * L) : V{};
    for (int64_t k = 0; k < ntaps; ++k) {
      const scalar_t* s = src + src_off[k] + c0;
      const acc_t* wk = w + w_off[k] + c0;
      a0 += load<acc_t>(wk) * load<acc_t>(s);
      a1 += load<acc_t>(wk + L) * load<acc_t>(s + L);
      a2 += load<acc_t>(wk + 2 * L) * load<acc_t>(s + 2 * L);
      a3 += load<acc_t>(wk + 3 * L) * load<acc_t>(s + 3 * L);
    }
    store<acc_t>(y + c0, a0);
    store<acc_t>(y + c0 + L, a1);
    store<acc_t>(y + c0 + 2 * L, a2);
    store<acc_t>(y + c0 + 3 * L, a3);
  }
  for (; c0 + L <= C; c0 += L) {
    V a = init ? load<acc_t>(init + c0) : V{};
    for (int64_t k = 0; k < ntaps; ++k) a += load<acc_t>(w + w_off[k] + c0) * load<acc_t>(src + src_off[k] + c0);
    store<acc_t>(y + c0, a);
  }
  for (; c0 < C; ++c0) {
    acc_t a = init ? init[c0] : acc_t(0);
    for (int64_t k = 0; k < ntaps; ++k) a += w[w_off[k] + c0] * static_cast<acc_t>(src[src_off[k] + c0]);
    y[c0] = static_cast<scalar_t>(a);
  }
}

// lane[c] += a[c] * b[c] for c in [0, C).
template <typename scalar_t, typename acc_t>
inline void fma_into(acc_t* __restrict lane, const acc_t* __restrict a, const scalar_t* __restrict b, int64_t C) {
  constexpr int64_t L = kLanes<acc_t>;
  int64_t c = 0;
  for (; c + L <= C; c += L) store<acc_t>(lane + c, load<acc_t>(lane + c) + load<acc_t>(a + c) * load<acc_t>(b + c));
  for (; c < C; ++c) lane[c] += a[c] * static_cast<acc_t>(b[c]);
}

// The taps of output position (to, ho, wo) that read inside the input: their input offsets
// (element strides xs) and weight offsets (tap * C). Returns how many.
inline int64_t forward_taps(const DepthwiseConv3dParams& p, const TapRanges& taps, int64_t to, int64_t ho,
                            int64_t wo, const int64_t* xs, int64_t* src_off, int64_t* w_off) {
  int64_t k = 0;
  for (int64_t kd = 0; kd < p.kernel[0]; ++kd) {
    const int64_t ti = to * p.stride[0] + taps.shift[0][kd];
    if (ti < 0 || ti >= p.in_size[0]) continue;
    for (int64_t kh = 0; kh < p.kernel[1]; ++kh) {
      const int64_t hi = ho * p.stride[1] + taps.shift[1][kh];
      if (hi < 0 || hi >= p.in_size[1]) continue;
      for (int64_t kw = 0; kw < p.kernel[2]; ++kw) {
        const int64_t wi = wo * p.stride[2] + taps.shift[2][kw];
        if (wi < 0 || wi >= p.in_size[2]) continue;
        src_off[k] = ti * xs[2] + hi * xs[3] + wi * xs[4];
        w_off[k++] = ((kd * p.kernel[1] + kh) * p.kernel[2] + kw) * p.channels;
      }
    }
  }
  return k;
}

// Output index o with o * stride + shift == i, or -1.
inline int64_t source_index(int64_t i, int64_t shift, int64_t stride, int64_t out_size) {
  const int64_t num = i - shift;
  if (num < 0 || num % stride != 0) return -1;
  const int64_t o = num / stride;
  return o < out_size ? o : -1;
}

// The output positions that read input position (ti, hi, wi), as offsets into the output
// gradient (element strides gs) and weight offsets. Returns how many.
inline int64_t input_grad_taps(const DepthwiseConv3dParams& p, const TapRanges& taps, int64_t ti, int64_t hi,
                               int64_t wi, const int64_t* gs, int64_t* src_off, int64_t* w_off) {
  int64_t k = 0;
  for (int64_t kd = 0; kd < p.kernel[0]; ++kd) {
    const int64_t to = source_index(ti, taps.shift[0][kd], p.stride[0], p.out_size[0]);
    if (to < 0) continue;
    for (int64_t kh = 0; kh < p.kernel[1]; ++kh) {
      const int64_t ho = source_index(hi, taps.shift[1][kh], p.stride[1], p.out_size[1]);
      if (ho < 0) continue;
      for (int64_t kw = 0; kw < p.kernel[2]; ++kw) {
        const int64_t wo = source_index(wi, taps.shift[2][kw], p.stride[2], p.out_size[2]);
        if (wo < 0) continue;
        src_off[k] = to * gs[2] + ho * gs[3] + wo * gs[4];
        w_off[k++] = ((kd * p.kernel[1] + kh) * p.kernel[2] + kw) * p.channels;
      }
    }
  }
  return k;
}

// Stores one vector of `lanes` channels: a vector store when they are whole and contiguous
// (streaming if `stream`).
template <typename scalar_t, typename acc_t>
inline void store_lanes(scalar_t* y, const vec_t<acc_t>& v, int64_t lanes, int64_t lane_stride, bool stream) {
  if (lanes == kLanes<acc_t> && lane_stride == 1) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (stream) return store_streaming<acc_t>(y, v);
    }
    return store<acc_t>(y, v);
  }
  acc_t values[kLanes<acc_t>];
  std::memcpy(values, &v, sizeof v);
  for (int64_t l = 0; l < lanes; ++l) y[l * lane_stride] = static_cast<scalar_t>(values[l]);
}

// Q consecutive output positions of one vector of channels, from x (positions x_step apart in
// the padded buffer) to y (positions y_step apart, lanes lane_stride apart): Q accumulators in
// registers, one weight vector load per tap. Kept out of line: inlined into its large caller,
// GCC spills an accumulator.
template <int64_t Q, typename scalar_t, typename acc_t>
__attribute__((noinline)) void position_block(const acc_t* __restrict x, int64_t x_step,
                                              const int64_t* __restrict tap_off, int64_t ntaps,
                                              const acc_t* __restrict w_blk, const vec_t<acc_t>& init,
                                              scalar_t* __restrict y, int64_t y_step, int64_t lanes,
                                              int64_t lane_stride, bool stream) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
  V acc[Q];
#pragma GCC unroll 16
  for (int64_t i = 0; i < Q; ++i) acc[i] = init;
  for (int64_t tap = 0; tap < ntaps; ++tap) {
    const V wv = load<acc_t>(w_blk + tap * L);
    const acc_t* x_tap = x + tap_off[tap];
#pragma GCC unroll 16
    for (int64_t i = 0; i < Q; ++i) acc[i] += wv * load<acc_t>(x_tap + i * x_step);
  }
#pragma GCC unroll 16
  for (int64_t i = 0; i < Q; ++i) store_lanes<scalar_t, acc_t>(y + i * y_step, acc[i], lanes, lane_stride, stream);
}

// position_block for kernel rows KW taps wide read at unit W stride and dilation (x_step apart):
// each input vector of a kernel row is loaded once and serves the KW taps that read it, Q + KW - 1
// loads for Q * KW multiply-adds, so the loop is bound by the multiply-adds, not the loads.
// row_off holds the offset of each kernel row's first tap; w_blk is [row][kw][L].
template <int64_t Q, int64_t KW, typename scalar_t, typename acc_t>
__attribute__((noinline)) void position_row_block(const acc_t* __restrict x, int64_t x_step,
                                                  const int64_t* __restrict row_off, int64_t rows,
                                                  const acc_t* __restrict w_blk, const vec_t<acc_t>& init,
                                                  scalar_t* __restrict y, int64_t y_step, int64_t lanes,
                                                  int64_t lane_stride, bool stream) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
  V acc[Q];
#pragma GCC unroll 16
  for (int64_t i = 0; i < Q; ++i) acc[i] = init;
  for (int64_t r = 0; r < rows; ++r) {
    const acc_t* x_row = x + row_off[r];
    V wk[KW];
#pragma GCC unroll 8
    for (int64_t kw = 0; kw < KW; ++kw) wk[kw] = load<acc_t>(w_blk + (r * KW + kw) * L);
#pragma GCC unroll 24
    for (int64_t j = 0; j < Q + KW - 1; ++j) {
      const V xj = load<acc_t>(x_row + j * x_step);
#pragma GCC unroll 8
      for (int64_t kw = 0; kw < KW; ++kw)
        if (j - kw >= 0 && j - kw < Q) acc[j - kw] += wk[kw] * xj;
    }
  }
#pragma GCC unroll 16
  for (int64_t i = 0; i < Q; ++i) store_lanes<scalar_t, acc_t>(y + i * y_step, acc[i], lanes, lane_stride, stream);
}

// Forward vectorized over channels. A task is a band of output rows in a run of output planes
// of one batch element. The input rows the band reads are copied, plane by plane as they are
// first needed, into a ring of zero-padded channels-last buffers (channels padded to whole
// vectors, W split into stride phases so a strided walk reads consecutive positions); then P
// output positions at a time per vector of channels accumulate in registers with no border
// checks. Reads any input layout (the copy is where a planar input is transposed) and writes
// any output layout. Weight and bias come as [taps][C].
template <typename scalar_t, typename acc_t>
void forward_channel_blocks(const DepthwiseConv3dParams& p, const scalar_t* input, const acc_t* weight,
                            const acc_t* bias, scalar_t* output) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
  constexpr int64_t kRingBytes = 384 << 10;  // what a ring may take of a core's L2 (512 KiB on Zen 2/3)
  const int64_t C = p.channels, ntaps = taps_of(p);
  const int64_t blocks = (C + L - 1) / L, Cp = blocks * L;
  const int64_t T = p.in_size[0], H = p.in_size[1], W = p.in_size[2];
  const int64_t sh = p.stride[1], sw = p.stride[2];
  const int64_t Wp = W + 2 * p.padding[2];
  const int64_t row_phase = (Wp + sw - 1) / sw, row = sw * row_phase;
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t KT = p.kernel[0], KH = p.kernel[1], taps_per_plane = KH * p.kernel[2];
  const int64_t* xs = p.input_strides;
  const int64_t* ys = p.output_strides;

  // Bands of output rows small enough for the ring to stay in cache.
  auto band_input_rows = [&](int64_t rows) { return (rows - 1) * sh + (KH - 1) * p.dilation[1] + 1; };
  int64_t band_rows = Ho;
  while (band_rows > 1 && KT * band_input_rows(band_rows) * row * Cp * int64_t(sizeof(acc_t)) > kRingBytes)
    band_rows = (band_rows + 1) / 2;
  const int64_t bands = (Ho + band_rows - 1) / band_rows;
  const int64_t plane = band_input_rows(band_rows) * row * Cp;
  // Enough tasks for the threads, as few as that allows (each task starts with a cold ring).
  const int64_t want = (4 * at::get_num_threads() + p.batch * bands - 1) / (p.batch * bands);
  const int64_t runs = std::min(To, std::max<int64_t>(1, want));
  const int64_t run_length = (To + runs - 1) / runs;

  // Offset within a ring plane of band row h (padded rows from the band's first), padded column w.
  auto in_plane = [&](int64_t h, int64_t w) { return (h * row + (w % sw) * row_phase + w / sw) * Cp; };
  std::vector<int64_t> plane_tap_off, col(W);
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t kw = 0; kw < p.kernel[2]; ++kw) plane_tap_off.push_back(in_plane(kh * p.dilation[1], kw * p.dilation[2]));
  for (int64_t w = 0; w < W; ++w) col[w] = in_plane(0, w + p.padding[2]);
  // Weight and bias per vector of channels, zero past C.
  std::vector<acc_t> w_blocks(blocks * ntaps * L, acc_t(0)), b_blocks(Cp, acc_t(0));
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t tap = 0; tap < ntaps; ++tap) w_blocks[(c / L * ntaps + tap) * L + c % L] = weight[tap * C + c];
    if (bias) b_blocks[c] = bias[c];
  }
  const bool channels_inner = xs[1] <= xs[4];
  // Whole channels-last rows with no channel padding and unit W stride are one copy each.
  const bool dense_rows = xs[1] == 1 && xs[4] == C && C == Cp && sw == 1;
  const bool stream = kStreamingStores && p.stream_output;
  // Kernel rows of three adjacent taps (the common 3x3x3 and 1x3x3 at unit W stride) share loads.
  const bool rows_of_three = p.kernel[2] == 3 && sw == 1 && p.dilation[2] == 1;

  // Copies the rows of input plane t that a band starting at padded row hp0 reads (zeros
  // outside the input) of batch element n into a ring plane. Padded columns and the channels
  // past C are never written, so they stay zero.
  auto fill_plane = [&](acc_t* dst_plane, int64_t n, int64_t t, int64_t hp0) {
    for (int64_t r = 0; r < band_input_rows(band_rows); ++r) {
      const int64_t h = hp0 + r - p.padding[1];
      acc_t* dst_row = dst_plane + r * row * Cp;
      if (t < 0 || t >= T || h < 0 || h >= H) {
        std::fill(dst_row, dst_row + row * Cp, acc_t(0));
        continue;
      }
      const scalar_t* src = input + n * xs[0] + t * xs[2] + h * xs[3];
      if (dense_rows) {
        copy_row(dst_row + col[0], src, W * C);
      } else if (channels_inner) {
        for (int64_t w = 0; w < W; ++w) {
          const scalar_t* s = src + w * xs[4];
          acc_t* d = dst_row + col[w];
          if (xs[1] == 1) {
            for (int64_t c = 0; c < C; ++c) d[c] = static_cast<acc_t>(s[c]);
          } else {
            for (int64_t c = 0; c < C; ++c) d[c] = static_cast<acc_t>(s[c * xs[1]]);
          }
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* s = src + c * xs[1];
          for (int64_t w = 0; w < W; ++w) dst_row[col[w] + c] = static_cast<acc_t>(s[w * xs[4]]);
        }
      }
    }
  };

  parallel_items(p.batch * runs * bands, 1, [&](WorkQueue& tasks) {
    // The ring: KT planes, each tagged with the input plane it holds.
    AlignedBuffer<acc_t> ring_buffer(KT * plane);
    acc_t* const ring = ring_buffer.data();
    std::vector<int64_t> held(KT), slot_of(KT), tap_off(ntaps), row_off(KT * KH);
    std::vector<char> wanted(KT);
    for (int64_t task; tasks.next(task);) {
      const int64_t band = task % bands, run = task / bands % runs, n = task / (bands * runs);
      const int64_t ho_begin = band * band_rows, ho_end = std::min(Ho, ho_begin + band_rows);
      const int64_t to_begin = run * run_length, to_end = std::min(To, to_begin + run_length);
      std::fill(held.begin(), held.end(), std::numeric_limits<int64_t>::min());
      for (int64_t to = to_begin; to < to_end; ++to) {
        // Keep the planes this output plane reads, fill the missing ones into the others.
        std::fill(wanted.begin(), wanted.end(), 0);
        for (int64_t kd = 0; kd < KT; ++kd) {
          const int64_t t = to * p.stride[0] + kd * p.dilation[0] - p.padding[0];
          slot_of[kd] = -1;
          for (int64_t slot = 0; slot < KT; ++slot)
            if (held[slot] == t && !wanted[slot]) {
              slot_of[kd] = slot;
              wanted[slot] = 1;
              break;
            }
        }
        for (int64_t kd = 0, free_slot = 0; kd < KT; ++kd) {
          if (slot_of[kd] >= 0) continue;
          while (wanted[free_slot]) ++free_slot;
          const int64_t t = to * p.stride[0] + kd * p.dilation[0] - p.padding[0];
          fill_plane(ring + free_slot * plane, n, t, ho_begin * sh);
          held[free_slot] = t;
          wanted[free_slot] = 1;
          slot_of[kd] = free_slot;
        }
        for (int64_t kd = 0; kd < KT; ++kd)
          for (int64_t k = 0; k < taps_per_plane; ++k)
            tap_off[kd * taps_per_plane + k] = slot_of[kd] * plane + plane_tap_off[k];
        for (int64_t r = 0; r < KT * KH; ++r) row_off[r] = tap_off[r * p.kernel[2]];
        const int64_t x_step = Cp, y_step = ys[4];
        for (int64_t ho = ho_begin; ho < ho_end; ++ho) {
          const acc_t* x_row = ring + in_plane((ho - ho_begin) * sh, 0);
          scalar_t* y_row = output + n * ys[0] + to * ys[2] + ho * ys[3];
          // One vector of channels at a time along the row, so the rows it reads stay in L1.
          for (int64_t cb = 0; cb < blocks; ++cb) {
            const int64_t c0 = cb * L;
            const V init = load<acc_t>(b_blocks.data() + c0);
            const acc_t* w_blk = w_blocks.data() + cb * ntaps * L;
            auto run_block = [&](auto block, int64_t wo) {
              constexpr int64_t Q = decltype(block)::value;
              const acc_t* x_blk = x_row + wo * x_step + c0;
              scalar_t* y_blk = y_row + wo * y_step + c0 * ys[1];
              const int64_t lanes = std::min(L, C - c0);
              if (rows_of_three) {
                position_row_block<Q, 3>(x_blk, x_step, row_off.data(), KT * KH, w_blk, init, y_blk, y_step, lanes,
                                         ys[1], stream);
              } else {
                position_block<Q>(x_blk, x_step, tap_off.data(), ntaps, w_blk, init, y_blk, y_step, lanes, ys[1],
                                  stream);
              }
            };
            int64_t wo = 0;
            for (; wo + 8 <= Wo; wo += 8) run_block(std::integral_constant<int64_t, 8>{}, wo);
            for (; wo + 4 <= Wo; wo += 4) run_block(std::integral_constant<int64_t, 4>{}, wo);
            for (; wo + 2 <= Wo; wo += 2) run_block(std::integral_constant<int64_t, 2>{}, wo);
            if (wo < Wo) run_block(std::integral_constant<int64_t, 1>{}, wo);
          }
        }
      }
    }
    if (stream) finish_streaming();
  });
}

// Forward vectorized over channels for small planes with unit channel strides: each output
// position sums its taps that lie inside the input, read in place (no padded copy, which costs
// as much as the convolution on small planes). A task is a run of channels of one batch element,
// narrow enough that its weights stay in L1.
template <typename scalar_t, typename acc_t>
void forward_channels_in_place(const DepthwiseConv3dParams& p, const scalar_t* input, const acc_t* weight,
                               const acc_t* bias, scalar_t* output) {
  constexpr int64_t kChannelsPerTask = 4 * kLanes<acc_t>;
  const TapRanges taps(p);
  const int64_t C = p.channels, ntaps = taps_of(p);
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t positions = To * Ho * Wo;
  const int64_t* xs = p.input_strides;
  const int64_t* ys = p.output_strides;
  // The taps of every output position, shared by all tasks.
  std::vector<int64_t> tap_count(positions), src_off(positions * ntaps), w_off(positions * ntaps), y_off(positions);
  for (int64_t pos = 0; pos < positions; ++pos) {
    const int64_t wo = pos % Wo, ho = pos / Wo % Ho, to = pos / (Wo * Ho);
    tap_count[pos] = forward_taps(p, taps, to, ho, wo, xs, &src_off[pos * ntaps], &w_off[pos * ntaps]);
    y_off[pos] = to * ys[2] + ho * ys[3] + wo * ys[4];
  }
  const int64_t chunks = (C + kChannelsPerTask - 1) / kChannelsPerTask;
  parallel_items(p.batch * chunks, grain_for(positions * ntaps * kChannelsPerTask), [&](WorkQueue& tasks) {
    for (int64_t task; tasks.next(task);) {
      const int64_t c0 = task % chunks * kChannelsPerTask, n = task / chunks;
      const int64_t width = std::min(kChannelsPerTask, C - c0);
      const scalar_t* x = input + n * xs[0] + c0;
      scalar_t* y = output + n * ys[0] + c0;
      for (int64_t pos = 0; pos < positions; ++pos)
        accumulate_taps(y + y_off[pos], x, weight + c0, &src_off[pos * ntaps], &w_off[pos * ntaps], tap_count[pos],
                        bias ? bias + c0 : nullptr, width);
    }
  });
}

template <typename scalar_t, typename acc_t>
void backward_channels_last(const DepthwiseConv3dParams& p, const scalar_t* grad_output, const scalar_t* input,
                            const acc_t* weight, scalar_t* grad_input, double* grad_weight, double* grad_bias) {
  const TapRanges taps(p);
  const int64_t C = p.channels;
  const int64_t ntaps = taps_of(p);
  const int64_t T = p.in_size[0], H = p.in_size[1], W = p.in_size[2];
  const int64_t To = p.out_size[0], Ho = p.out_size[1], Wo = p.out_size[2];
  const int64_t* xs = p.input_strides;
  const int64_t* gs = p.output_strides;
  const int64_t* dxs = p.grad_input_strides;

  if (grad_input) {
    // Gather form: each input position sums the output positions that read it, so no two
    // threads write the same element.
    parallel_items(p.batch * T * H, grain_for(W * C * ntaps), [&](WorkQueue& input_rows) {
      std::vector<int64_t> src_off(ntaps), w_off(ntaps);
      for (int64_t row; input_rows.next(row);) {
        const int64_t hi = row % H, ti = (row / H) % T, n = row / (H * T);
        for (int64_t wi = 0; wi < W; ++wi) {
          const int64_t k = input_grad_taps(p, taps, ti, hi, wi, gs, src_off.data(), w_off.data());
          accumulate_taps(grad_input + n * dxs[0] + ti * dxs[2] + hi * dxs[3] + wi * dxs[4], grad_output + n * gs[0],
                          weight, src_off.data(), w_off.data(), k, static_cast<const acc_t*>(nullptr), C);
        }
      }
    });
  }

  if (!grad_weight && !grad_bias) return;
  // Fixed chunks of output rows (their number depends on the shape only), each reduced to a
  // double partial sum row by row, then the chunks summed in order: deterministic and accurate.
  const int64_t rows = p.batch * To * Ho;
  const int64_t lanes_per_row = (ntaps + 1) * C;  // taps, then the bias
  const int64_t max_chunks = std::max<int64_t>(1, (int64_t(8) << 20) / (lanes_per_row * 8));
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>({rows, 256, max_chunks}));
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  std::vector<double> partial(chunks * lanes_per_row, 0.0);

  parallel_items(chunks, 1, [&](WorkQueue& row_chunks) {
    std::vector<acc_t> lanes(lanes_per_row);
    std::vector<acc_t> go(C);
    std::vector<int64_t> src_off(ntaps), w_off(ntaps);
    for (int64_t chunk; row_chunks.next(chunk);) {
      double* out = partial.data() + chunk * lanes_per_row;
      const int64_t row_end = std::min(rows, (chunk + 1) * rows_per_chunk);
      for (int64_t row = chunk * rows_per_chunk; row < row_end; ++row) {
        const int64_t ho = row % Ho, to = (row / Ho) % To, n = row / (Ho * To);
        const scalar_t* x_n = input + n * xs[0];
        std::fill(lanes.begin(), lanes.end(), acc_t(0));
        acc_t* bias_lane = lanes.data() + ntaps * C;
        for (int64_t wo = 0; wo < Wo; ++wo) {
          const scalar_t* g = grad_output + n * gs[0] + to * gs[2] + ho * gs[3] + wo * gs[4];
          for (int64_t c = 0; c < C; ++c) go[c] = static_cast<acc_t>(g[c]);
          for (int64_t c = 0; c < C; ++c) bias_lane[c] += go[c];
          if (!grad_weight) continue;
          const int64_t k = forward_taps(p, taps, to, ho, wo, xs, src_off.data(), w_off.data());
          for (int64_t i = 0; i < k; ++i) fma_into(lanes.data() + w_off[i], go.data(), x_n + src_off[i], C);
        }
        for (int64_t i = 0; i < lanes_per_row; ++i) out[i] += lanes[i];
      }
    }
  });

  for (int64_t c = 0; c < C; ++c) {
    for (int64_t tap = 0; tap <= ntaps; ++tap) {
      double sum = 0.0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * lanes_per_row + tap * C + c];
      if (tap < ntaps) {
        if (grad_weight) grad_weight[c * ntaps + tap] = sum;
      } else if (grad_bias) {
        grad_bias[c] = sum;
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
void forward_typed(const DepthwiseConv3dParams& p, const void* input, const void* weight,
                   const void* bias, void* output) {
  const auto* x = static_cast<const scalar_t*>(input);
  const auto* w = static_cast<const acc_t*>(weight);
  const auto* b = static_cast<const acc_t*>(bias);
  auto* y = static_cast<scalar_t*>(output);
  if (p.vectorize_channels) {
#if defined(VID3D_PLANE_PERMUTE)
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (p.transpose_volumes) return forward_small_volumes(p, x, w, b, y);
    }
#endif
    if (p.small_planes) return forward_channels_in_place(p, x, w, b, y);
    return forward_channel_blocks(p, x, w, b, y);
  }
#if defined(VID3D_PLANE_PERMUTE)
  if constexpr (std::is_same_v<acc_t, float>) {
    if (p.small_planes) {
      const int64_t positions = std::max(p.in_size[1] * p.in_size[2], p.out_size[1] * p.out_size[2]);
      if (positions <= kLanes<float>) return forward_planes_in_vectors<1>(p, x, w, b, y);
      return forward_planes_in_vectors<kPlaneVectors>(p, x, w, b, y);
    }
  }
#endif
  forward_planar(p, x, w, b, y);
}

template <typename scalar_t, typename acc_t>
void backward_typed(const DepthwiseConv3dParams& p, const void* grad_output, const void* input,
                    const void* weight, void* grad_input, double* grad_weight, double* grad_bias) {
  const auto* g = static_cast<const scalar_t*>(grad_output);
  const auto* x = static_cast<const scalar_t*>(input);
  const auto* w = static_cast<const acc_t*>(weight);
  auto* dx = static_cast<scalar_t*>(grad_input);
  if (p.vectorize_channels) {
    backward_channels_last(p, g, x, w, dx, grad_weight, grad_bias);
  } else if (p.stride[0] == 1 && p.stride[1] == 1 && p.stride[2] == 1) {
    backward_planar_unit_stride(p, g, x, w, dx, grad_weight, grad_bias);
  } else if (p.stride[2] * p.input_strides[4] == 1) {
    backward_planar<true>(p, g, x, w, dx, grad_weight, grad_bias);
  } else {
    backward_planar<false>(p, g, x, w, dx, grad_weight, grad_bias);
  }
}

}  // namespace

int64_t plane_vector_lanes() { return kPlaneLanes; }

void depthwise_conv3d_forward(const DepthwiseConv3dParams& p, const void* input, const void* weight,
                              const void* bias, void* output) {
  switch (p.scalar) {
    case ScalarKind::Float: return forward_typed<float, float>(p, input, weight, bias, output);
    case ScalarKind::Double: return forward_typed<double, double>(p, input, weight, bias, output);
    case ScalarKind::BFloat16: return forward_typed<c10::BFloat16, float>(p, input, weight, bias, output);
    case ScalarKind::Half: return forward_typed<c10::Half, float>(p, input, weight, bias, output);
  }
}

void depthwise_conv3d_backward(const DepthwiseConv3dParams& p, const void* grad_output,
                               const void* input, const void* weight, void* grad_input,
                               double* grad_weight, double* grad_bias) {
  switch (p.scalar) {
    case ScalarKind::Float:
      return backward_typed<float, float>(p, grad_output, input, weight, grad_input, grad_weight, grad_bias);
    case ScalarKind::Double:
      return backward_typed<double, double>(p, grad_output, input, weight, grad_input, grad_weight, grad_bias);
    case ScalarKind::BFloat16:
      return backward_typed<c10::BFloat16, float>(p, grad_output, input, weight, grad_input, grad_weight,
                                                  grad_bias);
    case ScalarKind::Half:
      return backward_typed<c10::Half, float>(p, grad_output, input, weight, grad_input, grad_weight,
                                              grad_bias);
  }
}

}  // namespace vid3d::cpu::VID3D_ISA_NAMESPACE
