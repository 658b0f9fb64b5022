// Private to graph/: the pieces compile_plan() is made of.
#pragma once

#include <cstdint>
#include <vector>

#include "proto/plan.pb.h"

namespace tessel::plan_builder {

// The order of one step: the data edges and the control edges without initial tokens, each
// from an earlier schedule position to a later one, as successor lists (nothing dense over all
// actors). reaches() searches forward from `from`, never past `to`'s position, and gives up
// after a bounded number of actors: "false" means "not known to", so a caller that adds an
// edge when it is false may add one that was implied, never miss one that was needed.
class StepOrder {
 public:
  explicit StepOrder(int actors);
  void add_edge(int from, int to);
  bool reaches(int from, int to) const;

 private:
  std::vector<std::vector<int>> successors_;
  mutable std::vector<uint32_t> visited_;  // the query that last visited each actor
  mutable uint32_t query_ = 0;
  mutable std::vector<int> frontier_;
};

struct ControlEdge {
  int from = 0, to = 0;
  int initial_tokens = 0;  // 1: `to` at step k waits for `from` at step k-1
  auto operator<=>(const ControlEdge&) const = default;
};

struct ArenaSize {
  int64_t arena_bytes = 0;     // the arena with sharing
  int64_t register_bytes = 0;  // the sum of its registers (the arena without sharing)
};

// Lays out every non-variable register of the actors of `actors` on device `device`
// (device_of[actor]) in that device's arena: sets their offsets, fills `size`, and returns
// the control edges that make shared bytes safe. Actor ids are schedule positions across the
// rank, so lifetimes and edges may span devices. `order` holds the data edges and earlier
// control edges, and gains the within-step edges added here. Only consecutive owners of some
// bytes are ordered (and the last owner before the first of the next step): the rest follows.
std::vector<ControlEdge> lay_out_memory(proto::DevicePlan& actors, const std::vector<int>& device_of, int device,
                                        StepOrder& order, ArenaSize& size);

// Adds `edges` to the actors as control outputs (one per initial-token count) and control inputs.
void add_control_edges(proto::DevicePlan& device, const std::vector<ControlEdge>& edges);

constexpr int64_t kAlignment = 64;
inline int64_t aligned(int64_t bytes) {
  return (std::max<int64_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
}

}  // namespace tessel::plan_builder
