// SBP inference: a placement and an SBP for every tensor of a logical graph.
//
//   pin(w1, mesh, S(1));                      // the user pins a few tensors ...
//   SbpAssignment layouts = infer_sbp(g, mesh);  // ... the compiler chooses the rest
//   layouts.output(matmul_node).to_string();     // "S(1) on cpu:{0,1} mesh [2]"
//
// Nodes are visited in topological order. Each op takes, among its signatures (ops/registry.h)
// on each candidate placement, the one that minimises the bytes boxing must move to give its
// inputs the SBP the signature needs (sbp/boxing.h). Ties go to the signature that needs no
// boxing at all, then to one whose output keeps the layout of an input (a free B -> S slice
// now would cost an all-gather later), then to the op's first declared signature. The
// choice is greedy, op by op: a pin (to()) fixes a layout that only looking ahead would find. Candidate placements are
// those of its inputs (the default placement when none is known yet).
//
// Pins are never overridden: a pinned input or parameter (pin()) has exactly its layout, and
// the output of to() has exactly the layout it names; boxing converts around them. An
// unpinned leaf (input, parameter, or an op without inputs such as fill) takes the layout its
// first consumer asks for, at no cost. An optimizer update writes its variables in place, so
// it must take them as they are laid out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/graph.h"
#include "sbp/sbp.h"

namespace tessel {

struct NodeLayout {
  Placement placement;
  std::vector<NdSbp> inputs;   // the SBP (on `placement`) the chosen signature needs per input
  std::vector<NdSbp> outputs;  // the SBP of each output
};

struct SbpAssignment {
  std::vector<NodeLayout> nodes;  // by node id
  int64_t boxing_bytes = 0;       // per step, over every edge, by the boxing planner

  Layout output(TensorRef ref) const { return {nodes[ref.node].placement, nodes[ref.node].outputs[ref.output]}; }
  Layout input(int node, int index) const { return {nodes[node].placement, nodes[node].inputs[index]}; }
};

// Error::InvalidArgument naming the tensor for a pin that cannot hold its tensor (a split of
// a missing axis, a placement with no devices, a split leaving a device empty), and naming
// the op and its inputs' layouts when no signature fits (pins that contradict each other).
SbpAssignment infer_sbp(const Graph& graph, const Placement& default_placement);

// The pinned layout of a leaf or to() node, if it has one (attrs "placement", "sbp").
bool pinned_layout(const Node& node, const Placement& default_placement, Layout& layout);

}  // namespace tessel
