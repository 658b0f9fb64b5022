#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

std::vector<TensorType> infer_softmax(const InferContext& c) {
  require_floating(c.inputs[0], "the input");
  axis_of(c.inputs[0].shape, c.attrs.get_int("axis"));
  return {c.inputs[0]};
}

// softmax_grad(y, dy) = y * (dy - sum(dy * y)); log_softmax_grad(y, dy) = dy - exp(y) * sum(dy).
TESSEL_OP("softmax").inputs(1).infers(infer_softmax).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, c.graph().apply1("softmax_grad", {c.output(), c.output_gradient()}, c.attrs()));
});
TESSEL_OP("softmax_grad").inputs(2).infers(same_as_first);
TESSEL_OP("log_softmax").inputs(1).infers(infer_softmax).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, c.graph().apply1("log_softmax_grad", {c.output(), c.output_gradient()}, c.attrs()));
});
TESSEL_OP("log_softmax_grad").inputs(2).infers(same_as_first);

Shape loss_shape(const Shape& labels, const std::string& reduction) { return reduction == "none" ? labels : Shape{}; }

TESSEL_OP("cross_entropy")
    .inputs(2)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const TensorType& logits = c.inputs[0];
      const TensorType& labels = c.inputs[1];
      require_floating(logits, "logits");
      require_integer(labels, "labels");
      const Shape& ls = logits.shape;
      if (ls.rank() < 1 || labels.shape.rank() != ls.rank() - 1 ||
          !std::equal(labels.shape.begin(), labels.shape.end(), ls.begin())) {
        throw Error::ShapeMismatch(concat("logits ", ls, " and labels ", labels.shape,
                                          " do not fit (expected logits[..., C] and labels[...] with the same leading "
                                          "extents)"));
      }
      const std::string& reduction = c.attrs.get_string("reduction");
      if (reduction != "mean" && reduction != "sum" && reduction != "none") {
        throw Error::InvalidArgument(concat("unknown reduction '", reduction, "' (expected mean, sum or none)"));
      }
      return {{loss_shape(labels.shape, reduction), logits.dtype}};
    })
    .differentiates([](GradientContext& c) {
      c.set_input_gradient(
          0, c.graph().apply1("cross_entropy_grad", {c.input(0), c.input(1), c.output_gradient()}, c.attrs()));
    });
// (logits, labels, dy) -> d logits = (softmax(logits) - onehot(labels)) * dy [/ count for mean].
TESSEL_OP("cross_entropy_grad").inputs(3).infers(same_as_first);

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis, Where where) {
  return op_helpers::call("softmax", {x}, {{"axis", axis}}, where);
}
Tensor log_softmax(const Tensor& x, int64_t axis, Where where) {
  return op_helpers::call("log_softmax", {x}, {{"axis", axis}}, where);
}
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, Reduction reduction, Where where) {
  const char* name = reduction == Reduction::mean ? "mean" : reduction == Reduction::sum ? "sum" : "none";
  return op_helpers::call("cross_entropy", {logits, labels}, {{"reduction", std::string(name)}}, where);
}

}  // namespace tessel
