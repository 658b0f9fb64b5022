// Conversions on one placement that lower to COLLECTIVE actors (sbp/collective.h), as small
// graphs with uneven extents: an input pinned to a layout, the tensor to convert made from it
// (the input itself, a sum over its split axes for P(sum), or to(P(max))), and to(target).
// Shared by the tests in one process (collective_plan_test.cc) and the program that is one rank
// of a real job (collective_job.cc), so it needs no gtest.
//
// Every rank checks its own copy of the result: each check tensor (the converted tensor and,
// where it is B somewhere, its local slices, which read every device's own copy) is brought to
// the first device of every rank and fetched there.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "sbp/sbp.h"

namespace tessel::testing {

enum class Source {
  input,         // the pinned input itself (S or B)
  sum_of_input,  // a sum over `summed_axes`, along which the input is split: P(sum)
  max_partial,   // to(input, P(max)): partial values whose largest is the input
};

struct CollectiveCase {
  std::string name;
  Placement placement;
  Shape input_shape;
  NdSbp input_sbp;
  Source source = Source::input;
  std::vector<int64_t> summed_axes{};
  NdSbp target;
  std::map<std::string, int> collectives{};  // COLLECTIVE actors of the plan, by op
};

// Every kind on Placement::cpu(devices), 1 to 6: P -> B (sum and max), P -> S (of an outer
// and an inner axis, which the actor packs), S -> B (unpacked for an inner axis) and
// S(i) -> S(j) (of rank 2 and 3). One collective actor per device, none on one device.
inline std::vector<CollectiveCase> one_axis_cases(int devices) {
  const Placement placement = Placement::cpu(devices);
  const int64_t columns = devices <= 5 ? 5 : 8;  // 7 rows and these split unevenly (but 5 over 5)
  const auto expect = [&](const std::string& op) {
    return devices > 1 ? std::map<std::string, int>{{op, devices}} : std::map<std::string, int>{};
  };
  const auto name = [&](const std::string& conversion) { return concat(conversion, " on ", devices, " devices"); };
  const Shape matrix{7, columns}, stacked{11, 7, columns}, cube{3, 7, columns};
  return {
      {name("P(sum) -> B"), placement, stacked, {S(0)}, Source::sum_of_input, {0}, {B}, expect("all_reduce")},
      {name("P(max) -> B"), placement, matrix, {S(0)}, Source::max_partial, {}, {B}, expect("all_reduce")},
      {name("P(sum) -> S(0)"), placement, stacked, {S(0)}, Source::sum_of_input, {0}, {S(0)}, expect("reduce_scatter")},
      {name("P(sum) -> S(1)"), placement, stacked, {S(0)}, Source::sum_of_input, {0}, {S(1)}, expect("reduce_scatter")},
      {name("P(max) -> S(1)"), placement, matrix, {B}, Source::max_partial, {}, {S(1)}, expect("reduce_scatter")},
      {name("S(0) -> B"), placement, matrix, {S(0)}, Source::input, {}, {B}, expect("all_gather")},
      {name("S(1) -> B"), placement, matrix, {S(1)}, Source::input, {}, {B}, expect("all_gather")},
      {name("S(0) -> S(1)"), placement, matrix, {S(0)}, Source::input, {}, {S(1)}, expect("all_to_all")},
      {name("S(1) -> S(0)"), placement, matrix, {S(1)}, Source::input, {}, {S(0)}, expect("all_to_all")},
      {name("S(2) -> S(1)"), placement, cube, {S(2)}, Source::input, {}, {S(1)}, expect("all_to_all")},
  };
}

// On a 2x2 mesh, one mesh axis at a time: along axis 0 (groups of devices {0, 2} and {1, 3})
// or axis 1 ({0, 1} and {2, 3}), each group within the box the other axis leaves it.
inline std::vector<CollectiveCase> mesh_cases() {
  const Placement mesh = Placement::cpu_mesh(2, 2);
  const auto name = [](const std::string& conversion) { return concat(conversion, " on a 2x2 mesh"); };
  return {
      {name("(P, S(0)) -> (B, S(0))"),
       mesh,
       Shape{11, 7, 5},
       {S(0), S(1)},
       Source::sum_of_input,
       {0},
       {B, S(0)},
       {{"all_reduce", 4}}},
      {name("(S(0), P) -> (S(0), S(1))"),
       mesh,
       Shape{7, 11, 5},
       {S(0), S(1)},
       Source::sum_of_input,
       {1},
       {S(0), S(1)},
       {{"reduce_scatter", 4}}},
      {name("(P, P) -> (B, B)"),
       mesh,
       Shape{6, 6, 7, 5},
       {S(0), S(1)},
       Source::sum_of_input,
       {0, 1},
       {B, B},
       {{"all_reduce", 8}}},
      {name("(S(0), S(1)) -> (S(0), B)"),
       mesh,
       Shape{7, 5},
       {S(0), S(1)},
       Source::input,
       {},
       {S(0), B},
       {{"all_gather", 4}}},
      {name("(S(0), S(1)) -> (B, S(1))"),
       mesh,
       Shape{7, 5},
       {S(0), S(1)},
       Source::input,
       {},
       {B, S(1)},
       {{"all_gather", 4}}},
      {name("(S(0), S(1)) -> (S(0), S(0))"),
       mesh,
       Shape{7, 5},
       {S(0), S(1)},
       Source::input,
       {},
       {S(0), S(0)},
       {{"all_to_all", 4}}},
      // Device (i, j) needs the block device (j, i) holds: a permutation, which the boxing
      // planner's pieces do, not a collective of one mesh axis.
      {name("(S(0), S(1)) -> (S(1), S(0))"), mesh, Shape{7, 5}, {S(0), S(1)}, Source::input, {}, {S(1), S(0)}, {}},
  };
}

struct CollectiveGraph {
  std::unique_ptr<Graph> graph = std::make_unique<Graph>();
  Tensor converted;
  std::vector<Tensor> checks;            // what every rank checks
  std::vector<Tensor> fetches;           // checks brought to the ranks' first devices: [rank * checks + check]
  std::vector<std::string> check_names;  // per check
  int ranks = 1;
};

inline CollectiveGraph build_collective_graph(const CollectiveCase& c, int ranks) {
  CollectiveGraph built;
  built.ranks = ranks;
  Graph& g = *built.graph;
  Tensor x = g.input("x", c.input_shape);
  pin(x, c.placement, c.input_sbp);
  Tensor source = x;
  if (c.source == Source::sum_of_input) source = sum(x, c.summed_axes);
  if (c.source == Source::max_partial) {
    source = to(x, NdSbp(std::vector<Sbp>(c.placement.mesh_rank(), Sbp::partial_max())));
  }
  built.converted = to(source, c.target);
  built.checks.push_back(built.converted);
  built.check_names.push_back(concat("the result, ", c.target.to_string()));
  // Where the result is B along a mesh axis, splitting it there slices each device's own copy.
  std::vector<Sbp> entries = c.target.sbps();
  if (std::count(entries.begin(), entries.end(), B) > 0) {
    for (int axis = 0; axis < built.converted.rank(); ++axis) {
      std::vector<Sbp> sliced = entries;
      std::replace(sliced.begin(), sliced.end(), B, S(axis));
      const NdSbp slices(sliced);
      if (!layout_fits(built.converted.shape(), {c.placement, slices})) continue;
      built.checks.push_back(to(built.converted, slices));
      built.check_names.push_back(concat("each device's copy sliced ", slices.to_string()));
    }
  }
  const int per_rank = c.placement.size() / ranks;
  for (int r = 0; r < ranks; ++r) {
    for (const Tensor& check : built.checks) {
      built.fetches.push_back(to(check, Placement::cpu_devices({c.placement.devices[r * per_rank]}), NdSbp({B})));
    }
  }
  return built;
}

// The feeds of step `step`: values in [-1, 1), every step different.
inline Feeds collective_feeds(const CollectiveCase& c, int64_t step) {
  HostTensor x(c.input_shape, DType::f32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = 2 * uniform_at(1000 + step, i) - 1;
  return {{"x", x}};
}

// The plan's COLLECTIVE actors over every rank, by op.
inline std::map<std::string, int> collectives_of(const proto::Plan& plan) {
  std::map<std::string, int> count;
  for (const proto::RankPlan& rank : plan.ranks()) {
    for (const proto::DevicePlan& device : rank.devices()) {
      for (const proto::ActorDef& actor : device.actors()) {
        if (actor.kind() == proto::COLLECTIVE) ++count[actor.op()];
      }
    }
  }
  return count;
}

inline std::string describe(const std::map<std::string, int>& count) {
  std::string text;
  for (const auto& [op, n] : count) text += concat(text.empty() ? "" : ", ", n, " ", op);
  return text.empty() ? "none" : text;
}

// "" when `actual` equals `expected`: exactly where the conversion only moves values, within
// 1e-5 relative to the tensor's largest value where it adds them in another order than one
// device does. Else what differs.
inline std::string difference(const CollectiveCase& c, const HostTensor& actual, const HostTensor& expected) {
  if (!actual.defined()) return "nothing was fetched";
  if (actual.shape() != expected.shape())
    return concat("the shape is ", actual.shape(), ", expected ", expected.shape());
  double scale = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) scale = std::max(scale, std::abs(expected.get(i)));
  const double tolerance = c.source == Source::sum_of_input ? 1e-5 * std::max(scale, 1.0) : 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    if (!(std::abs(actual.get(i) - expected.get(i)) <= tolerance)) {  // a NaN differs too
      return concat("element ", i, " is ", actual.get(i), ", expected ", expected.get(i));
    }
  }
  return "";
}

}  // namespace tessel::testing
