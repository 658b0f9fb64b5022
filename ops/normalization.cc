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
    .differentiates([](GradientContext& c) {
      std::vector<Tensor> grads =
          c.graph().apply("layer_norm_grad", {c.input(0), c.input(1), c.output_gradient()}, c.attrs());
      for (int i = 0; i < 3; ++i) c.set_input_gradient(i, grads[i]);
    });
// (x, gamma, dy) -> (dx, dgamma, dbeta).
TESSEL_OP("layer_norm_grad").inputs(3).infers([](const InferContext& c) -> std::vector<TensorType> {
  return {c.inputs[0], c.inputs[1], c.inputs[1]};
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
    .differentiates([](GradientContext& c) {
      Attributes attrs{{"num_embeddings", c.input(0).shape()[0]}};
      c.set_input_gradient(0, c.graph().apply1("embedding_grad", {c.output_gradient(), c.input(1)}, attrs));
    });
// (dy, indices) -> dtable[num_embeddings, dim], rows scatter-added.
TESSEL_OP("embedding_grad").inputs(2).infers([](const InferContext& c) -> std::vector<TensorType> {
  const Shape& dy = c.inputs[0].shape;
  return {{Shape{c.attrs.get_int("num_embeddings"), dy[dy.rank() - 1]}, c.inputs[0].dtype}};
});

std::vector<TensorType> infer_dropout(const InferContext& c) {
  require_floating(c.inputs[0], "the input");
  const double p = c.attrs.get_float("p");
  if (!(p >= 0 && p < 1)) throw Error::InvalidArgument(concat("p = ", p, " is not a probability in [0, 1)"));
  return {c.inputs[0]};
}
TESSEL_OP("dropout").inputs(1).infers(infer_dropout).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, c.graph().apply1("dropout_grad", {c.output_gradient()}, c.attrs()));
});
// (dy) -> dy with the forward's mask (the same seed, step and element give the same draw).
TESSEL_OP("dropout_grad").inputs(1).infers(infer_dropout);

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
