// layer_norm, embedding and dropout.
#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

TESSEL_OP("layer_norm")
    .inputs(3)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const TensorType& x = c.inputs[0];
      require_floating(x, "x");
      if (x.shape.rank() < 1) throw Error::ShapeMismatch("x must have at least one axis");
      const int64_t width = x.shape[x.shape.rank() - 1];
      for (int i = 1; i <= 2; ++i) {
        const TensorType& p = c.inputs[i];
        require_same_dtype(x, p);
        if (p.shape != Shape{width}) {
          throw Error::ShapeMismatch(concat(i == 1 ? "gamma " : "beta ", p.shape, " does not fit x ", x.shape,
                                            " (expected [", width, "], the extent of x's last axis)"));
        }
      }
      if (c.attrs.get_float("eps") <= 0) throw Error::InvalidArgument("eps must be positive");
      return {x};
    })
    .sbp([](const SbpContext& c) {
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis + 1 < c.inputs[0].shape.rank(); ++axis)
        signatures.push_back({{S(axis), B, B}, {S(axis)}});
      signatures.push_back({{B, B, B}, {B}});
      return signatures;
    })
    .differentiates([](GradientContext& c) {
      std::vector<Tensor> grads =
          c.graph().apply("layer_norm_grad", {c.input(0), c.input(1), c.output_gradient()}, c.attrs());
      for (int i = 0; i < 3; ++i) c.set_input_gradient(i, grads[i]);
    });
// (x, gamma, dy) -> (dx, dgamma, dbeta).
TESSEL_OP("layer_norm_grad")
    .inputs(3)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      return {c.inputs[0], c.inputs[1], c.inputs[1]};
    })
    .sbp([](const SbpContext& c) {
      // Row shards give their rows' dx and partial sums of dgamma and dbeta.
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis + 1 < c.inputs[0].shape.rank(); ++axis) {
        signatures.push_back({{S(axis), B, S(axis)}, {S(axis), P, P}});
      }
      signatures.push_back({{B, B, B}, {B, B, B}});
      return signatures;
    });

TESSEL_OP("embedding")
    .inputs(2)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const TensorType& table = c.inputs[0];
      const TensorType& indices = c.inputs[1];
      require_integer(indices, "indices");
      if (table.shape.rank() != 2) {
        throw Error::ShapeMismatch(concat("the table must be [num_embeddings, dim], got ", table.shape));
      }
      std::vector<int64_t> dims = indices.shape.dims();
      dims.push_back(table.shape[1]);
      return {{Shape(dims), table.dtype}};
    })
    .sbp([](const SbpContext& c) {
      // Split the indices, or the embedding dimension of the table; linear in the table.
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis < c.inputs[1].shape.rank(); ++axis) signatures.push_back({{B, S(axis)}, {S(axis)}});
      signatures.push_back({{S(1), B}, {S(c.outputs[0].shape.rank() - 1)}});
      signatures.push_back({{B, B}, {B}});
      signatures.push_back({{P, B}, {P}});
      return signatures;
    })
    .differentiates([](GradientContext& c) {
      Attributes attrs{{"num_embeddings", c.input(0).shape()[0]}};
      c.set_input_gradient(0, c.graph().apply1("embedding_grad", {c.output_gradient(), c.input(1)}, attrs));
    });
// (dy, indices) -> dtable[num_embeddings, dim], rows scatter-added.
TESSEL_OP("embedding_grad")
    .inputs(2)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const Shape& dy = c.inputs[0].shape;
      return {{Shape{c.attrs.get_int("num_embeddings"), dy[dy.rank() - 1]}, c.inputs[0].dtype}};
    })
    .sbp([](const SbpContext& c) {
      // Index shards scatter-add partial tables; a split embedding dimension stays split.
      const int last = c.inputs[0].shape.rank() - 1;
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis < last; ++axis) signatures.push_back({{S(axis), S(axis)}, {P}});
      signatures.push_back({{S(last), B}, {S(1)}});
      signatures.push_back({{B, B}, {B}});
      signatures.push_back({{P, B}, {P}});
      return signatures;
    });

std::vector<TensorType> infer_dropout(const InferContext& c) {
  require_floating(c.inputs[0], "the input");
  const double p = c.attrs.get_float("p");
  if (!(p >= 0 && p < 1)) throw Error::InvalidArgument(concat("p = ", p, " is not a probability in [0, 1)"));
  return {c.inputs[0]};
}
// The mask follows each element's logical index, so a row shard (S(0): a contiguous run of
// elements) offsets its draws; the op is linear in x.
std::vector<SbpSignature> dropout_sbp(const SbpContext&) { return {{{S(0)}, {S(0)}}, {{B}, {B}}, {{P}, {P}}}; }
void localize_dropout(const LocalizeContext& c, Attributes& attrs) {
  const Shape& shape = c.logical_outputs[0].shape;
  const std::vector<int64_t> strides = shape.strides();
  int64_t offset = 0;
  for (int axis = 0; axis < shape.rank(); ++axis) offset += c.output_regions[0].starts[axis] * strides[axis];
  attrs.set("element_offset", offset);
}

TESSEL_OP("dropout")
    .inputs(1)
    .infers(infer_dropout)
    .sbp(dropout_sbp)
    .localizes(localize_dropout)
    .differentiates([](GradientContext& c) {
      c.set_input_gradient(0, c.graph().apply1("dropout_grad", {c.output_gradient()}, c.attrs()));
    });
// (dy) -> dy with the forward's mask (the same seed, step and element give the same draw).
TESSEL_OP("dropout_grad").inputs(1).infers(infer_dropout).sbp(dropout_sbp).localizes(localize_dropout);

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Where where) {
  return op_helpers::call("layer_norm", {x, gamma, beta}, {{"eps", eps}}, where);
}
Tensor embedding(const Tensor& table, const Tensor& indices, Where where) {
  return op_helpers::call("embedding", {table, indices}, {}, where);
}
Tensor dropout(const Tensor& x, double p, int64_t seed, Where where) {
  return op_helpers::call("dropout", {x}, {{"p", p}, {"seed", seed}}, where);
}

}  // namespace tessel
