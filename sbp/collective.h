// Conversions on one placement that collectives do (DESIGN.md, "SBP, in one table"): one mesh
// axis at a time, P -> B is an all-reduce, P -> S a reduce-scatter, S -> B an all-gather and
// S(i) -> S(j) an all-to-all over each group of devices along that axis. B -> S and B -> P need
// no bytes (a local slice, or zeros); anything else is not a collective and goes through the
// boxing planner's point-to-point pieces (sbp/boxing.h).
//
//   std::vector<CollectiveStep> steps = collective_path(shape, {mesh, {P, S(0)}}, {mesh, {B, S(0)}});
//   // one step: an all_reduce along mesh axis 0, each group holding a row block
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sbp/sbp.h"

namespace tessel {

enum class CollectiveKind { all_reduce, reduce_scatter, all_gather, all_to_all };
std::string name_of(CollectiveKind kind);  // "all_reduce", ...
std::optional<CollectiveKind> parse_collective(const std::string& name);

// One change of one mesh axis, `from` and `to` differing there only.
struct CollectiveStep {
  Layout from, to;
  int mesh_axis = 0;
  bool local = false;  // B -> S or B -> P: no bytes move, the boxing planner's slice or zeros do it
  CollectiveKind kind = CollectiveKind::all_reduce;  // when not local
};

// The steps of a conversion between two layouts of one placement, each a collective or local,
// or nullopt when that is not possible: another placement, a mesh axis whose change is none of
// the four (S -> P, P(sum) <-> P(max)), or a split whose groups would not each cover one box
// (a later mesh axis splitting the same tensor axis). Both layouts must hold the shape.
std::optional<std::vector<CollectiveStep>> collective_path(const Shape& shape, const Layout& from, const Layout& to);

// What one group of a collective step sees: the members' global devices in order along the
// mesh axis, the box of the logical tensor the group covers, and the tensor axis its input
// and output are split along among the members (-1: every member holds the whole box).
struct CollectiveGroup {
  std::vector<int> devices;
  Region box;
  int from_axis = -1, to_axis = -1;
  int member = 0;  // the position of the device asked about
};
// The group of placement device `index` in `step`.
CollectiveGroup collective_group(const Shape& shape, const CollectiveStep& step, int index);
// Its index among the step's groups, in placement order of their first devices.
int collective_group_index(const CollectiveStep& step, int index);

// The bytes a collective step moves between devices, over every device: exact, with uneven
// splits (O(devices)).
int64_t collective_bytes(const Shape& shape, DType dtype, const CollectiveStep& step);

// The bytes DESIGN.md's table gives for a conversion on one placement that collective_path
// accepts, summed over the devices, without enumerating them (for SBP inference's costs).
int64_t collective_cost(const Shape& shape, DType dtype, const std::vector<CollectiveStep>& steps);

}  // namespace tessel
