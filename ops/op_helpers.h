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

}  // namespace tessel::op_helpers
