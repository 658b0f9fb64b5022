// The boxing planner: how a tensor laid out one way (placement, SBP) becomes laid out another
// way, as point-to-point pieces that the compiler turns into slice, copy and assemble actors
// (DESIGN.md, "SBP, in one table").
//
// A conversion on one placement goes one mesh axis at a time, and P -> B goes through a split
// (reduce-scatter, then all-gather), so the bytes moved meet the table: P->B 2T(n-1)/n,
// P->S and S->B T(n-1)/n, S(i)->S(j) T(n-1)/n^2 per device, B->S and B->P nothing. Between
// different placements every target device receives the overlap of its box with the source
// shards.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/registry.h"
#include "sbp/sbp.h"

namespace tessel {

// A box of one source shard that lands in a target shard (both in shard-local coordinates).
struct BoxingPiece {
  int source = 0;  // index in the stage's source placement
  std::vector<int64_t> source_starts{}, extents{}, target_starts{};
};

// What one target device computes in a stage: its shard assembled from pieces, reduced with
// `reduce` (partial_sum or partial_max) when the pieces are partial values, or a shard of
// zeros (`zeros`: a target that is not the keeper of a new P(sum)).
struct BoxingTarget {
  int target = 0;  // index in the stage's target placement
  bool zeros = false;
  bool reduce = false;  // the pieces are partial values to add (or max, per `partial`)
  Sbp::Kind partial = Sbp::Kind::partial_sum;
  std::vector<BoxingPiece> pieces{};
};

struct BoxingStage {
  Layout from, to;
  std::vector<BoxingTarget> targets{};
  int64_t bytes = 0;  // bytes that cross between different devices
};

struct BoxingPlan {
  std::vector<BoxingStage> stages{};  // none when the layouts are equal
  int64_t bytes = 0;                  // over all stages
};

// Plans the conversion of a tensor of `type` from `from` to `to`. Both layouts must hold the
// tensor (check_layout); Error::InvalidArgument when the source mixes P(sum) and P(max).
BoxingPlan plan_boxing(const TensorType& type, const Layout& from, const Layout& to);

// The bytes every device together must receive by DESIGN.md's table: the sum over the mesh
// axes that change of (bytes per device) x devices; between placements, the bytes of each
// target shard that its device does not hold already.
int64_t boxing_lower_bound(const TensorType& type, const Layout& from, const Layout& to);

}  // namespace tessel
