// Tensors made in the graph: arange, triu and tril, causal masks and constants.
#include <bit>
#include <cmath>

#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

// The logical start of a shard's box along `axis`.
int64_t region_start(const LocalizeContext& c, int axis) {
  return c.output_regions.empty() ? 0 : c.output_regions[0].starts[axis];
}

TESSEL_OP("arange")
    .inputs(0)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      return {{c.attrs.get_shape("shape"), dtype_named(c.attrs.get_string("dtype"))}};
    })
    .sbp([](const SbpContext&) { return std::vector<SbpSignature>{{{}, {S(0)}}, {{}, {B}}}; })
    .localizes([](const LocalizeContext& c, Attributes& attrs) {
      // A shard counts on from its first logical index.
      attrs.set("start", attrs.get_int("start") + region_start(c, 0) * attrs.get_int("step"));
      localize_shape(c, attrs);
    });

// triu keeps the elements at or above diagonal k of the last two axes (column - row >= k) and
// zeroes the rest; tril keeps column - row <= k. Linear, so partial values pass.
void define_triangle(const char* name) {
  OpRegistry::global()
      .define(name)
      .inputs(1)
      .infers([](const InferContext& c) -> std::vector<TensorType> {
        if (c.inputs[0].shape.rank() < 2) {
          throw Error::ShapeMismatch(
              concat("the input has shape ", c.inputs[0].shape, " (expected at least two axes, [..., rows, columns])"));
        }
        return {c.inputs[0]};
      })
      .sbp([](const SbpContext& c) {
        return elementwise_sbp(c, is_floating(c.inputs[0].dtype) ? std::vector<std::vector<Sbp>>{{P}}
                                                                 : std::vector<std::vector<Sbp>>{});
      })
      .localizes([](const LocalizeContext& c, Attributes& attrs) {
        // A shard of rows or columns compares its logical row and column indices.
        const int rank = c.logical_outputs[0].shape.rank();
        attrs.set("row_offset", region_start(c, rank - 2));
        attrs.set("column_offset", region_start(c, rank - 1));
      })
      .differentiates([name](GradientContext& c) {
        c.set_input_gradient(0, c.graph().apply1(name, {c.output_gradient()}, c.attrs()));
      });
}

[[maybe_unused]] const bool triangles_defined = [] {
  define_triangle("triu");
  define_triangle("tril");
  return true;
}();

// A constant's elements are stored as integers: ints as themselves, bool as 0 or 1, floats as
// their bit patterns, so that they survive serialisation exactly.
std::vector<int64_t> encode(const HostTensor& value) {
  std::vector<int64_t> codes(value.numel());
  const void* p = value.raw();
  for (int64_t i = 0; i < value.numel(); ++i) {
    switch (value.dtype()) {
      case DType::f32:
        codes[i] = std::bit_cast<uint32_t>(static_cast<const float*>(p)[i]);
        break;
      case DType::f16:
      case DType::bf16:
        codes[i] = static_cast<const uint16_t*>(p)[i];
        break;
      case DType::i32:
        codes[i] = static_cast<const int32_t*>(p)[i];
        break;
      case DType::i64:
        codes[i] = static_cast<const int64_t*>(p)[i];
        break;
      case DType::boolean:
        codes[i] = static_cast<const bool*>(p)[i] ? 1 : 0;
        break;
    }
  }
  return codes;
}

// The codes of the elements of `region` of a tensor of `shape`, in row-major order.
std::vector<int64_t> codes_in(const std::vector<int64_t>& codes, const Shape& shape, const Region& region) {
  std::vector<int64_t> result;
  result.reserve(region.numel());
  const int rank = shape.rank();
  if (region.numel() == 0) return result;
  const std::vector<int64_t> strides = shape.strides();
  std::vector<int64_t> index(rank, 0);
  for (int64_t n = 0; n < region.numel(); ++n) {
    int64_t offset = 0;
    for (int a = 0; a < rank; ++a) offset += (region.starts[a] + index[a]) * strides[a];
    result.push_back(codes[offset]);
    for (int a = rank - 1; a >= 0; --a) {
      if (++index[a] < region.extents[a]) break;
      index[a] = 0;
    }
  }
  return result;
}

TESSEL_OP("constant")
    .inputs(0)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const Shape shape = c.attrs.get_shape("shape");
      const int64_t count = static_cast<int64_t>(c.attrs.get_ints("values").size());
      if (count != shape.numel()) {
        throw Error::InvalidArgument(
            concat("a constant of shape ", shape, " holds ", shape.numel(), " elements, but ", count, " are stored"));
      }
      return {{shape, dtype_named(c.attrs.get_string("dtype"))}};
    })
    .sbp([](const SbpContext& c) { return elementwise_sbp(c); })
    .localizes([](const LocalizeContext& c, Attributes& attrs) {
      if (c.output_regions.empty()) return;
      attrs.set("values", codes_in(attrs.get_ints("values"), c.logical_outputs[0].shape, c.output_regions[0]));
      localize_shape(c, attrs);
    });

}  // namespace

Tensor arange(Graph& graph, int64_t start, int64_t end, int64_t step, DType dtype, Where where) {
  if (step == 0 || (end - start) / step < 0) {
    throw Error::InvalidArgument(concat("arange(", start, ", ", end, ", ", step, ") at ", to_string(where),
                                        ": expected a nonzero step that goes from start towards end"));
  }
  const int64_t count = (end - start + step - (step > 0 ? 1 : -1)) / step;
  if (!is_floating(dtype) && !is_integer(dtype)) {
    throw Error::InvalidArgument(concat("arange at ", to_string(where), ": dtype ", dtype,
                                        " is not a number type (expected f32, i32 or i64)"));
  }
  return graph.apply1("arange", {},
                      {{"shape", std::vector<int64_t>{count}},
                       {"start", start},
                       {"step", step},
                       {"dtype", std::string(name_of(dtype))}},
                      where);
}

Tensor triu(const Tensor& x, int64_t diagonal, Where where) {
  return op_helpers::call("triu", {x}, {{"diagonal", diagonal}}, where);
}
Tensor tril(const Tensor& x, int64_t diagonal, Where where) {
  return op_helpers::call("tril", {x}, {{"diagonal", diagonal}}, where);
}

Tensor causal_mask(Graph& graph, int64_t length, Where where) {
  // Position i may attend to j <= i: the lower triangle of a [length, length] matrix of trues.
  const Tensor positions = arange(graph, 0, length, 1, DType::i64, where);
  return less_equal(reshape(positions, {1, length}, where), reshape(positions, {length, 1}, where), where);
}

Tensor constant(Graph& graph, const HostTensor& value, Where where) {
  if (value.numel() > (int64_t{1} << 24)) {
    throw Error::InvalidArgument(concat("constant at ", to_string(where), ": ", value.numel(),
                                        " elements is too many to store in the graph (expected at most 2^24; feed a "
                                        "tensor that large as an input instead)"));
  }
  return graph.apply1("constant", {},
                      {{"shape", value.shape().dims()},
                       {"values", encode(value)},
                       {"dtype", std::string(name_of(value.dtype()))}},
                      where);
}

}  // namespace tessel
