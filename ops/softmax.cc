#include <limits>

#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

std::vector<TensorType> infer_softmax(const InferContext& c) {
  require_floating(c.inputs[0], "the input");
  axis_of(c.inputs[0].shape, c.attrs.get_int("axis"));
  return {c.inputs[0]};
}

// Everything but the softmax axis may be split; the gradients are linear in dy.
std::vector<SbpSignature> softmax_sbp(const SbpContext& c) {
  return along_axis_sbp(c, axis_of(c.inputs[0].shape, c.attrs.get_int("axis")));
}
std::vector<SbpSignature> softmax_grad_sbp(const SbpContext& c) {
  return along_axis_sbp(c, axis_of(c.inputs[0].shape, c.attrs.get_int("axis")), {{B, P}});
}

// softmax_grad(y, dy) = y * (dy - sum(dy * y)); log_softmax_grad(y, dy) = dy - exp(y) * sum(dy).
TESSEL_OP("softmax").inputs(1).infers(infer_softmax).sbp(softmax_sbp).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, c.graph().apply1("softmax_grad", {c.output(), c.output_gradient()}, c.attrs()));
});
TESSEL_OP("softmax_grad").inputs(2).infers(same_as_first).sbp(softmax_grad_sbp);
TESSEL_OP("log_softmax").inputs(1).infers(infer_softmax).sbp(softmax_sbp).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, c.graph().apply1("log_softmax_grad", {c.output(), c.output_gradient()}, c.attrs()));
});
TESSEL_OP("log_softmax_grad").inputs(2).infers(same_as_first).sbp(softmax_grad_sbp);

// A shard of a mean divides by the logical number of rows.
void localize_row_count(const LocalizeContext& c, Attributes& attrs) {
  if (attrs.get_string("reduction") == "mean") attrs.set("divisor", c.logical_inputs[1].shape.numel());
}

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
    .sbp([](const SbpContext& c) {
      // Rows split with their labels: per-row losses stay split, a mean or sum becomes partial.
      const bool reduced = c.attrs.get_string("reduction") != "none";
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis < c.inputs[1].shape.rank(); ++axis) {
        signatures.push_back({{S(axis), S(axis)}, {reduced ? P : S(axis)}});
      }
      signatures.push_back({{B, B}, {B}});
      return signatures;
    })
    .localizes(localize_row_count)
    .differentiates([](GradientContext& c) {
      c.set_input_gradient(
          0, c.graph().apply1("cross_entropy_grad", {c.input(0), c.input(1), c.output_gradient()}, c.attrs()));
    });
// (logits, labels, dy) -> d logits = (softmax(logits) - onehot(labels)) * dy [/ count for mean].
TESSEL_OP("cross_entropy_grad")
    .inputs(3)
    .infers(same_as_first)
    .sbp([](const SbpContext& c) {
      const bool reduced = c.attrs.get_string("reduction") != "none";
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis < c.inputs[1].shape.rank(); ++axis) {
        signatures.push_back({{S(axis), S(axis), reduced ? B : S(axis)}, {S(axis)}});
      }
      signatures.push_back({{B, B, B}, {B}});
      signatures.push_back({{B, B, P}, {P}});
      return signatures;
    })
    .localizes(localize_row_count);

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis, Where where) {
  return op_helpers::call("softmax", {x}, {{"axis", axis}}, where);
}
Tensor log_softmax(const Tensor& x, int64_t axis, Where where) {
  return op_helpers::call("log_softmax", {x}, {{"axis", axis}}, where);
}
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, Reduction reduction, Where where) {
  return cross_entropy(logits, labels, CrossEntropyOptions{.reduction = reduction}, where);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, const CrossEntropyOptions& options, Where where) {
  if (!(options.label_smoothing >= 0 && options.label_smoothing <= 1)) {
    throw Error::InvalidArgument(concat("cross_entropy at ", to_string(where), ": label_smoothing is ",
                                        options.label_smoothing, " (expected a number in [0, 1])"));
  }
  const Reduction reduction = options.reduction;
  Attributes attrs;
  if (options.label_smoothing != 0) attrs.set("label_smoothing", options.label_smoothing);
  if (options.ignore_index) attrs.set("ignore_index", *options.ignore_index);
  if (!options.ignore_index || reduction != Reduction::mean) {
    const char* name = reduction == Reduction::mean ? "mean" : reduction == Reduction::sum ? "sum" : "none";
    attrs.set("reduction", std::string(name));
    return op_helpers::call("cross_entropy", {logits, labels}, std::move(attrs), where);
  }
  // A mean over the labels that count: how many there are depends on the data, so it is
  // computed in the graph, where it splits with the labels. All ignored gives 0 (torch: NaN).
  attrs.set("reduction", std::string("sum"));
  const Tensor total = op_helpers::call("cross_entropy", {logits, labels}, std::move(attrs), where);
  Graph& graph = labels.graph();
  const Tensor ignored = fill(graph, {}, static_cast<double>(*options.ignore_index), labels.dtype(), where);
  const Tensor counted = sum(cast(not_equal(labels, ignored, where), logits.dtype(), where), {}, false, where);
  return div(total, clamp(counted, 1, std::numeric_limits<double>::infinity(), where), where);
}

}  // namespace tessel
