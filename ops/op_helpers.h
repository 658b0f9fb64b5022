// Private to ops/: shared pieces of op declarations.
#pragma once

#include <string_view>

#include "graph/autograd.h"
#include "ops/ops.h"

namespace tessel::op_helpers {

// Adds a one-output op on the graph of the first input.
inline Tensor call(std::string_view op, const std::vector<Tensor>& inputs, Attributes attrs, Where where) {
  if (inputs.empty() || !inputs[0].defined()) {
    throw Error::InvalidArgument(concat(op, " at ", to_string(where), ": input 0 is an empty Tensor"));
  }
  return inputs[0].graph().apply1(op, inputs, std::move(attrs), where);
}

// Inference of ops whose single output has the type of input 0.
inline std::vector<TensorType> same_as_first(const InferContext& c) { return {c.inputs[0]}; }

inline void require_floating(const TensorType& t, std::string_view what) {
  if (!is_floating(t.dtype)) {
    throw Error::ShapeMismatch(concat(what, " must be floating point (f32, f16, bf16), got ", t.dtype));
  }
}

inline void require_integer(const TensorType& t, std::string_view what) {
  if (!is_integer(t.dtype))
    throw Error::ShapeMismatch(concat(what, " must be an integer tensor (i32, i64), got ", t.dtype));
}

inline void require_same_dtype(const TensorType& a, const TensorType& b) {
  if (a.dtype != b.dtype) throw Error::ShapeMismatch(concat("dtypes differ: ", a.dtype, " and ", b.dtype));
}

// A normalised axis of `shape`, or an Error naming the valid range.
inline int axis_of(const Shape& shape, int64_t axis, std::string_view what = "axis") {
  auto normalized = shape.normalize_axis(axis);
  if (!normalized) {
    throw Error::InvalidArgument(concat(what, " ", axis, " is out of range for a tensor of shape ", shape,
                                        " (expected ", -shape.rank(), " <= axis < ", shape.rank(), ")"));
  }
  return *normalized;
}

// The NumPy broadcast of two shapes, or the ShapeMismatch that says why there is none.
inline Shape broadcast_or_throw(const Shape& a, const Shape& b) {
  auto shape = broadcast_shapes(a, b);
  if (!shape) {
    throw Error::ShapeMismatch(concat("shapes ", a, " and ", b,
                                      " do not broadcast (expected each pair of trailing extents to be equal or 1)"));
  }
  return *shape;
}

// Sums a gradient back to the shape of the input it belongs to.
inline Tensor reduce_to(const Tensor& gradient, const Tensor& input) {
  return gradient.shape() == input.shape() ? gradient : sum_to(gradient, input.shape());
}

// --- SBP signatures -------------------------------------------------------------------------

inline std::vector<Sbp> repeated(size_t count, const Sbp& sbp) { return std::vector<Sbp>(count, sbp); }

// The SBP of each input when output 0 is split along `out_axis` and the inputs broadcast to
// it (NumPy rules): an input axis aligned with it and of the same extent splits too; an input
// that is broadcast along it (extent 1, or no such axis) is B.
inline std::vector<Sbp> splits_aligned_with(const SbpContext& c, int out_axis) {
  const Shape& out = c.outputs[0].shape;
  std::vector<Sbp> sbps;
  for (const TensorType& input : c.inputs) {
    const int axis = out_axis - (out.rank() - input.shape.rank());
    sbps.push_back(axis >= 0 && input.shape[axis] == out[out_axis] ? S(axis) : B);
  }
  return sbps;
}

// Ops that compute each output element from the inputs' elements at the same (broadcast)
// position: S(i) on every output axis, all B, and one P(sum) signature for each entry of
// `partial` (the input SBPs for which the op is linear, such as {P, P} for add).
inline std::vector<SbpSignature> elementwise_sbp(const SbpContext& c,
                                                 const std::vector<std::vector<Sbp>>& partial = {}) {
  std::vector<SbpSignature> signatures;
  for (int axis = 0; axis < c.outputs[0].shape.rank(); ++axis) {
    signatures.push_back({splits_aligned_with(c, axis), repeated(c.outputs.size(), S(axis))});
  }
  signatures.push_back({repeated(c.inputs.size(), B), repeated(c.outputs.size(), B)});
  for (const std::vector<Sbp>& inputs : partial) signatures.push_back({inputs, repeated(c.outputs.size(), P)});
  return signatures;
}

// Ops whose inputs and outputs share one shape and work along `axis` (softmax): S(i) on every
// other axis, all B, and `partial` as for elementwise_sbp.
inline std::vector<SbpSignature> along_axis_sbp(const SbpContext& c, int axis,
                                                const std::vector<std::vector<Sbp>>& partial = {}) {
  std::vector<SbpSignature> signatures;
  for (int i = 0; i < c.outputs[0].shape.rank(); ++i) {
    if (i != axis) signatures.push_back({repeated(c.inputs.size(), S(i)), repeated(c.outputs.size(), S(i))});
  }
  signatures.push_back({repeated(c.inputs.size(), B), repeated(c.outputs.size(), B)});
  for (const std::vector<Sbp>& inputs : partial) signatures.push_back({inputs, repeated(c.outputs.size(), P)});
  return signatures;
}

// A shard's instance of an op whose attribute `shape` is its output's shape.
inline void localize_shape(const LocalizeContext& c, Attributes& attrs) {
  attrs.set("shape", c.local_outputs[0].shape.dims());
}

}  // namespace tessel::op_helpers
