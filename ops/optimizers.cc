// Optimizer updates. They write parameters and optimizer state in place and have no outputs;
// a runtime runs them after every other op of the step.
#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

std::vector<TensorType> infer_update(const InferContext& c) {
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    if (c.inputs[i] != c.inputs[0]) {
      throw Error::ShapeMismatch(concat("input ", i, " has type ", c.inputs[i].shape, " ", c.inputs[i].dtype,
                                        " but the parameter has ", c.inputs[0].shape, " ", c.inputs[0].dtype));
    }
  }
  return {};
}

// A parameter and its gradient and state are updated shard by shard: all split alike, or all B.
std::vector<SbpSignature> update_sbp(const SbpContext& c) {
  std::vector<SbpSignature> signatures;
  for (int axis = 0; axis < c.inputs[0].shape.rank(); ++axis)
    signatures.push_back({repeated(c.inputs.size(), S(axis)), {}});
  signatures.push_back({repeated(c.inputs.size(), B), {}});
  return signatures;
}

// (param, gradient, [momentum], [gradient_accumulator]) per attrs has_momentum and
// accumulation_steps > 1.
TESSEL_OP("sgd_update").inputs(2, 4).infers(infer_update).sbp(update_sbp).mutates({0, 2, 3});
// (param, gradient, m, v, [gradient_accumulator]).
TESSEL_OP("adamw_update").inputs(4, 5).infers(infer_update).sbp(update_sbp).mutates({0, 2, 3, 4});

// Leaves: values come from feeds (input) or from the variable store (variable).
std::vector<TensorType> infer_leaf(const InferContext& c) {
  return {{c.attrs.get_shape("shape"), dtype_named(c.attrs.get_string("dtype"))}};
}
// A leaf may take any split or B: inputs are sliced from the feed, variables from their
// initial value.
std::vector<SbpSignature> leaf_sbp(const SbpContext& c) { return elementwise_sbp(c); }
TESSEL_OP("input").inputs(0).infers(infer_leaf).sbp(leaf_sbp);
TESSEL_OP("variable").inputs(0).infers(infer_leaf).sbp(leaf_sbp);

}  // namespace
}  // namespace tessel
