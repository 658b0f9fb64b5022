// reshape, transpose, concat and slice.
#include <algorithm>
#include <optional>

#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

// The elements of box `region` of `shape` as runs of consecutive row-major indices, adjacent
// runs merged; nullopt past `limit` runs.
std::optional<std::vector<std::pair<int64_t, int64_t>>> runs_of(const Shape& shape, const Region& region,
                                                                 size_t limit) {
  const int rank = shape.rank();
  std::vector<std::pair<int64_t, int64_t>> runs;
  if (region.numel() == 0) return runs;
  // Trailing axes the box covers whole join the run of the last axis it does not.
  int last = rank - 1;
  int64_t run = 1;
  while (last >= 0 && region.extents[last] == shape[last]) run *= shape[last--];
  if (last < 0) return std::vector<std::pair<int64_t, int64_t>>{{0, run}};
  run *= region.extents[last];
  const std::vector<int64_t> strides = shape.strides();
  std::vector<int64_t> index(last, 0);
  while (true) {
    int64_t start = region.starts[last] * strides[last];
    for (int a = 0; a < last; ++a) start += (region.starts[a] + index[a]) * strides[a];
    if (!runs.empty() && runs.back().first + runs.back().second == start) {
      runs.back().second += run;
    } else {
      if (runs.size() == limit) return std::nullopt;
      runs.push_back({start, run});
    }
    int a = last - 1;
    for (; a >= 0; --a) {
      if (++index[a] < region.extents[a]) break;
      index[a] = 0;
    }
    if (a < 0) return runs;
  }
}

// A reshape's shard is a reshape of the input's shard only when both boxes hold the same
// elements: the same runs of row-major indices.
bool reshape_keeps_blocks(const FitContext& c) {
  constexpr size_t kRunLimit = 1 << 16;  // beyond, the split is refused rather than checked
  const Shape& in = c.inputs[0].shape;
  const Shape& out = c.outputs[0].shape;
  for (int device = 0; device < c.placement.size(); ++device) {
    const Region from = shard_region(in, c.placement, c.input_sbps[0], device);
    const Region to = shard_region(out, c.placement, c.output_sbps[0], device);
    if (from.numel() != to.numel()) return false;
    const auto a = runs_of(in, from, kRunLimit);
    const auto b = runs_of(out, to, kRunLimit);
    if (!a || !b || *a != *b) return false;
  }
  return true;
}

TESSEL_OP("reshape")
    .inputs(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const Shape& from = c.inputs[0].shape;
      std::vector<int64_t> dims = c.attrs.get_ints("shape");
      int inferred = -1;
      int64_t known = 1;
      for (int i = 0; i < static_cast<int>(dims.size()); ++i) {
        if (dims[i] == -1) {
          if (inferred >= 0)
            throw Error::InvalidArgument(concat("target shape ", Shape(dims), " has more than one -1"));
          inferred = i;
        } else if (dims[i] < 0) {
          throw Error::InvalidArgument(concat("target shape ", Shape(dims), " has a negative extent"));
        } else {
          known *= dims[i];
        }
      }
      if (inferred >= 0 && known > 0 && from.numel() % known == 0) dims[inferred] = from.numel() / known;
      if (Shape(dims).numel() != from.numel() || (inferred >= 0 && dims[inferred] < 0)) {
        throw Error::ShapeMismatch(concat("cannot reshape ", from, " (", from.numel(), " elements) to ",
                                          Shape(c.attrs.get_ints("shape")), " (expected the same number of elements)"));
      }
      return {{Shape(dims), c.inputs[0].dtype}};
    })
    .sbp([](const SbpContext& c) {
      // Input axis i may stay split as output axis j when both begin at the same element
      // count: merging leading axes, or splitting one. Whether the shards then stay one block
      // depends on the devices: reshape_keeps_blocks decides.
      const Shape& in = c.inputs[0].shape;
      const Shape& out = c.outputs[0].shape;
      std::vector<SbpSignature> signatures;
      int64_t before_in = 1;
      for (int i = 0; i < in.rank(); before_in *= in[i], ++i) {
        int64_t before_out = 1;
        for (int j = 0; j < out.rank() && before_out <= before_in; before_out *= out[j], ++j) {
          if (before_out == before_in && in[i] > 1 && out[j] > 1) signatures.push_back({{S(i)}, {S(j)}});
        }
      }
      signatures.push_back({{B}, {B}});
      if (is_floating(c.inputs[0].dtype)) signatures.push_back({{P}, {P}});
      return signatures;
    })
    .fits_when(reshape_keeps_blocks)
    .localizes(localize_shape)
    .differentiates([](GradientContext& c) {
      c.set_input_gradient(0, reshape(c.output_gradient(), c.input(0).shape()));
    });

TESSEL_OP("transpose")
    .inputs(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const Shape& shape = c.inputs[0].shape;
      const std::vector<int64_t>& permutation = c.attrs.get_ints("permutation");
      std::vector<int64_t> sorted = permutation;
      std::sort(sorted.begin(), sorted.end());
      bool valid = static_cast<int>(permutation.size()) == shape.rank();
      for (int i = 0; valid && i < shape.rank(); ++i) valid = sorted[i] == i;
      if (!valid) {
        throw Error::InvalidArgument(concat("permutation ", Shape(permutation), " is not a permutation of the ",
                                            shape.rank(), " axes of ", shape));
      }
      std::vector<int64_t> dims;
      for (int64_t axis : permutation) dims.push_back(shape[static_cast<int>(axis)]);
      return {{Shape(dims), c.inputs[0].dtype}};
    })
    .sbp([](const SbpContext& c) {
      const std::vector<int64_t>& permutation = c.attrs.get_ints("permutation");
      std::vector<SbpSignature> signatures;
      for (size_t axis = 0; axis < permutation.size(); ++axis) {
        signatures.push_back({{S(static_cast<int>(permutation[axis]))}, {S(static_cast<int>(axis))}});
      }
      signatures.push_back({{B}, {B}});
      signatures.push_back({{P}, {P}});
      return signatures;
    })
    .differentiates([](GradientContext& c) {
      const std::vector<int64_t>& permutation = c.attrs().get_ints("permutation");
      std::vector<int64_t> inverse(permutation.size());
      for (size_t i = 0; i < permutation.size(); ++i) inverse[permutation[i]] = static_cast<int64_t>(i);
      c.set_input_gradient(0, transpose(c.output_gradient(), inverse));
    });

TESSEL_OP("concat")
    .inputs(1, -1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const TensorType& first = c.inputs[0];
      const int axis = axis_of(first.shape, c.attrs.get_int("axis"));
      std::vector<int64_t> dims = first.shape.dims();
      dims[axis] = 0;
      for (size_t i = 0; i < c.inputs.size(); ++i) {
        const TensorType& t = c.inputs[i];
        require_same_dtype(first, t);
        bool fits = t.shape.rank() == first.shape.rank();
        for (int d = 0; fits && d < t.shape.rank(); ++d) fits = d == axis || t.shape[d] == first.shape[d];
        if (!fits) {
          throw Error::ShapeMismatch(concat("input ", i, " has shape ", t.shape, " but input 0 has ", first.shape,
                                            " (expected equal extents on every axis but ", axis, ")"));
        }
        dims[axis] += t.shape[axis];
      }
      return {{Shape(dims), first.dtype}};
    })
    .sbp([](const SbpContext& c) {
      return along_axis_sbp(c, axis_of(c.inputs[0].shape, c.attrs.get_int("axis")), {repeated(c.inputs.size(), P)});
    })
    .differentiates([](GradientContext& c) {
      const Shape& out = c.output().shape();
      const int axis = *out.normalize_axis(c.attrs().get_int("axis"));
      int64_t offset = 0;
      for (int i = 0; i < c.num_inputs(); ++i) {
        const int64_t extent = c.input(i).shape()[axis];
        std::vector<int64_t> starts(out.rank(), 0), ends = out.dims();
        starts[axis] = offset;
        ends[axis] = offset + extent;
        if (c.needs_gradient(i)) c.set_input_gradient(i, slice(c.output_gradient(), starts, ends));
        offset += extent;
      }
    });

TESSEL_OP("slice")
    .inputs(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const Shape& shape = c.inputs[0].shape;
      const std::vector<int64_t>& starts = c.attrs.get_ints("starts");
      const std::vector<int64_t>& ends = c.attrs.get_ints("ends");
      if (static_cast<int>(starts.size()) != shape.rank() || static_cast<int>(ends.size()) != shape.rank()) {
        throw Error::InvalidArgument(concat("starts ", Shape(starts), " and ends ", Shape(ends), " must each have ",
                                            shape.rank(), " entries, one per axis of ", shape));
      }
      std::vector<int64_t> dims;
      for (int i = 0; i < shape.rank(); ++i) {
        if (starts[i] < 0 || starts[i] > ends[i] || ends[i] > shape[i]) {
          throw Error::InvalidArgument(concat("range [", starts[i], ", ", ends[i], ") of axis ", i,
                                              " lies outside [0, ", shape[i], ") of shape ", shape));
        }
        dims.push_back(ends[i] - starts[i]);
      }
      return {{Shape(dims), c.inputs[0].dtype}};
    })
    .sbp([](const SbpContext& c) {
      // An axis taken whole may stay split.
      const std::vector<int64_t>& starts = c.attrs.get_ints("starts");
      const std::vector<int64_t>& ends = c.attrs.get_ints("ends");
      const Shape& in = c.inputs[0].shape;
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis < in.rank(); ++axis) {
        if (starts[axis] == 0 && ends[axis] == in[axis]) signatures.push_back({{S(axis)}, {S(axis)}});
      }
      signatures.push_back({{B}, {B}});
      signatures.push_back({{P}, {P}});
      return signatures;
    })
    .localizes([](const LocalizeContext& c, Attributes& attrs) {
      std::vector<int64_t> ends = attrs.get_ints("ends");
      for (int axis = 0; axis < c.local_inputs[0].shape.rank(); ++axis) {
        if (c.local_inputs[0].shape[axis] != c.logical_inputs[0].shape[axis])
          ends[axis] = c.local_inputs[0].shape[axis];
      }
      attrs.set("ends", ends);
    })
    .differentiates([](GradientContext& c) {
      Attributes attrs = c.attrs();
      attrs.set("shape", c.input(0).shape().dims());
      c.set_input_gradient(0, c.graph().apply1("slice_grad", {c.output_gradient()}, attrs));
    });
// (dy) -> zeros of attr `shape` with dy written at `starts`.
TESSEL_OP("slice_grad")
    .inputs(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      return {{c.attrs.get_shape("shape"), c.inputs[0].dtype}};
    })
    .sbp([](const SbpContext& c) {
      const std::vector<int64_t>& starts = c.attrs.get_ints("starts");
      const Shape& dy = c.inputs[0].shape;
      const Shape& out = c.outputs[0].shape;
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis < out.rank(); ++axis) {
        if (starts[axis] == 0 && dy[axis] == out[axis]) signatures.push_back({{S(axis)}, {S(axis)}});
      }
      signatures.push_back({{B}, {B}});
      signatures.push_back({{P}, {P}});
      return signatures;
    })
    .localizes(localize_shape);

}  // namespace

Tensor reshape(const Tensor& x, Shape shape, Where where) {
  return op_helpers::call("reshape", {x}, {{"shape", shape.dims()}}, where);
}
Tensor transpose(const Tensor& x, std::vector<int64_t> permutation, Where where) {
  return op_helpers::call("transpose", {x}, {{"permutation", permutation}}, where);
}
Tensor concat(const std::vector<Tensor>& xs, int64_t axis, Where where) {
  return op_helpers::call("concat", xs, {{"axis", axis}}, where);
}
Tensor slice(const Tensor& x, std::vector<int64_t> starts, std::vector<int64_t> ends, Where where) {
  return op_helpers::call("slice", {x}, {{"starts", starts}, {"ends", ends}}, where);
}

}  // namespace tessel
