#include <algorithm>

#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

// The reduced axes, sorted and unique; all axes when `axes` is empty.
std::vector<int> reduced_axes(const Shape& shape, const std::vector<int64_t>& axes) {
  std::vector<int> result;
  if (axes.empty()) {
    for (int i = 0; i < shape.rank(); ++i) result.push_back(i);
    return result;
  }
  for (int64_t axis : axes) result.push_back(axis_of(shape, axis));
  std::sort(result.begin(), result.end());
  if (std::adjacent_find(result.begin(), result.end()) != result.end()) {
    throw Error::InvalidArgument(concat("axes ", Shape(axes), " name the same axis twice"));
  }
  return result;
}

Shape keepdims_shape(const Shape& shape, const std::vector<int64_t>& axes) {
  std::vector<int64_t> dims = shape.dims();
  for (int axis : reduced_axes(shape, axes)) dims[axis] = 1;
  return Shape(dims);
}

std::vector<TensorType> infer_reduction(const InferContext& c) {
  const Shape& shape = c.inputs[0].shape;
  const std::vector<int64_t>& axes = c.attrs.get_ints("axes");
  const std::vector<int> reduced = reduced_axes(shape, axes);
  std::vector<int64_t> dims;
  for (int i = 0; i < shape.rank(); ++i) {
    const bool is_reduced = std::binary_search(reduced.begin(), reduced.end(), i);
    if (!is_reduced)
      dims.push_back(shape[i]);
    else if (c.attrs.get_bool("keepdims"))
      dims.push_back(1);
  }
  return {{Shape(dims), c.inputs[0].dtype}};
}

// Gradient of a sum or mean: the output gradient spread back over the reduced axes.
Tensor spread_back(GradientContext& c) {
  const Shape& x_shape = c.input(0).shape();
  const Shape kept = keepdims_shape(x_shape, c.attrs().get_ints("axes"));
  Tensor dy = c.output_gradient();
  if (dy.shape() != kept) dy = reshape(dy, kept);
  return broadcast_to(dy, x_shape);
}

int64_t reduced_count(const Shape& shape, const std::vector<int64_t>& axes) {
  return shape.numel() / std::max<int64_t>(1, keepdims_shape(shape, axes).numel());
}

// A split of a reduced axis leaves partial sums; kept axes stay split. Both are linear.
std::vector<SbpSignature> reduction_sbp(const SbpContext& c) {
  const Shape& shape = c.inputs[0].shape;
  const std::vector<int> reduced = reduced_axes(shape, c.attrs.get_ints("axes"));
  const bool keepdims = c.attrs.get_bool("keepdims");
  std::vector<SbpSignature> signatures;
  int kept = 0;
  for (int axis = 0; axis < shape.rank(); ++axis) {
    const bool is_reduced = std::binary_search(reduced.begin(), reduced.end(), axis);
    signatures.push_back({{S(axis)}, {is_reduced ? P : S(kept)}});
    if (!is_reduced || keepdims) ++kept;
  }
  signatures.push_back({{B}, {B}});
  signatures.push_back({{P}, {P}});
  return signatures;
}

TESSEL_OP("sum").inputs(1).infers(infer_reduction).sbp(reduction_sbp).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, spread_back(c));
});
TESSEL_OP("mean")
    .inputs(1)
    .infers(infer_reduction)
    .sbp(reduction_sbp)
    .localizes([](const LocalizeContext& c, Attributes& attrs) {
      // A shard divides by the logical count, so the shards' partial means add up to the mean.
      attrs.set("divisor",
                c.logical_inputs[0].shape.numel() / std::max<int64_t>(1, c.logical_outputs[0].shape.numel()));
    })
    .differentiates([](GradientContext& c) {
      const int64_t count = reduced_count(c.input(0).shape(), c.attrs().get_ints("axes"));
      c.set_input_gradient(0, scale(spread_back(c), 1.0 / static_cast<double>(count)));
    });

// max and min: a split of a kept axis stays split. A split of a reduced axis leaves each
// device the maximum of its part, a partial max P(max); min has no partial form.
std::vector<SbpSignature> extremum_sbp(const SbpContext& c, bool is_max) {
  std::vector<SbpSignature> signatures;
  for (const SbpSignature& s : reduction_sbp(c)) {
    if (s.outputs[0] == P) {
      if (!s.inputs[0].is_split() || !is_max) continue;
      signatures.push_back({s.inputs, {Sbp::partial_max()}});
    } else {
      signatures.push_back(s);
    }
  }
  if (is_max) signatures.push_back({{Sbp::partial_max()}, {Sbp::partial_max()}});
  return signatures;
}

// The gradient of max or min goes to the elements equal to the result, shared among ties
// (as torch.amax): dx = dy * (x == y) / count(x == y).
void extremum_gradient(GradientContext& c) {
  const Shape& x_shape = c.input(0).shape();
  const Shape kept = keepdims_shape(x_shape, c.attrs().get_ints("axes"));
  const DType dtype = c.input(0).dtype();
  Tensor y = stop_gradient(c.output());
  if (y.shape() != kept) y = reshape(y, kept);
  const Tensor hits = cast(equal(c.input(0), y), dtype);
  const Tensor share = hits / sum(hits, c.attrs().get_ints("axes"), /*keepdims=*/true);
  c.set_input_gradient(0, spread_back(c) * share);
}

std::vector<TensorType> infer_extremum(const InferContext& c) {
  if (c.inputs[0].dtype == DType::boolean) {
    throw Error::ShapeMismatch("the input is bool (expected a number type: f32, f16, bf16, i32 or i64)");
  }
  if (c.inputs[0].shape.numel() == 0) {
    throw Error::ShapeMismatch(concat("the input ", c.inputs[0].shape, " is empty, and has no maximum or minimum"));
  }
  return infer_reduction(c);
}

TESSEL_OP("max")
    .inputs(1)
    .infers(infer_extremum)
    .sbp([](const SbpContext& c) { return extremum_sbp(c, true); })
    .differentiates(extremum_gradient);
TESSEL_OP("min")
    .inputs(1)
    .infers(infer_extremum)
    .sbp([](const SbpContext& c) { return extremum_sbp(c, false); })
    .differentiates(extremum_gradient);

// argmax over one axis: the first index of the largest element, as i64.
TESSEL_OP("argmax")
    .inputs(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const Shape& shape = c.inputs[0].shape;
      const int axis = axis_of(shape, c.attrs.get_int("axis"));
      if (shape[axis] == 0) throw Error::ShapeMismatch(concat("axis ", axis, " of ", shape, " is empty"));
      std::vector<int64_t> dims;
      for (int i = 0; i < shape.rank(); ++i) {
        if (i != axis)
          dims.push_back(shape[i]);
        else if (c.attrs.get_bool("keepdims"))
          dims.push_back(1);
      }
      return {{Shape(dims), DType::i64}};
    })
    .sbp([](const SbpContext& c) {
      const int axis = axis_of(c.inputs[0].shape, c.attrs.get_int("axis"));
      const bool keepdims = c.attrs.get_bool("keepdims");
      std::vector<SbpSignature> signatures;
      for (int i = 0; i < c.inputs[0].shape.rank(); ++i) {
        if (i != axis) signatures.push_back({{S(i)}, {S(keepdims || i < axis ? i : i - 1)}});
      }
      signatures.push_back({{B}, {B}});
      return signatures;
    });

}  // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdims, Where where) {
  return op_helpers::call("sum", {x}, {{"axes", axes}, {"keepdims", keepdims}}, where);
}
Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdims, Where where) {
  return op_helpers::call("mean", {x}, {{"axes", axes}, {"keepdims", keepdims}}, where);
}

}  // namespace tessel

namespace tessel {
Tensor max(const Tensor& x, std::vector<int64_t> axes, bool keepdims, Where where) {
  return op_helpers::call("max", {x}, {{"axes", axes}, {"keepdims", keepdims}}, where);
}
Tensor min(const Tensor& x, std::vector<int64_t> axes, bool keepdims, Where where) {
  return op_helpers::call("min", {x}, {{"axes", axes}, {"keepdims", keepdims}}, where);
}
Tensor argmax(const Tensor& x, int64_t axis, bool keepdims, Where where) {
  return op_helpers::call("argmax", {x}, {{"axis", axis}, {"keepdims", keepdims}}, where);
}
}  // namespace tessel
