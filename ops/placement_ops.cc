// Ops that move a tensor between layouts: `to` (the user's pin of an intermediate tensor) and
// the pieces the boxing planner lowers conversions into (`copy`, `boxing_assemble`).
#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

// The identity on values; its output has the layout in attrs `placement` and `sbp`, and
// inference inserts the boxing that converts its input. Its gradient needs no layout: the
// compiler chooses one for it like for any other tensor.
TESSEL_OP("to").inputs(1).infers(same_as_first).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, c.output_gradient());
});

// A physical op: the same bytes on another device (one point-to-point transfer).
TESSEL_OP("copy").inputs(1).infers(same_as_first);

// A physical op: output of attr `shape`, assembled from its inputs (pieces), piece i placed at
// offsets[i * rank .. (i + 1) * rank). With `reduce` "none" the pieces tile the output; with
// "sum" or "max" the output starts at 0 or the lowest value and every piece is added or
// max-ed into its box (the reduction of partial values).
TESSEL_OP("boxing_assemble").inputs(1, -1).infers([](const InferContext& c) -> std::vector<TensorType> {
  const Shape shape = c.attrs.get_shape("shape");
  const std::vector<int64_t>& offsets = c.attrs.get_ints("offsets");
  const std::string& reduce = c.attrs.get_string("reduce");
  if (reduce != "none" && reduce != "sum" && reduce != "max") {
    throw Error::InvalidArgument(concat("unknown reduce '", reduce, "' (expected none, sum or max)"));
  }
  if (offsets.size() != c.inputs.size() * static_cast<size_t>(shape.rank())) {
    throw Error::InvalidArgument(concat(offsets.size(), " offsets for ", c.inputs.size(), " pieces of rank ",
                                        shape.rank(), " (expected one per axis per piece)"));
  }
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    require_same_dtype(c.inputs[0], c.inputs[i]);
    const Shape& piece = c.inputs[i].shape;
    bool fits = piece.rank() == shape.rank();
    for (int a = 0; fits && a < shape.rank(); ++a) {
      const int64_t start = offsets[i * shape.rank() + a];
      fits = start >= 0 && start + piece[a] <= shape[a];
    }
    if (!fits) throw Error::ShapeMismatch(concat("piece ", i, " ", piece, " does not fit in ", shape));
  }
  return {{shape, c.inputs[0].dtype}};
});

}  // namespace

Tensor to(const Tensor& x, const Placement& placement, const NdSbp& sbp, Where where) {
  placement.validate();
  check_layout(x.shape(), {placement, sbp}, x.name());
  return op_helpers::call("to", {x}, {{"placement", placement.to_string()}, {"sbp", sbp.to_string()}}, where);
}

Tensor to(const Tensor& x, const NdSbp& sbp, Where where) {
  return op_helpers::call("to", {x}, {{"sbp", sbp.to_string()}}, where);
}

void pin(const Tensor& leaf, const Placement& placement, const NdSbp& sbp) {
  placement.validate();
  check_layout(leaf.shape(), {placement, sbp}, leaf.name());
  Node& node = leaf.graph().mutable_node(leaf.node());
  if (node.op != "input" && node.op != "variable") {
    throw Error::InvalidArgument(concat("pin('", node.name, "'): pin() sets the layout of an input or parameter, but '",
                                        node.name, "' is made by ", node.op, " (at ", node.location,
                                        "); use to(tensor, placement, sbp) for an intermediate tensor"));
  }
  if (sbp.has_partial()) {
    throw Error::InvalidArgument(concat("pin('", node.name, "'): ", sbp.to_string(), " holds partial values, which ",
                                        node.op, " '", node.name, "' cannot start from (expected S(axis) or B)"));
  }
  const Layout wanted{placement, sbp};
  if (node.attrs.has("sbp")) {  // a graph file may pin an SBP alone, on the default placement
    const Layout before{node.attrs.has("placement") ? Placement::parse(node.attrs.get_string("placement")) : placement,
                        NdSbp::parse(node.attrs.get_string("sbp"))};
    if (before != wanted) {
      throw Error::InvalidArgument(concat("pin('", node.name, "'): pins contradict each other: '", node.name,
                                          "' is already pinned to ", before.to_string(), ", and now to ",
                                          wanted.to_string()));
    }
  }
  node.attrs.set("placement", placement.to_string());
  node.attrs.set("sbp", sbp.to_string());
}

}  // namespace tessel
