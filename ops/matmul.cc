#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

// a[..., m, k] @ b[..., k, n] with the transposes of `attrs`: the product's shape.
Shape matmul_shape(const TensorType& a, const TensorType& b, const Attributes& attrs) {
  require_same_dtype(a, b);
  if (a.shape.rank() < 2 || b.shape.rank() < 2) {
    throw Error::ShapeMismatch(concat("expected matrices (rank >= 2), got a ", a.shape, " and b ", b.shape));
  }
  const bool ta = attrs.get_bool("transpose_a", false);
  const bool tb = attrs.get_bool("transpose_b", false);
  const int ra = a.shape.rank(), rb = b.shape.rank();
  const int64_t m = ta ? a.shape[ra - 1] : a.shape[ra - 2];
  const int64_t ka = ta ? a.shape[ra - 2] : a.shape[ra - 1];
  const int64_t kb = tb ? b.shape[rb - 1] : b.shape[rb - 2];
  const int64_t n = tb ? b.shape[rb - 2] : b.shape[rb - 1];
  if (ka != kb) {
    throw Error::ShapeMismatch(concat("inner dimensions differ: a", ta ? "ᵀ" : "", " ", a.shape, " has k = ", ka,
                                      " but b", tb ? "ᵀ" : "", " ", b.shape, " has k = ", kb,
                                      " (expected a[..., m, k] @ b[..., k, n])"));
  }
  const std::vector<int64_t> batch_a(a.shape.begin(), a.shape.end() - 2);
  const std::vector<int64_t> batch_b(b.shape.begin(), b.shape.end() - 2);
  if (!batch_a.empty() && !batch_b.empty() && batch_a != batch_b) {
    throw Error::ShapeMismatch(concat("batch dimensions differ: a ", a.shape, ", b ", b.shape,
                                      " (expected equal batch dimensions, or one operand a plain matrix)"));
  }
  std::vector<int64_t> dims = batch_a.empty() ? batch_b : batch_a;
  dims.push_back(m);
  dims.push_back(n);
  return Shape(dims);
}

TESSEL_OP("matmul")
    .inputs(2)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      return {{matmul_shape(c.inputs[0], c.inputs[1], c.attrs), c.inputs[0].dtype}};
    })
    .sbp([](const SbpContext& c) {
      // a[..., m, k] @ b[..., k, n]: S(m) x B -> S(m), B x S(n) -> S(n), S(k) x S(k) -> P,
      // P x B -> P, B x P -> P, B x B -> B, and a shared batch axis split on both sides.
      const bool ta = c.attrs.get_bool("transpose_a", false);
      const bool tb = c.attrs.get_bool("transpose_b", false);
      const int ra = c.inputs[0].shape.rank(), rb = c.inputs[1].shape.rank(), ro = c.outputs[0].shape.rank();
      const int m = ta ? ra - 1 : ra - 2, ka = ta ? ra - 2 : ra - 1;
      const int kb = tb ? rb - 1 : rb - 2, n = tb ? rb - 2 : rb - 1;
      std::vector<SbpSignature> signatures{
          {{S(m), B}, {S(ro - 2)}},
          {{B, S(n)}, {S(ro - 1)}},
          {{S(ka), S(kb)}, {P}},
          {{P, B}, {P}},
          {{B, P}, {P}},
          {{B, B}, {B}},
      };
      for (int axis = 0; axis < ro - 2; ++axis) {
        signatures.push_back({{ra > 2 ? S(axis) : B, rb > 2 ? S(axis) : B}, {S(axis)}});
      }
      return signatures;
    })
    .differentiates([](GradientContext& c) {
      const bool ta = c.attrs().get_bool("transpose_a", false);
      const bool tb = c.attrs().get_bool("transpose_b", false);
      const Tensor a = c.input(0), b = c.input(1), dy = c.output_gradient();
      // With C = op(A) op(B): dA = dC op(B)ᵀ (or its transpose), dB = op(A)ᵀ dC (or its transpose).
      // A plain-matrix operand of a batched product gets the gradients of all batches summed.
      if (c.needs_gradient(0)) {
        Tensor da = ta ? matmul(b, dy, {.transpose_a = tb, .transpose_b = true})
                       : matmul(dy, b, {.transpose_a = false, .transpose_b = !tb});
        c.set_input_gradient(0, da.shape() == a.shape() ? da : sum_to(da, a.shape()));
      }
      if (c.needs_gradient(1) && b.shape().rank() == 2 && a.shape().rank() > 2 && !ta) {
        // Batches of rows times one matrix (x @ w in every model): all the rows are one tall
        // matrix, so the weight's gradient is a single product over them, not one per batch
        // summed after.
        const Tensor rows = reshape(a, {-1, a.shape()[a.shape().rank() - 1]});
        const Tensor drows = reshape(dy, {-1, dy.shape()[dy.shape().rank() - 1]});
        c.set_input_gradient(
            1, tb ? matmul(drows, rows, {.transpose_a = true}) : matmul(rows, drows, {.transpose_a = true}));
      } else if (c.needs_gradient(1)) {
        Tensor db = tb ? matmul(dy, a, {.transpose_a = true, .transpose_b = ta})
                       : matmul(a, dy, {.transpose_a = !ta, .transpose_b = false});
        c.set_input_gradient(1, db.shape() == b.shape() ? db : sum_to(db, b.shape()));
      }
    });

// The compiler's fusion of a matmul with what follows it on one device (graph/fuse.cc): the
// product, optionally cast to "dtype", plus an optional bias (input 2, one value per column),
// through an optional activation ("relu" or "gelu"). It exists only in plans, made after
// autograd and SBP inference, so it has no gradient or signatures of its own.
TESSEL_OP("fused_matmul").inputs(2, 3).infers([](const InferContext& c) -> std::vector<TensorType> {
  const Shape shape = matmul_shape(c.inputs[0], c.inputs[1], c.attrs);
  const DType dtype = c.attrs.has("dtype") ? dtype_named(c.attrs.get_string("dtype")) : c.inputs[0].dtype;
  const std::string activation = c.attrs.has("activation") ? c.attrs.get_string("activation") : "none";
  if (activation != "none" && activation != "relu" && activation != "gelu") {
    throw Error::InvalidArgument(
        concat("fused_matmul activation '", activation, "', expected \"none\", \"relu\" or \"gelu\""));
  }
  if (c.inputs.size() == 3) {
    const TensorType& bias = c.inputs[2];
    if (bias.dtype != dtype || bias.shape.rank() != 1 || bias.shape[0] != shape[shape.rank() - 1]) {
      throw Error::ShapeMismatch(concat("fused_matmul bias ", bias.shape, " ", bias.dtype, " does not fit its product ",
                                        shape, " ", dtype, ": expected one value per column, of the product's dtype"));
    }
  }
  return {{shape, dtype}};
});

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, MatmulOptions options, Where where) {
  return op_helpers::call("matmul", {a, b},
                          {{"transpose_a", options.transpose_a}, {"transpose_b", options.transpose_b}}, where);
}

}  // namespace tessel
