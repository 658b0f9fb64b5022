// CPU kernels of reductions, softmax, cross_entropy, layer_norm, embedding and dropout (f32).
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "core/random.h"
#include "devices/cpu_device.h"
#include "ops/kernels/cpu/kernel_helpers.h"
#include "ops/kernels/cpu/vector_loops.h"
#include "ops/kernels/cpu/widened.h"
#include "ops/registry.h"

namespace tessel::cpu {

namespace {

// The input shape with reduced axes kept as extent 1: the output's memory layout.
Shape keepdims_shape(const Shape& shape, const Attributes& attrs) {
  const std::vector<int64_t>& axes = attrs.get_ints("axes");
  std::vector<int64_t> dims = shape.dims();
  if (axes.empty()) std::fill(dims.begin(), dims.end(), 1);
  for (int64_t axis : axes) dims[*shape.normalize_axis(axis)] = 1;
  return Shape(dims);
}

void sum(const KernelContext& c) {
  sum_into(c.inputs[0], keepdims_shape(c.inputs[0].shape, c.attrs), c.outputs[0].as<float>());
}

void mean(const KernelContext& c) {
  const Shape kept = keepdims_shape(c.inputs[0].shape, c.attrs);
  float* y = c.outputs[0].as<float>();
  sum_into(c.inputs[0], kept, y);
  // A shard of a split mean divides by the logical count (attr `divisor`, set when the op is
  // laid over several devices), so the shards' partial values add up to the mean.
  const int64_t count = c.attrs.get_int("divisor", c.inputs[0].numel() / std::max<int64_t>(1, kept.numel()));
  const float inverse = 1.0f / static_cast<float>(std::max<int64_t>(1, count));
  for (int64_t i = 0; i < kept.numel(); ++i) y[i] *= inverse;
}

// Calls fn(base, stride, extent) for every line along `axis`.
template <typename Fn>
void for_each_line(const Shape& shape, int64_t axis_attr, Fn&& fn) {
  const AxisSplit s = split_at(shape, *shape.normalize_axis(axis_attr));
  parallel_for(s.outer * s.inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, s.extent)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t line = begin; line < end; ++line) {
                   fn((line / s.inner) * s.extent * s.inner + line % s.inner, s.inner, s.extent);
                 }
               });
}

void softmax(const KernelContext& c) {
  const float* x = c.inputs[0].as<float>();
  float* y = c.outputs[0].as<float>();
  for_each_line(c.inputs[0].shape, c.attrs.get_int("axis"), [&](int64_t base, int64_t stride, int64_t n) {
    if (stride == 1) return softmax_row(x + base, y + base, n);
    float peak = -INFINITY;
    for (int64_t j = 0; j < n; ++j) peak = std::max(peak, x[base + j * stride]);
    float total = 0;
    for (int64_t j = 0; j < n; ++j) total += y[base + j * stride] = std::exp(x[base + j * stride] - peak);
    for (int64_t j = 0; j < n; ++j) y[base + j * stride] /= total;
  });
}

void log_softmax(const KernelContext& c) {
  const float* x = c.inputs[0].as<float>();
  float* y = c.outputs[0].as<float>();
  for_each_line(c.inputs[0].shape, c.attrs.get_int("axis"), [&](int64_t base, int64_t stride, int64_t n) {
    float peak = -INFINITY;
    for (int64_t j = 0; j < n; ++j) peak = std::max(peak, x[base + j * stride]);
    float total = 0;
    for (int64_t j = 0; j < n; ++j) total += std::exp(x[base + j * stride] - peak);
    const float log_total = peak + std::log(total);
    for (int64_t j = 0; j < n; ++j) y[base + j * stride] = x[base + j * stride] - log_total;
  });
}

void softmax_grad(const KernelContext& c) {  // (y, dy)
  const float* y = c.inputs[0].as<float>();
  const float* dy = c.inputs[1].as<float>();
  float* dx = c.outputs[0].as<float>();
  for_each_line(c.inputs[0].shape, c.attrs.get_int("axis"), [&](int64_t base, int64_t stride, int64_t n) {
    float dot = 0;
    for (int64_t j = 0; j < n; ++j) dot += dy[base + j * stride] * y[base + j * stride];
    for (int64_t j = 0; j < n; ++j) dx[base + j * stride] = y[base + j * stride] * (dy[base + j * stride] - dot);
  });
}

void log_softmax_grad(const KernelContext& c) {  // (y, dy)
  const float* y = c.inputs[0].as<float>();
  const float* dy = c.inputs[1].as<float>();
  float* dx = c.outputs[0].as<float>();
  for_each_line(c.inputs[0].shape, c.attrs.get_int("axis"), [&](int64_t base, int64_t stride, int64_t n) {
    float total = 0;
    for (int64_t j = 0; j < n; ++j) total += dy[base + j * stride];
    for (int64_t j = 0; j < n; ++j)
      dx[base + j * stride] = dy[base + j * stride] - std::exp(y[base + j * stride]) * total;
  });
}

// What both cross_entropy kernels read: the rows of logits, the labels, and the options.
struct CrossEntropyRows {
  explicit CrossEntropyRows(const KernelContext& c)
      : logits(c.inputs[0]),
        labels(c.inputs[1]),
        classes(logits.shape[logits.shape.rank() - 1]),
        rows(labels.numel()),
        x(logits.as<float>()),
        reduction(c.attrs.get_string("reduction")),
        divisor(c.attrs.get_int("divisor", rows)),  // the logical row count of a shard
        ignore_index(c.attrs.get_int("ignore_index", std::numeric_limits<int64_t>::min())),
        smoothing(static_cast<float>(c.attrs.get_float("label_smoothing", 0))) {}

  // Label of row r, checked against the class count; nullopt where it is ignore_index.
  std::optional<int64_t> label(int64_t r) const {
    const int64_t label = labels.dtype == DType::i32 ? labels.as<int32_t>()[r] : labels.as<int64_t>()[r];
    if (label == ignore_index) return std::nullopt;
    if (label < 0 || label >= classes) {
      throw Error::OutOfRange(concat("cross_entropy: label ", label, " at position ", r, " is outside [0, ", classes,
                                     ") (expected a class index of logits ", logits.shape,
                                     ignore_index == std::numeric_limits<int64_t>::min()
                                         ? std::string()
                                         : concat(", or the ignore_index ", ignore_index),
                                     ")"));
    }
    return label;
  }

  const TensorView& logits;
  const TensorView& labels;
  int64_t classes, rows;
  const float* x;
  const std::string& reduction;
  int64_t divisor;
  int64_t ignore_index;
  float smoothing;  // the target is (1 - s) on the label and s / C on every class
};

// Rows run in parallel (vectorised log-sum-exp, vector_loops.h); the losses are summed after,
// in row order, so the result does not depend on the thread count.
void cross_entropy(const KernelContext& c) {
  const CrossEntropyRows in(c);
  float* y = c.outputs[0].as<float>();
  std::vector<float> losses(static_cast<size_t>(in.rows));
  for (int64_t r = 0; r < in.rows; ++r) (void)in.label(r);  // range errors thrown here, not on a pool thread
  parallel_for(in.rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(in.classes, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = in.x + r * in.classes;
      const std::optional<int64_t> label = in.label(r);
      float loss = 0;
      if (label) {
        const float lse = log_sum_exp_row(row, in.classes);
        loss = (1 - in.smoothing) * (lse - row[*label]);
        if (in.smoothing != 0) {
          double row_total = 0;
          for (int64_t j = 0; j < in.classes; ++j) row_total += row[j];
          loss += in.smoothing * (lse - static_cast<float>(row_total / static_cast<double>(in.classes)));
        }
      }
      losses[r] = loss;
    }
  });
  double total = 0;
  for (int64_t r = 0; r < in.rows; ++r) {
    if (in.reduction == "none") y[r] = losses[r];
    total += losses[r];
  }
  if (in.reduction == "mean") y[0] = static_cast<float>(total / static_cast<double>(std::max<int64_t>(in.divisor, 1)));
  if (in.reduction == "sum") y[0] = static_cast<float>(total);
}

// dx = weight (softmax(row) - target): weight softmax(row) - weight s / C, less weight (1 - s) at
// the label.
void cross_entropy_grad(const KernelContext& c) {  // (logits, labels, dy)
  const CrossEntropyRows in(c);
  const float* dy = c.inputs[2].as<float>();
  float* dx = c.outputs[0].as<float>();
  const float spread = in.smoothing / static_cast<float>(std::max<int64_t>(in.classes, 1));
  for (int64_t r = 0; r < in.rows; ++r) (void)in.label(r);
  parallel_for(in.rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(in.classes, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* drow = dx + r * in.classes;
      const std::optional<int64_t> label = in.label(r);
      if (!label) {
        std::fill(drow, drow + in.classes, 0.0f);
        continue;
      }
      const float weight = in.reduction == "none"  ? dy[r]
                           : in.reduction == "sum" ? dy[0]
                                                   : dy[0] / static_cast<float>(std::max<int64_t>(in.divisor, 1));
      const float* row = in.x + r * in.classes;
      softmax_affine_row(row, weight, -weight * spread, drow, in.classes);
      drow[*label] -= weight * (1 - in.smoothing);
    }
  });
}

// What both layer_norm kernels read: x as rows of the last axis, gamma, and eps.
struct LayerNormRows {
  explicit LayerNormRows(const KernelContext& c)
      : width(c.inputs[0].shape[c.inputs[0].shape.rank() - 1]),
        rows(width == 0 ? 0 : c.inputs[0].numel() / width),
        eps(static_cast<float>(c.attrs.get_float("eps"))),
        x(c.inputs[0].as<float>()),
        gamma(c.inputs[1].as<float>()) {}
  int64_t width, rows;
  float eps;
  const float* x;
  const float* gamma;
};

void layer_norm(const KernelContext& c) {  // (x, gamma, beta)
  const LayerNormRows in(c);
  const int64_t width = in.width;
  const float* px = in.x;
  const float* gamma = in.gamma;
  const float* beta = c.inputs[2].as<float>();
  float* y = c.outputs[0].as<float>();
  parallel_for(in.rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = px + r * width;
      normalize_row(row, row_statistics(row, width, in.eps), gamma, beta, y + r * width, width);
    }
  });
}

void layer_norm_grad(const KernelContext& c) {  // (x, gamma, dy) -> (dx, dgamma, dbeta)
  const LayerNormRows in(c);
  const int64_t width = in.width, rows = in.rows;
  const float* dy = c.inputs[2].as<float>();
  float* dx = c.outputs[0].as<float>();
  float* dgamma = c.outputs[1].as<float>();
  float* dbeta = c.outputs[2].as<float>();
  // Rows in blocks of a fixed size, each block summing its own dgamma and dbeta terms; the blocks'
  // sums are then added in block order. The result does not depend on the thread count.
  constexpr int64_t kBlockRows = 32;
  const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  std::vector<float> partial(static_cast<size_t>(std::max<int64_t>(blocks, 1) * 2 * width), 0.0f);
  parallel_for(blocks, 1, [&](int64_t first, int64_t last) {
    std::vector<float> normalized(width);
    for (int64_t b = first; b < last; ++b) {
      float* block_dgamma = partial.data() + b * 2 * width;
      float* block_dbeta = block_dgamma + width;
      for (int64_t r = b * kBlockRows; r < std::min(rows, (b + 1) * kBlockRows); ++r) {
        const float* row = in.x + r * width;
        layer_norm_grad_row(row, dy + r * width, in.gamma, row_statistics(row, width, in.eps), normalized.data(),
                            dx + r * width, block_dgamma, block_dbeta, width);
      }
    }
  });
  std::fill(dgamma, dgamma + width, 0.0f);
  std::fill(dbeta, dbeta + width, 0.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    accumulate_loop(dgamma, partial.data() + b * 2 * width, width);
    accumulate_loop(dbeta, partial.data() + b * 2 * width + width, width);
  }
}

int64_t index_at(const TensorView& indices, int64_t i, int64_t rows) {
  const int64_t index = indices.dtype == DType::i32 ? indices.as<int32_t>()[i] : indices.as<int64_t>()[i];
  if (index < 0 || index >= rows) {
    throw Error::OutOfRange(
        concat("embedding: index ", index, " at position ", i, " is outside the table's rows [0, ", rows, ")"));
  }
  return index;
}

void embedding(const KernelContext& c) {  // (table, indices)
  const TensorView& table = c.inputs[0];
  const int64_t rows = table.shape[0], width = table.shape[1];
  const float* t = table.as<float>();
  float* y = c.outputs[0].as<float>();
  for (int64_t i = 0, n = c.inputs[1].numel(); i < n; ++i) {
    const float* row = t + index_at(c.inputs[1], i, rows) * width;
    std::copy(row, row + width, y + i * width);
  }
}

void embedding_grad(const KernelContext& c) {  // (dy, indices)
  const TensorView& out = c.outputs[0];
  const int64_t rows = out.shape[0], width = out.shape[1];
  const float* dy = c.inputs[0].as<float>();
  float* dt = out.as<float>();
  std::fill(dt, dt + out.numel(), 0.0f);
  for (int64_t i = 0, n = c.inputs[1].numel(); i < n; ++i) {
    float* row = dt + index_at(c.inputs[1], i, rows) * width;
    for (int64_t j = 0; j < width; ++j) row[j] += dy[i * width + j];
  }
}

// Forward and backward share the mask: element i is kept when its draw for (seed, step) >= p.
void dropout(const KernelContext& c) {
  const float* x = c.inputs[0].as<float>();
  float* y = c.outputs[0].as<float>();
  const int64_t n = c.outputs[0].numel();
  const double p = c.attrs.get_float("p");
  if (!c.training || p == 0) {
    std::copy(x, x + n, y);
    return;
  }
  const uint64_t stream = mix64(static_cast<uint64_t>(c.attrs.get_int("seed"))) ^ static_cast<uint64_t>(c.step);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
  // A row shard draws the mask of its elements' logical indices (attr `element_offset`).
  const int64_t offset = c.attrs.get_int("element_offset", 0);
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = uniform_at(stream, offset + i) >= p ? x[i] * keep_scale : 0.0f;
  });
}

TESSEL_KERNEL("sum", cpu, f32, sum);
TESSEL_WIDENED_KERNELS("sum", sum);
TESSEL_KERNEL("mean", cpu, f32, mean);
TESSEL_WIDENED_KERNELS("mean", mean);
TESSEL_KERNEL("softmax", cpu, f32, softmax);
TESSEL_WIDENED_KERNELS("softmax", softmax);
TESSEL_KERNEL("log_softmax", cpu, f32, log_softmax);
TESSEL_WIDENED_KERNELS("log_softmax", log_softmax);
TESSEL_KERNEL("softmax_grad", cpu, f32, softmax_grad);
TESSEL_WIDENED_KERNELS("softmax_grad", softmax_grad);
TESSEL_KERNEL("log_softmax_grad", cpu, f32, log_softmax_grad);
TESSEL_WIDENED_KERNELS("log_softmax_grad", log_softmax_grad);
TESSEL_KERNEL("cross_entropy", cpu, f32, cross_entropy);
TESSEL_WIDENED_KERNELS("cross_entropy", cross_entropy);
TESSEL_KERNEL("cross_entropy_grad", cpu, f32, cross_entropy_grad);
TESSEL_WIDENED_KERNELS("cross_entropy_grad", cross_entropy_grad);
TESSEL_KERNEL("layer_norm", cpu, f32, layer_norm);
TESSEL_WIDENED_KERNELS("layer_norm", layer_norm);
TESSEL_KERNEL("layer_norm_grad", cpu, f32, layer_norm_grad);
TESSEL_WIDENED_KERNELS("layer_norm_grad", layer_norm_grad);
TESSEL_KERNEL("embedding", cpu, f32, embedding);
TESSEL_WIDENED_KERNELS("embedding", embedding);
TESSEL_KERNEL("embedding_grad", cpu, f32, embedding_grad);
TESSEL_WIDENED_KERNELS("embedding_grad", embedding_grad);
TESSEL_KERNEL("dropout", cpu, f32, dropout);
TESSEL_WIDENED_KERNELS("dropout", dropout);
TESSEL_KERNEL("dropout_grad", cpu, f32, dropout);
TESSEL_WIDENED_KERNELS("dropout_grad", dropout);

}  // namespace
}  // namespace tessel::cpu
