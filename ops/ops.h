// The DSL's ops as free functions. Each checks its inputs where the user calls it: a wrong
// shape throws Error naming the op, the caller's file:line, both shapes and the rule.
#pragma once

#include <optional>
#include <vector>

#include "graph/graph.h"

namespace tessel {

using Where = SourceLocation;

struct MatmulOptions {
  bool transpose_a = false;
  bool transpose_b = false;
};
// a[..., m, k] @ b[..., k, n] -> [..., m, n]. Batch dimensions must be equal, or one operand
// is a plain matrix that is used for every batch. Transpose flags act on the last two axes.
Tensor matmul(const Tensor& a, const Tensor& b, MatmulOptions options = {}, Where where = Where::current());

// Element-wise, with NumPy broadcasting.
Tensor add(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor sub(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor mul(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor div(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor scale(const Tensor& x, double factor, Where where = Where::current());
// x[..., C] + bias[C].
Tensor bias_add(const Tensor& x, const Tensor& bias, Where where = Where::current());

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator*(const Tensor& x, double factor) { return scale(x, factor); }
inline Tensor operator*(double factor, const Tensor& x) { return scale(x, factor); }
inline Tensor operator/(const Tensor& x, double divisor) { return scale(x, 1.0 / divisor); }
inline Tensor operator-(const Tensor& x) { return scale(x, -1.0); }

Tensor relu(const Tensor& x, Where where = Where::current());
Tensor gelu(const Tensor& x, Where where = Where::current());  // exact, with erf
Tensor tanh(const Tensor& x, Where where = Where::current());
Tensor sigmoid(const Tensor& x, Where where = Where::current());

// Math, element-wise, on floating point.
Tensor exp(const Tensor& x, Where where = Where::current());
Tensor log(const Tensor& x, Where where = Where::current());
Tensor sqrt(const Tensor& x, Where where = Where::current());
Tensor rsqrt(const Tensor& x, Where where = Where::current());  // 1 / sqrt(x)
Tensor abs(const Tensor& x, Where where = Where::current());
Tensor pow(const Tensor& x, double exponent, Where where = Where::current());
// Limits x to [low, high]; pass an infinity for no bound on one side.
Tensor clamp(const Tensor& x, double low, double high, Where where = Where::current());

// Comparisons, with broadcasting, give bool tensors.
Tensor less(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor less_equal(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor greater(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor greater_equal(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor equal(const Tensor& a, const Tensor& b, Where where = Where::current());
Tensor not_equal(const Tensor& a, const Tensor& b, Where where = Where::current());
// a where `condition` (bool) holds, b elsewhere; all three broadcast together.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b, Where location = Where::current());
// Between f32, f16, bf16, i32, i64 and bool. Floats to integers truncate toward zero, as a C++
// cast; anything to bool is x != 0. The identity when x already has `dtype`.
Tensor cast(const Tensor& x, DType dtype, Where where = Where::current());
// The identity, through which no gradient flows.
Tensor stop_gradient(const Tensor& x, Where where = Where::current());

// Tensors made in the graph. arange: start, start + step, ... up to end (exclusive).
Tensor arange(Graph& graph, int64_t start, int64_t end, int64_t step = 1, DType dtype = DType::i64,
              Where where = Where::current());
// x with the elements below diagonal k of its last two axes zeroed (column - row < k), and
// tril: those above it (column - row > k).
Tensor triu(const Tensor& x, int64_t diagonal = 0, Where where = Where::current());
Tensor tril(const Tensor& x, int64_t diagonal = 0, Where where = Where::current());
// bool [length, length]: true where column <= row, the positions a causal attention may see.
Tensor causal_mask(Graph& graph, int64_t length, Where where = Where::current());
// A fixed tensor that lives in the graph (and in its plan): at most 2^24 elements.
Tensor constant(Graph& graph, const HostTensor& value, Where where = Where::current());

Tensor softmax(const Tensor& x, int64_t axis = -1, Where where = Where::current());
Tensor log_softmax(const Tensor& x, int64_t axis = -1, Where where = Where::current());

enum class Reduction { mean, sum, none };
// logits[..., C] and integer labels[...] in [0, C): the negative log-likelihood of each label,
// averaged (mean), added (sum) or kept per position (none).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, Reduction reduction = Reduction::mean,
                     Where where = Where::current());
struct CrossEntropyOptions {
  Reduction reduction = Reduction::mean;
  // Positions whose label is this add nothing, and a mean counts only the others (as torch's
  // ignore_index; where every label is ignored the mean is 0, where torch gives NaN).
  std::optional<int64_t> ignore_index;
  // The target puts 1 - s on the label and s / C on every class (as torch's label_smoothing).
  double label_smoothing = 0;
};
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, const CrossEntropyOptions& options,
                     Where where = Where::current());

// Reductions over `axes` (empty: all axes). max and min also take integers; argmax gives the
// first index of the largest element along `axis`, as i64.
Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false, Where where = Where::current());
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false, Where where = Where::current());
Tensor max(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false, Where where = Where::current());
Tensor min(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false, Where where = Where::current());
Tensor argmax(const Tensor& x, int64_t axis = -1, bool keepdims = false, Where where = Where::current());

// One extent of `shape` may be -1: it is inferred from the element count.
Tensor reshape(const Tensor& x, Shape shape, Where where = Where::current());
Tensor transpose(const Tensor& x, std::vector<int64_t> permutation, Where where = Where::current());
Tensor concat(const std::vector<Tensor>& xs, int64_t axis, Where where = Where::current());
// Elements [starts[i], ends[i]) of every axis i.
Tensor slice(const Tensor& x, std::vector<int64_t> starts, std::vector<int64_t> ends, Where where = Where::current());

// Normalises over the last axis, then scales by gamma[D] and shifts by beta[D].
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5,
                  Where where = Where::current());
// table[V, D] looked up at integer indices[...] -> [..., D].
Tensor embedding(const Tensor& table, const Tensor& indices, Where where = Where::current());
// Zeroes each element with probability p while training and scales the rest by 1/(1-p);
// the identity in evaluation. The mask depends on (seed, step, element) only.
Tensor dropout(const Tensor& x, double p, int64_t seed = 0, Where where = Where::current());

// Layouts (DESIGN.md, "SBP, in one table"). The compiler chooses the placement and SBP of every
// tensor; these pin some of them, and the compiler never overrides a pin.
//
// pin(): an input or parameter lives on `placement` with `sbp` (S(axis) or B).
void pin(const Tensor& leaf, const Placement& placement, const NdSbp& sbp);
// to(): x converted to `sbp` on `placement` (or on x's own placement): the compiler inserts
// the boxing. Values are unchanged; a pipeline hands off between stages this way.
Tensor to(const Tensor& x, const Placement& placement, const NdSbp& sbp, Where where = Where::current());
Tensor to(const Tensor& x, const NdSbp& sbp, Where where = Where::current());

// Helpers the gradient rules use; users may call them too.
Tensor fill(Graph& graph, Shape shape, double value, DType dtype = DType::f32, Where where = Where::current());
Tensor broadcast_to(const Tensor& x, Shape shape, Where where = Where::current());
// Sums the broadcast axes of x away so the result has `shape` (the adjoint of broadcast_to).
Tensor sum_to(const Tensor& x, Shape shape, Where where = Where::current());

}  // namespace tessel
