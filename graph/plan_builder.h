// Private to graph/: the pieces compile_plan() is made of.
#pragma once

#include <cstdint>
#include <vector>

#include "proto/plan.pb.h"

namespace tessel::plan_builder {

// Which actors each actor reaches along the edges that order one step (data edges and
// control edges without initial tokens). Edges always go from an earlier schedule position
// to a later one.
class Reachability {
 public:
  explicit Reachability(int actors);
  void add_edge(int from, int to);  // keeps the relation transitively closed
  bool reaches(int from, int to) const;

 private:
  int words_;
  std::vector<std::vector<uint64_t>> reach_;
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
// rank, so lifetimes and edges may span devices. `reach` holds the data edges and earlier
// control edges, and gains the within-step edges added here.
std::vector<ControlEdge> lay_out_memory(proto::DevicePlan& actors, const std::vector<int>& device_of, int device,
                                        Reachability& reach, ArenaSize& size);

// Adds `edges` to the actors as control outputs (one per initial-token count) and control inputs.
void add_control_edges(proto::DevicePlan& device, const std::vector<ControlEdge>& edges);

constexpr int64_t kAlignment = 64;
inline int64_t aligned(int64_t bytes) {
  return (std::max<int64_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
}

}  // namespace tessel::plan_builder
