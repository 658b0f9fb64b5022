#include "sbp/collective.h"

#include <algorithm>

namespace tessel {
namespace {

// Whether a mesh axis after `axis` splits tensor axis `tensor_axis` in `sbp`: such a split
// applies inside the boxes the collective's members hold, so no group covers one box.
bool later_axis_splits(const NdSbp& sbp, int axis, int tensor_axis) {
  for (int j = axis + 1; j < sbp.size(); ++j) {
    if (sbp[j].is_split() && sbp[j].axis() == tensor_axis) return true;
  }
  return false;
}

// The one-axis change from `from` to `to` at mesh axis `axis`, if a collective or local step does it.
std::optional<CollectiveStep> step_of(const Shape& shape, const Layout& from, const Layout& to, int axis) {
  const Sbp& a = from.sbp[axis];
  const Sbp& b = to.sbp[axis];
  CollectiveStep step{.from = from, .to = to, .mesh_axis = axis};
  if (a.kind() == Sbp::Kind::broadcast) {
    step.local = true;  // B -> S slices, B -> P keeps one copy
  } else if (a.is_partial() && b.kind() == Sbp::Kind::broadcast) {
    step.kind = CollectiveKind::all_reduce;
  } else if (a.is_partial() && b.is_split()) {
    step.kind = CollectiveKind::reduce_scatter;
  } else if (a.is_split() && b.kind() == Sbp::Kind::broadcast) {
    step.kind = CollectiveKind::all_gather;
  } else if (a.is_split() && b.is_split()) {
    step.kind = CollectiveKind::all_to_all;
  } else {
    return std::nullopt;  // S -> P, P(sum) <-> P(max)
  }
  if (!step.local) {
    for (const Sbp& sbp : {a, b}) {
      if (sbp.is_split() &&
          (later_axis_splits(from.sbp, axis, sbp.axis()) || later_axis_splits(to.sbp, axis, sbp.axis())))
        return std::nullopt;
    }
  }
  if (!layout_fits(shape, to)) return std::nullopt;
  return step;
}

// Partial values of different reductions on several mesh axes have no one meaning to reduce.
bool mixes_partials(const NdSbp& sbp) {
  std::optional<Sbp::Kind> kind;
  for (const Sbp& s : sbp.sbps()) {
    if (!s.is_partial()) continue;
    if (kind && *kind != s.kind()) return true;
    kind = s.kind();
  }
  return false;
}

std::optional<std::vector<CollectiveStep>> path_in_order(const Shape& shape, const Layout& from, const Layout& to,
                                                         const std::vector<int>& axes) {
  std::vector<CollectiveStep> steps;
  Layout current = from;
  for (int axis : axes) {
    if (current.sbp[axis] == to.sbp[axis]) continue;
    const Layout next{current.placement, current.sbp.with(axis, to.sbp[axis])};
    if (current.placement.mesh[axis] == 1) {  // one device along it holds the same values either way
      current = next;
      continue;
    }
    std::optional<CollectiveStep> step = step_of(shape, current, next, axis);
    if (!step) return std::nullopt;
    steps.push_back(*step);
    current = next;
  }
  return steps;
}

// Product of the device counts of the mesh axes other than `axis` that split the tensor.
double split_elsewhere(const Placement& placement, const NdSbp& sbp, int axis) {
  double count = 1;
  for (int j = 0; j < sbp.size(); ++j) {
    if (j != axis && sbp[j].is_split()) count *= static_cast<double>(placement.mesh[j]);
  }
  return count;
}

}  // namespace

std::string name_of(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::all_reduce:
      return "all_reduce";
    case CollectiveKind::reduce_scatter:
      return "reduce_scatter";
    case CollectiveKind::all_gather:
      return "all_gather";
    case CollectiveKind::all_to_all:
      return "all_to_all";
  }
  return "?";
}

std::optional<CollectiveKind> parse_collective(const std::string& name) {
  for (CollectiveKind kind : {CollectiveKind::all_reduce, CollectiveKind::reduce_scatter, CollectiveKind::all_gather,
                              CollectiveKind::all_to_all}) {
    if (name_of(kind) == name) return kind;
  }
  return std::nullopt;
}

std::optional<std::vector<CollectiveStep>> collective_path(const Shape& shape, const Layout& from, const Layout& to) {
  if (!(from.placement == to.placement) || from.sbp.size() != to.sbp.size()) return std::nullopt;
  if (mixes_partials(from.sbp)) return std::nullopt;
  std::vector<int> axes(from.sbp.size());
  for (int k = 0; k < from.sbp.size(); ++k) axes[k] = k;
  if (auto steps = path_in_order(shape, from, to, axes)) return steps;
  std::reverse(axes.begin(), axes.end());
  return path_in_order(shape, from, to, axes);
}

CollectiveGroup collective_group(const Shape& shape, const CollectiveStep& step, int index) {
  const Placement& placement = step.from.placement;
  const int axis = step.mesh_axis;
  std::vector<int> at = placement.coordinates(index);
  CollectiveGroup group;
  group.member = at[axis];
  for (int c = 0; c < placement.mesh[axis]; ++c) {
    at[axis] = c;
    group.devices.push_back(placement.devices[placement.index_at(at)]);
  }
  group.box = shard_region(shape, placement, step.from.sbp.with(axis, B), index);
  const Sbp& a = step.from.sbp[axis];
  const Sbp& b = step.to.sbp[axis];
  group.from_axis = a.is_split() ? a.axis() : -1;
  group.to_axis = b.is_split() ? b.axis() : -1;
  return group;
}

int collective_group_index(const CollectiveStep& step, int index) {
  const Placement& placement = step.from.placement;
  const std::vector<int> at = placement.coordinates(index);
  int group = 0;
  for (int j = 0; j < placement.mesh_rank(); ++j) {
    if (j == step.mesh_axis) continue;
    group = group * static_cast<int>(placement.mesh[j]) + at[j];
  }
  return group;
}

int64_t collective_bytes(const Shape& shape, DType dtype, const CollectiveStep& step) {
  if (step.local) return 0;
  const Placement& placement = step.from.placement;
  const int n = static_cast<int>(placement.mesh[step.mesh_axis]);
  int64_t elements = 0;
  for (int index = 0; index < placement.size(); ++index) {
    if (placement.coordinates(index)[step.mesh_axis] != 0) continue;  // one member per group
    const CollectiveGroup group = collective_group(shape, step, index);
    const int64_t box = group.box.numel();
    switch (step.kind) {
      case CollectiveKind::all_reduce:
        elements += 2 * (n - 1) * box;
        break;
      case CollectiveKind::reduce_scatter:
      case CollectiveKind::all_gather:
        elements += (n - 1) * box;
        break;
      case CollectiveKind::all_to_all: {
        // Member i keeps the part of its box that is also its output: the rest moves.
        const int64_t a = group.box.extents[group.from_axis], b = group.box.extents[group.to_axis];
        int64_t kept = 0;  // sum over i of len_a(i) * len_b(i), in units of box / (a * b)
        for (int i = 0; i < n; ++i) {
          const auto [a0, a1] = shard_range(a, n, i);
          const auto [b0, b1] = shard_range(b, n, i);
          kept += (a1 - a0) * (b1 - b0);
        }
        elements += box - box / (a * b) * kept;
        break;
      }
    }
  }
  return elements * static_cast<int64_t>(size_of(dtype));
}

int64_t collective_cost(const Shape& shape, DType dtype, const std::vector<CollectiveStep>& steps) {
  const double total = static_cast<double>(shape.numel()) * static_cast<double>(size_of(dtype));
  double bytes = 0;
  for (const CollectiveStep& step : steps) {
    if (step.local) continue;
    const Placement& placement = step.from.placement;
    const double n = static_cast<double>(placement.mesh[step.mesh_axis]);
    const double groups = static_cast<double>(placement.size()) / n;
    const double box = total / split_elsewhere(placement, step.from.sbp, step.mesh_axis);
    switch (step.kind) {
      case CollectiveKind::all_reduce:
        bytes += groups * 2 * (n - 1) * box;
        break;
      case CollectiveKind::reduce_scatter:
      case CollectiveKind::all_gather:
        bytes += groups * (n - 1) * box;
        break;
      case CollectiveKind::all_to_all:
        bytes += groups * (n - 1) * box / n;
        break;
    }
  }
  return static_cast<int64_t>(bytes + 0.5);
}

}  // namespace tessel
