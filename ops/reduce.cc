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

}  // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdims, Where where) {
  return op_helpers::call("sum", {x}, {{"axes", axes}, {"keepdims", keepdims}}, where);
}
Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdims, Where where) {
  return op_helpers::call("mean", {x}, {{"axes", axes}, {"keepdims", keepdims}}, where);
}

}  // namespace tessel
