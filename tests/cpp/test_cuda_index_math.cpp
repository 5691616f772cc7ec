// Host unit test of the CUDA kernels' index math (csrc/cuda/index_math.h), runnable without a GPU.
// For random small convolutions (every templated stencil, random others, strides, dilations,
// paddings, tile sizes that force several tiles and ragged edges, both layouts, with and without
// aligned vector rows) it replays each kernel's tiling on the host in float64, as the kernels do
// it: the blocks, the shared tile each loads (origin, halo, aligned row pitch, runs clamped to the
// tensor), and the shared-memory index of every tap. It checks that every read falls inside the
// loaded tile and holds the input element the convolution needs (or a padding zero), that every
// output is written by exactly one block, and that the results equal a naive convolution: the
// forward, the input gradient both ways (stride 1 as a forward of the flipped weight, strided as
// the transposed stencil), the chunked weight/bias gradient, and the shuffle permutations.
// Build: g++ -std=c++17 -O1 -Icsrc tests/cpp/test_cuda_index_math.cpp (tests/test_cuda_index_math.py).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cuda/index_math.h"

using namespace vid3d::cuda;

namespace {

int64_t checks = 0;
int failures = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok && ++failures <= 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

struct Conv {
  int64_t batch, channels, in[3], out[3];
  ConvDim dims[3];
  std::string describe() const {
    char text[256];
    std::snprintf(text, sizeof text, "N%ld C%ld in %ldx%ldx%ld k %ldx%ldx%ld s %ld,%ld,%ld p %ld,%ld,%ld d %ld,%ld,%ld",
                  long(batch), long(channels), long(in[0]), long(in[1]), long(in[2]), long(dims[0].kernel),
                  long(dims[1].kernel), long(dims[2].kernel), long(dims[0].stride), long(dims[1].stride),
                  long(dims[2].stride), long(dims[0].padding), long(dims[1].padding), long(dims[2].padding),
                  long(dims[0].dilation), long(dims[1].dilation), long(dims[2].dilation));
    return text;
  }
  int64_t taps() const { return dims[0].kernel * dims[1].kernel * dims[2].kernel; }
};

// A dense NCDHW tensor of doubles (the simulation's layout choice only changes tile shapes).
struct Volume {
  int64_t n, c, size[3];
  std::vector<double> data;
  Volume(int64_t n_, int64_t c_, const int64_t* s) : n(n_), c(c_), size{s[0], s[1], s[2]} {
    data.assign(n * c * s[0] * s[1] * s[2], 0.0);
  }
  bool inside(int64_t t, int64_t h, int64_t w) const {
    return t >= 0 && t < size[0] && h >= 0 && h < size[1] && w >= 0 && w < size[2];
  }
  double& at(int64_t b, int64_t ch, int64_t t, int64_t h, int64_t w) {
    return data[(((b * c + ch) * size[0] + t) * size[1] + h) * size[2] + w];
  }
  double get(int64_t b, int64_t ch, int64_t t, int64_t h, int64_t w) const {
    return inside(t, h, w) ? data[(((b * c + ch) * size[0] + t) * size[1] + h) * size[2] + w] : 0.0;
  }
};

// weight[c][k], k = (kt * KH + kh) * KW + kw
using Weight = std::vector<double>;

Volume naive_forward(const Conv& cv, const Volume& x, const Weight& w) {
  Volume y(cv.batch, cv.channels, cv.out);
  for (int64_t b = 0; b < cv.batch; ++b)
    for (int64_t c = 0; c < cv.channels; ++c)
      for (int64_t t = 0; t < cv.out[0]; ++t)
        for (int64_t h = 0; h < cv.out[1]; ++h)
          for (int64_t v = 0; v < cv.out[2]; ++v) {
            double sum = 0;
            for (int64_t a = 0; a < cv.dims[0].kernel; ++a)
              for (int64_t e = 0; e < cv.dims[1].kernel; ++e)
                for (int64_t f = 0; f < cv.dims[2].kernel; ++f) {
                  const int64_t k = (a * cv.dims[1].kernel + e) * cv.dims[2].kernel + f;
                  sum += w[c * cv.taps() + k] *
                         x.get(b, c, t * cv.dims[0].stride - cv.dims[0].padding + a * cv.dims[0].dilation,
                               h * cv.dims[1].stride - cv.dims[1].padding + e * cv.dims[1].dilation,
                               v * cv.dims[2].stride - cv.dims[2].padding + f * cv.dims[2].dilation);
                }
            y.at(b, c, t, h, v) = sum;
          }
  return y;
}

// dx[i] = sum over (o, k) with o * s - p + k * d == i of dy[o] * w[k]; dw[k] = sum dy[o] x[o*s-p+k*d].
void naive_backward(const Conv& cv, const Volume& x, const Weight& w, const Volume& dy, Volume& dx, Weight& dw,
                    std::vector<double>& db) {
  dw.assign(cv.channels * cv.taps(), 0.0);
  db.assign(cv.channels, 0.0);
  for (int64_t b = 0; b < cv.batch; ++b)
    for (int64_t c = 0; c < cv.channels; ++c)
      for (int64_t t = 0; t < cv.out[0]; ++t)
        for (int64_t h = 0; h < cv.out[1]; ++h)
          for (int64_t v = 0; v < cv.out[2]; ++v) {
            const double g = dy.get(b, c, t, h, v);
            db[c] += g;
            for (int64_t a = 0; a < cv.dims[0].kernel; ++a)
              for (int64_t e = 0; e < cv.dims[1].kernel; ++e)
                for (int64_t f = 0; f < cv.dims[2].kernel; ++f) {
                  const int64_t k = (a * cv.dims[1].kernel + e) * cv.dims[2].kernel + f;
                  const int64_t i[3] = {t * cv.dims[0].stride - cv.dims[0].padding + a * cv.dims[0].dilation,
                                        h * cv.dims[1].stride - cv.dims[1].padding + e * cv.dims[1].dilation,
                                        v * cv.dims[2].stride - cv.dims[2].padding + f * cv.dims[2].dilation};
                  if (!x.inside(i[0], i[1], i[2])) continue;
                  dx.at(b, c, i[0], i[1], i[2]) += g * w[c * cv.taps() + k];
                  dw[c * cv.taps() + k] += g * x.get(b, c, i[0], i[1], i[2]);
                }
          }
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

// The shared tile of one block, filled as load_planar_tile / load_channels_last_tile do: rows of
// `pitch` positions from aligned_w, `block_channels` channels per position, runs of `run` elements
// clamped to the tensor. Elements outside the tensor are zero. Each entry also remembers which
// input element it holds (for the "right place" checks).
struct SharedTile {
  int64_t extent[3], pitch, block_channels;
  std::vector<double> value;
  std::vector<int64_t> source;  // flat index into the volume, or -1 for padding

  int64_t size() const { return extent[0] * extent[1] * pitch * block_channels; }
};

SharedTile load_tile(const Volume& v, int64_t b, int64_t first_channel, const int64_t* origin, const int64_t* extent,
                     int64_t pitch, int64_t row_vector, int64_t block_channels, bool channels_last) {
  SharedTile tile{{extent[0], extent[1], extent[2]}, pitch, block_channels, {}, {}};
  tile.value.assign(tile.size(), NAN);  // unloaded entries poison any read
  tile.source.assign(tile.size(), -2);
  const int64_t aligned_w = channels_last ? origin[2] : floor_div<int64_t>(origin[2], row_vector) * row_vector;
  expect(channels_last || pitch % row_vector == 0, "pitch is a whole number of vector runs");
  for (int64_t t = 0; t < extent[0]; ++t)
    for (int64_t h = 0; h < extent[1]; ++h)
      for (int64_t w = 0; w < pitch; ++w)
        for (int64_t j = 0; j < block_channels; ++j) {
          const int64_t gt = origin[0] + t, gh = origin[1] + h, gw = aligned_w + w, c = first_channel + j;
          const int64_t at = ((t * extent[1] + h) * pitch + w) * block_channels + j;
          const bool valid = v.inside(gt, gh, gw) && c < v.c;
          tile.value[at] = valid ? v.get(b, c, gt, gh, gw) : 0.0;
          tile.source[at] = valid ? (((b * v.c + c) * v.size[0] + gt) * v.size[1] + gh) * v.size[2] + gw : -1;
        }
  return tile;
}

int64_t flat(const Volume& v, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w) {
  return v.inside(t, h, w) ? (((b * v.c + c) * v.size[0] + t) * v.size[1] + h) * v.size[2] + w : -1;
}

struct TilingChoice {
  Tile preferred;
  int64_t max_bytes;
  int64_t row_vector;      // planar: 1 or a vector width; channels-last: 1
  int64_t block_channels;  // planar: 1; channels-last: a vector width or two
  bool channels_last;
};

// The forward kernel's tiling (depthwise_forward.cuh), replayed: returns the output.
Volume simulate_forward(const Conv& cv, const Volume& x, const Weight& w, const TilingChoice& choice) {
  Volume y(cv.batch, cv.channels, cv.out);
  std::vector<int> written(y.data.size(), 0);
  Tile preferred = choice.preferred;
  for (int d = 0; d < 3; ++d) preferred.size[d] = std::max<int64_t>(1, std::min(preferred.size[d], cv.out[d]));
  const Tile tile = choose_tile(preferred, cv.dims, choice.row_vector, choice.block_channels * 2, choice.max_bytes);
  int64_t tiles[3], extent[3];
  for (int d = 0; d < 3; ++d) {
    expect(tile.size[d] >= 1 && tile.size[d] <= preferred.size[d], "tile within preferred");
    tiles[d] = ceil_div<int64_t>(cv.out[d], tile.size[d]);
    extent[d] = forward_input_span(0, tile.size[d], cv.dims[d]).extent;
  }
  const int64_t pitch = choice.channels_last ? extent[2] : aligned_row_pitch(extent[2], choice.row_vector);
  const int64_t channel_blocks = ceil_div<int64_t>(cv.channels, choice.block_channels);
  const int64_t blocks = cv.batch * channel_blocks * tiles[0] * tiles[1] * tiles[2];
  for (int64_t block = 0; block < blocks; ++block) {
    int64_t rest = block, tile_index[3];
    for (int d = 2; d >= 0; --d) tile_index[d] = rest % tiles[d], rest /= tiles[d];
    const int64_t first_channel = (rest % channel_blocks) * choice.block_channels, b = rest / channel_blocks;
    int64_t first[3], origin[3];
    for (int d = 0; d < 3; ++d) {
      first[d] = tile_index[d] * tile.size[d];
      const Span span = forward_input_span(first[d], tile.size[d], cv.dims[d]);
      origin[d] = span.origin;
      expect(span.extent == extent[d], "every tile's input span has the launch's extent");
    }
    const int64_t aligned_w = choice.channels_last ? origin[2] : aligned_row(origin[2], extent[2], choice.row_vector).origin;
    const int64_t shift = origin[2] - aligned_w;
    expect(shift >= 0 && shift < std::max<int64_t>(1, choice.row_vector), "row shift within one vector");
    expect(choice.channels_last || shift + extent[2] <= pitch, "aligned row holds the whole span");
    const SharedTile shared =
        load_tile(x, b, first_channel, origin, extent, pitch, choice.row_vector, choice.block_channels, choice.channels_last);
    for (int64_t lt = 0; lt < tile.size[0]; ++lt)
      for (int64_t lh = 0; lh < tile.size[1]; ++lh)
        for (int64_t lw = 0; lw < tile.size[2]; ++lw)
          for (int64_t j = 0; j < choice.block_channels; ++j) {
            const int64_t o[3] = {first[0] + lt, first[1] + lh, first[2] + lw}, c = first_channel + j;
            if (o[0] >= cv.out[0] || o[1] >= cv.out[1] || o[2] >= cv.out[2] || c >= cv.channels) continue;
            const int64_t base = ((lt * cv.dims[0].stride * extent[1] + lh * cv.dims[1].stride) * pitch + shift +
                                  lw * cv.dims[2].stride) * choice.block_channels + j;
            double sum = 0;
            for (int64_t a = 0; a < cv.dims[0].kernel; ++a)
              for (int64_t e = 0; e < cv.dims[1].kernel; ++e)
                for (int64_t f = 0; f < cv.dims[2].kernel; ++f) {
                  const int64_t at = base + (a * cv.dims[0].dilation * extent[1] * pitch + e * cv.dims[1].dilation * pitch +
                                             f * cv.dims[2].dilation) * choice.block_channels;
                  if (at < 0 || at >= shared.size()) {
                    expect(false, "forward read outside the shared tile: " + cv.describe());
                    continue;
                  }
                  const int64_t wanted = flat(x, b, c, forward_input_span(o[0], 1, cv.dims[0]).origin + forward_tap_offset(0, a, cv.dims[0]),
                                              o[1] * cv.dims[1].stride - cv.dims[1].padding + forward_tap_offset(0, e, cv.dims[1]),
                                              o[2] * cv.dims[2].stride - cv.dims[2].padding + forward_tap_offset(0, f, cv.dims[2]));
                  expect(shared.source[at] == wanted, "forward tap reads the right element: " + cv.describe());
                  sum += shared.value[at] * w[c * cv.taps() + (a * cv.dims[1].kernel + e) * cv.dims[2].kernel + f];
                }
            y.at(b, c, o[0], o[1], o[2]) = sum;
            ++written[flat(y, b, c, o[0], o[1], o[2])];
          }
  }
  for (int count : written) expect(count == 1, "every output written exactly once: " + cv.describe());
  return y;
}

// The strided input-gradient kernel (depthwise_backward.cu, input_grad_kernel), replayed.
Volume simulate_input_grad(const Conv& cv, const Volume& dy, const Weight& w, Tile tile, int64_t row_vector) {
  Volume dx(cv.batch, cv.channels, cv.in);
  std::vector<int> written(dx.data.size(), 0);
  int64_t tiles[3], extent[3];
  for (int d = 0; d < 3; ++d) {
    tile.size[d] = std::max<int64_t>(1, std::min(tile.size[d], cv.in[d]));
    tiles[d] = ceil_div<int64_t>(cv.in[d], tile.size[d]);
    extent[d] = transposed_span_max_extent(tile.size[d], cv.dims[d]);
  }
  const int64_t pitch = aligned_row_pitch(extent[2], row_vector);
  for (int64_t b = 0; b < cv.batch; ++b)
    for (int64_t c = 0; c < cv.channels; ++c)
      for (int64_t block = 0; block < tiles[0] * tiles[1] * tiles[2]; ++block) {
        int64_t rest = block, first[3], origin[3];
        for (int d = 2; d >= 0; --d) {
          first[d] = (rest % tiles[d]) * tile.size[d], rest /= tiles[d];
          const Span span = transposed_output_span(first[d], tile.size[d], cv.dims[d]);
          origin[d] = span.origin;
          expect(span.extent <= extent[d], "transposed span within the launch's extent");
        }
        const int64_t aligned_w = floor_div<int64_t>(origin[2], row_vector) * row_vector;
        const int64_t shift = origin[2] - aligned_w;
        const SharedTile shared = load_tile(dy, b, c, origin, extent, pitch, row_vector, 1, false);
        for (int64_t q = 0; q < tile.size[0] * tile.size[1] * tile.size[2]; ++q) {
          const int64_t i[3] = {first[0] + q / (tile.size[2] * tile.size[1]), first[1] + (q / tile.size[2]) % tile.size[1],
                                first[2] + q % tile.size[2]};
          if (i[0] >= cv.in[0] || i[1] >= cv.in[1] || i[2] >= cv.in[2]) continue;
          double sum = 0;
          for (int a = 0; a < cv.dims[0].kernel; ++a) {
            const auto tt = transposed_tap<int>(int(i[0]), a, int(cv.dims[0].stride), int(cv.dims[0].padding), int(cv.dims[0].dilation));
            if (!tt.hit) continue;
            for (int e = 0; e < cv.dims[1].kernel; ++e) {
              const auto th = transposed_tap<int>(int(i[1]), e, int(cv.dims[1].stride), int(cv.dims[1].padding), int(cv.dims[1].dilation));
              if (!th.hit) continue;
              for (int f = 0; f < cv.dims[2].kernel; ++f) {
                const auto tw = transposed_tap<int>(int(i[2]), f, int(cv.dims[2].stride), int(cv.dims[2].padding), int(cv.dims[2].dilation));
                if (!tw.hit) continue;
                const int64_t lt = tt.output - origin[0], lh = th.output - origin[1], lw = tw.output - origin[2];
                if (lt < 0 || lt >= extent[0] || lh < 0 || lh >= extent[1] || lw < 0 || lw + shift >= pitch) {
                  expect(false, "transposed read outside the shared tile: " + cv.describe());
                  continue;
                }
                const int64_t at = (lt * extent[1] + lh) * pitch + shift + lw;
                expect(shared.source[at] == flat(dy, b, c, tt.output, th.output, tw.output),
                       "transposed tap reads the right grad_output: " + cv.describe());
                sum += shared.value[at] * w[c * cv.taps() + (a * cv.dims[1].kernel + e) * cv.dims[2].kernel + f];
              }
            }
          }
          dx.at(b, c, i[0], i[1], i[2]) = sum;
          ++written[flat(dx, b, c, i[0], i[1], i[2])];
        }
      }
  for (int count : written) expect(count == 1, "every input gradient written exactly once: " + cv.describe());
  return dx;
}

// The stride-1 input gradient as the forward of grad_output with the flipped weight and padding
// (k - 1) * d - p (glue.h, stride_one_input_grad).
Volume simulate_stride_one_input_grad(const Conv& cv, const Volume& dy, const Weight& w, const TilingChoice& choice) {
  Conv flipped = cv;
  Weight wf(w.size());
  for (int d = 0; d < 3; ++d) {
    flipped.in[d] = cv.out[d];
    flipped.out[d] = cv.in[d];
    flipped.dims[d].padding = (cv.dims[d].kernel - 1) * cv.dims[d].dilation - cv.dims[d].padding;
    expect(conv_output_size(flipped.in[d], flipped.dims[d].kernel, 1, flipped.dims[d].padding, flipped.dims[d].dilation) == cv.in[d],
           "flipped convolution gives the input size");
  }
  const int64_t taps = cv.taps();
  for (int64_t c = 0; c < cv.channels; ++c)
    for (int64_t k = 0; k < taps; ++k) wf[c * taps + (taps - 1 - k)] = w[c * taps + k];
  return simulate_forward(flipped, dy, wf, choice);
}

// The weight/bias gradient (param_grad_partial_kernel + param_grad_reduce_kernel), replayed with
// its (tap, lane) accumulators, chunks of tiles and fixed-order sums.
void simulate_param_grad(const Conv& cv, const Volume& x, const Volume& dy, Tile tile, int64_t chunks, int64_t threads,
                         int64_t row_vector, Weight& dw, std::vector<double>& db) {
  int64_t tiles[3], extent[3];
  for (int d = 0; d < 3; ++d) {
    tile.size[d] = std::max<int64_t>(1, std::min(tile.size[d], cv.out[d]));
    tiles[d] = ceil_div<int64_t>(cv.out[d], tile.size[d]);
    extent[d] = forward_input_span(0, tile.size[d], cv.dims[d]).extent;
  }
  const int64_t pitch = aligned_row_pitch(extent[2], row_vector);
  const int64_t taps = cv.taps(), taps_total = taps + 1;
  const int64_t lanes = std::max<int64_t>(1, threads / taps_total);
  const int64_t per_sample = tiles[0] * tiles[1] * tiles[2], total = cv.batch * per_sample;
  std::vector<double> partials(chunks * cv.channels * taps_total, 0.0);
  std::vector<int> visited(total * cv.channels, 0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t c = 0; c < cv.channels; ++c) {
      std::vector<double> sums(taps_total * lanes, 0.0);
      for (int64_t j = chunk * total / chunks; j < (chunk + 1) * total / chunks; ++j) {
        ++visited[j * cv.channels + c];
        const int64_t b = j / per_sample;
        int64_t rest = j % per_sample, first[3], origin[3];
        for (int d = 2; d >= 0; --d) {
          first[d] = (rest % tiles[d]) * tile.size[d], rest /= tiles[d];
          origin[d] = first[d] * cv.dims[d].stride - cv.dims[d].padding;
        }
        const int64_t shift = origin[2] - floor_div<int64_t>(origin[2], row_vector) * row_vector;
        const SharedTile xs = load_tile(x, b, c, origin, extent, pitch, row_vector, 1, false);
        const SharedTile gs = load_tile(dy, b, c, first, tile.size, tile.size[2], 1, 1, false);
        for (int64_t k = 0; k < taps_total; ++k) {
          const bool is_bias = k == taps;
          const int64_t a = is_bias ? 0 : k / (cv.dims[1].kernel * cv.dims[2].kernel);
          const int64_t e = is_bias ? 0 : (k / cv.dims[2].kernel) % cv.dims[1].kernel, f = is_bias ? 0 : k % cv.dims[2].kernel;
          const int64_t tap_offset = a * cv.dims[0].dilation * extent[1] * pitch + e * cv.dims[1].dilation * pitch +
                                     f * cv.dims[2].dilation + shift;
          for (int64_t lane = 0; lane < lanes; ++lane) {
            double sum = 0;
            for (int64_t q = lane; q < tile.size[0] * tile.size[1] * tile.size[2]; q += lanes) {
              const int64_t lw = q % tile.size[2], lh = (q / tile.size[2]) % tile.size[1], lt = q / (tile.size[2] * tile.size[1]);
              const double g = gs.value[q];
              const int64_t at = lt * cv.dims[0].stride * extent[1] * pitch + lh * cv.dims[1].stride * pitch +
                                 lw * cv.dims[2].stride + tap_offset;
              if (!is_bias && (at < 0 || at >= xs.size())) {
                expect(false, "weight-gradient read outside the shared tile: " + cv.describe());
                continue;
              }
              if (!is_bias && gs.source[q] >= 0) {
                const int64_t o[3] = {first[0] + lt, first[1] + lh, first[2] + lw};
                expect(xs.source[at] == flat(x, b, c, o[0] * cv.dims[0].stride - cv.dims[0].padding + a * cv.dims[0].dilation,
                                             o[1] * cv.dims[1].stride - cv.dims[1].padding + e * cv.dims[1].dilation,
                                             o[2] * cv.dims[2].stride - cv.dims[2].padding + f * cv.dims[2].dilation),
                       "weight-gradient tap reads the right input: " + cv.describe());
              }
              sum += is_bias ? g : g * xs.value[at];
            }
            sums[k * lanes + lane] += sum;
          }
        }
      }
      for (int64_t k = 0; k < taps_total; ++k) {
        double s = 0;
        for (int64_t lane = 0; lane < lanes; ++lane) s += sums[k * lanes + lane];
        partials[(chunk * cv.channels + c) * taps_total + k] = s;
      }
    }
  for (int count : visited) expect(count == 1, "every (sample, tile, channel) in exactly one chunk");
  dw.assign(cv.channels * taps, 0.0);
  db.assign(cv.channels, 0.0);
  for (int64_t c = 0; c < cv.channels; ++c)
    for (int64_t k = 0; k < taps_total; ++k) {
      double s = 0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) s += partials[(chunk * cv.channels + c) * taps_total + k];
      (k == taps ? db[c] : dw[c * taps + k]) = s;
    }
}

Conv random_conv(std::mt19937& rng, int variant) {
  static const int64_t stencils[5][3] = {{3, 3, 3}, {1, 3, 3}, {3, 1, 1}, {5, 5, 5}, {3, 5, 5}};
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (;;) {
    Conv cv{};
    cv.batch = pick(1, 2);
    cv.channels = pick(1, 5);
    bool ok = true;
    for (int d = 0; d < 3; ++d) {
      cv.in[d] = pick(1, 9);
      const int64_t k = variant < 5 ? stencils[variant][d] : pick(1, 4);
      const int64_t dilation = pick(0, 3) == 0 ? pick(2, 3) : 1;
      const int64_t stride = pick(1, 3) == 1 ? pick(2, 3) : 1;
      const int64_t padding = pick(0, (k - 1) * dilation / 2 + 1);
      cv.dims[d] = {k, stride, padding, dilation};
      cv.out[d] = conv_output_size(cv.in[d], k, stride, padding, dilation);
      ok = ok && cv.out[d] >= 1 && cv.in[d] + 2 * padding >= (k - 1) * dilation + 1;
    }
    if (ok) return cv;
  }
}

void fill(std::mt19937& rng, std::vector<double>& values) {
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  for (double& v : values) v = uniform(rng);
}

void test_helpers() {
  for (int64_t a = -20; a <= 20; ++a)
    for (int64_t b = 1; b <= 5; ++b) {
      expect(floor_div<int64_t>(a, b) == int64_t(std::floor(double(a) / double(b))), "floor_div");
      expect(ceil_div<int64_t>(a, b) == int64_t(std::ceil(double(a) / double(b))), "ceil_div");
      expect(floor_div<int>(int(a), int(b)) == int(std::floor(double(a) / double(b))), "floor_div<int>");
      for (int64_t extent = 1; extent <= 9; ++extent) {
        const AlignedRow row = aligned_row(a, extent, b);
        expect(row.origin % b == 0 && row.origin <= a && a - row.origin < b && a + extent <= row.origin + row.pitch &&
                   row.pitch % b == 0,
               "aligned row covers the span");
      }
    }
  for (int64_t in = 1; in <= 12; ++in)
    for (int64_t k = 1; k <= 5; ++k)
      for (int64_t s = 1; s <= 3; ++s)
        for (int64_t d = 1; d <= 3; ++d)
          for (int64_t p = 0; p <= 4; ++p) {
            int64_t expected = 0;  // outputs o >= 0 whose last tap o * s + (k - 1) * d lies in the padded input
            for (int64_t o = 0; o * s <= in + 2 * p; ++o)
              if (o * s + (k - 1) * d <= in + 2 * p - 1) expected = o + 1;
            expect(conv_output_size(in, k, s, p, d) == expected || (in + 2 * p < (k - 1) * d + 1),
                   "conv_output_size matches counting");
          }
  // Shuffle permutations: F.channel_shuffle views (C) as (g, C/g) and transposes to (C/g, g).
  for (int64_t channels = 1; channels <= 24; ++channels)
    for (int64_t groups = 1; groups <= channels; ++groups) {
      if (channels % groups != 0) continue;
      std::vector<int> hit(channels, 0);
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t out = shuffled_channel(c, groups, channels);
        const int64_t i = c / (channels / groups), j = c % (channels / groups);
        expect(out == j * groups + i, "shuffled_channel = transpose of (g, C/g)");
        expect(unshuffled_channel(out, groups, channels) == c, "unshuffled_channel inverts shuffled_channel");
        expect(shuffled_channel(out, channels / groups, channels) == c, "shuffling with C/g groups undoes g groups");
        if (out >= 0 && out < channels) ++hit[out];
      }
      for (int count : hit) expect(count == 1, "the shuffle is a permutation");
    }
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 60;
  std::mt19937 rng(12345);
  test_helpers();
  const int64_t vectors[] = {1, 2, 4, 8};
  int configs = 0;
  for (int round = 0; round < rounds; ++round)
    for (int variant = 0; variant < 6; ++variant) {
      const Conv cv = random_conv(rng, variant);
      Volume x(cv.batch, cv.channels, cv.in), dy(cv.batch, cv.channels, cv.out);
      Weight w(cv.channels * cv.taps());
      fill(rng, x.data);
      fill(rng, dy.data);
      fill(rng, w);
      const Volume y_ref = naive_forward(cv, x, w);
      Volume dx_ref(cv.batch, cv.channels, cv.in);
      Weight dw_ref;
      std::vector<double> db_ref;
      naive_backward(cv, x, w, dy, dx_ref, dw_ref, db_ref);
      auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
      for (bool channels_last : {false, true}) {
        TilingChoice choice{};
        for (int d = 0; d < 3; ++d) choice.preferred.size[d] = pick(1, 5);
        choice.max_bytes = pick(0, 1) ? 40 * 1024 : pick(8, 400);
        choice.channels_last = channels_last;
        choice.row_vector = channels_last ? 1 : vectors[pick(0, 3)];
        choice.block_channels = channels_last ? vectors[pick(0, 2)] * pick(1, 2) : 1;
        ++configs;
        const std::string what = cv.describe() + (channels_last ? " channels-last" : " planar");
        expect(max_abs_diff(simulate_forward(cv, x, w, choice).data, y_ref.data) < 1e-9, "forward value: " + what);
        const bool unit_stride = cv.dims[0].stride == 1 && cv.dims[1].stride == 1 && cv.dims[2].stride == 1;
        if (unit_stride) {
          expect(max_abs_diff(simulate_stride_one_input_grad(cv, dy, w, choice).data, dx_ref.data) < 1e-9,
                 "stride-1 input gradient value: " + what);
        }
        expect(max_abs_diff(simulate_input_grad(cv, dy, w, choice.preferred, choice.row_vector).data, dx_ref.data) < 1e-9,
               "transposed input gradient value: " + what);
        Weight dw;
        std::vector<double> db;
        const int64_t chunks = pick(1, 4);
        simulate_param_grad(cv, x, dy, choice.preferred, chunks, 256, choice.row_vector, dw, db);
        expect(max_abs_diff(dw, dw_ref) < 1e-9, "weight gradient value: " + what);
        expect(max_abs_diff(db, db_ref) < 1e-9, "bias gradient value: " + what);
      }
    }
  std::printf("%d tiling configurations, %ld checks, %d failures\n", configs, long(checks), failures);
  return failures == 0 ? 0 : 1;
}
