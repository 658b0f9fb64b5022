#include "sbp/boxing.h"

#include <algorithm>
#include <optional>

#include "sbp/collective.h"

namespace tessel {
namespace {

int64_t bytes_of(const Region& region, DType dtype) { return region.numel() * static_cast<int64_t>(size_of(dtype)); }

std::vector<int64_t> minus(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::vector<int64_t> result(a.size());
  for (size_t i = 0; i < a.size(); ++i) result[i] = a[i] - b[i];
  return result;
}

// Whether a mesh axis keeps its partial values through the conversion: same devices, and P on
// that axis on both sides. Such an axis is neither reduced nor zeroed.
bool keeps_partial(const Layout& from, const Layout& to, int axis) {
  return from.placement == to.placement && from.sbp[axis].is_partial() && from.sbp[axis] == to.sbp[axis];
}

// A new P keeps the value on the first device of each of its mesh axes and zeros (or, for
// P(max), the lowest value) elsewhere: whether target device `index` is such a device.
bool holds_zeros(const Layout& from, const Layout& to, int index) {
  const std::vector<int> at = to.placement.coordinates(index);
  for (int k = 0; k < to.sbp.size(); ++k) {
    if (to.sbp[k].is_partial() && !keeps_partial(from, to, k) && at[k] != 0) return true;
  }
  return false;
}

// One stage: every target device takes the overlap of its box with the source shards. Of the
// devices that hold the same values (a B mesh axis) it reads one: its own coordinate on the
// same mesh, else one chosen round-robin. Partial values on a mesh axis that loses its P are
// all read and reduced.
BoxingStage direct_stage(const TensorType& type, const Layout& from, const Layout& to) {
  BoxingStage stage{.from = from, .to = to};
  const bool same_mesh = from.placement == to.placement;
  std::optional<Sbp::Kind> partial;
  for (int k = 0; k < from.sbp.size(); ++k) {
    if (!from.sbp[k].is_partial() || keeps_partial(from, to, k)) continue;
    if (partial && *partial != from.sbp[k].kind()) {
      throw Error::InvalidArgument(
          concat("cannot convert ", from.to_string(), ": it mixes P(sum) and P(max), which reduce differently"));
    }
    partial = from.sbp[k].kind();
  }
  for (int e = 0; e < to.placement.size(); ++e) {
    BoxingTarget target{.target = e};
    const std::vector<int> at = to.placement.coordinates(e);
    if (holds_zeros(from, to, e)) {
      target.zeros = true;
      target.partial = std::find_if(to.sbp.sbps().begin(), to.sbp.sbps().end(), [](const Sbp& sbp) {
                         return sbp.is_partial();
                       })->kind();
    }
    if (!target.zeros) {
      const Region box = shard_region(type.shape, to.placement, to.sbp, e);
      for (int d = 0; d < from.placement.size(); ++d) {
        const std::vector<int> source_at = from.placement.coordinates(d);
        bool chosen = true;
        for (int k = 0; k < from.sbp.size() && chosen; ++k) {
          const Sbp& sbp = from.sbp[k];
          if (sbp.kind() == Sbp::Kind::broadcast) {
            const int wanted = same_mesh ? at[k] : e % static_cast<int>(from.placement.mesh[k]);
            chosen = source_at[k] == wanted;
          } else if (keeps_partial(from, to, k)) {
            chosen = source_at[k] == at[k];
          }
        }
        if (!chosen) continue;
        const Region held = shard_region(type.shape, from.placement, from.sbp, d);
        const Region overlap = held.intersect(box);
        if (overlap.empty() && type.shape.rank() > 0) continue;
        target.pieces.push_back({.source = d,
                                 .source_starts = minus(overlap.starts, held.starts),
                                 .extents = overlap.extents,
                                 .target_starts = minus(overlap.starts, box.starts)});
        if (from.placement.devices[d] != to.placement.devices[e]) stage.bytes += bytes_of(overlap, type.dtype);
      }
      target.reduce = partial.has_value() && target.pieces.size() > 1;
      target.partial = partial.value_or(Sbp::Kind::partial_sum);
    }
    stage.targets.push_back(std::move(target));
  }
  return stage;
}

BoxingPlan plan_of(const TensorType& type, const std::vector<Layout>& path) {
  BoxingPlan plan;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    plan.stages.push_back(direct_stage(type, path[i], path[i + 1]));
    plan.bytes += plan.stages.back().bytes;
  }
  return plan;
}

// One mesh axis at a time, P -> B through the split with the most elements per device.
// Empty when some step would pass through a layout that cannot hold the tensor.
std::vector<Layout> axis_by_axis(const Shape& shape, const Layout& from, const Layout& to) {
  std::vector<Layout> path{from};
  Layout current = from;
  for (int k = 0; k < to.sbp.size(); ++k) {
    if (current.sbp[k] == to.sbp[k]) continue;
    if (current.sbp[k].is_partial() && to.sbp[k].kind() == Sbp::Kind::broadcast) {
      int best = -1;
      int64_t best_extent = 0;
      for (int a = 0; a < shape.rank(); ++a) {
        const Layout split{current.placement, current.sbp.with(k, S(a))};
        if (!layout_fits(shape, split)) continue;
        const int64_t extent = shard_region(shape, split.placement, split.sbp, 0).extents[a];
        if (best < 0 || extent > best_extent) best = a, best_extent = extent;
      }
      if (best >= 0) {
        current.sbp = current.sbp.with(k, S(best));
        path.push_back(current);
      }
    }
    current.sbp = current.sbp.with(k, to.sbp[k]);
    if (!layout_fits(shape, current)) return {};
    path.push_back(current);
  }
  return path;
}

// Bytes per device of DESIGN.md's table for one mesh axis of n devices and a tensor of T bytes.
double table_bytes(const Sbp& from, const Sbp& to, double total, double n) {
  if (from == to) return 0;
  const bool fp = from.is_partial(), tp = to.is_partial();
  const bool fs = from.is_split(), ts = to.is_split();
  if (fp && tp) return 2 * total * (n - 1) / n;                                 // P(sum) <-> P(max): via B
  if (fp && to.kind() == Sbp::Kind::broadcast) return 2 * total * (n - 1) / n;  // all-reduce
  if (fp && ts) return total * (n - 1) / n;                                     // reduce-scatter
  if (fs && to.kind() == Sbp::Kind::broadcast) return total * (n - 1) / n;      // all-gather
  if (fs && ts) return total * (n - 1) / (n * n);                               // all-to-all
  if (fs && tp) return total * (n - 1) / n;                                     // all-gather, then keep one
  return 0;                                                                     // B -> S, B -> P
}

}  // namespace

BoxingPlan plan_boxing(const TensorType& type, const Layout& from, const Layout& to) {
  check_layout(type.shape, from, "the boxing source");
  check_layout(type.shape, to, "the boxing target");
  if (from == to) return {};
  BoxingPlan direct = plan_of(type, {from, to});
  if (!(from.placement == to.placement)) return direct;
  const std::vector<Layout> path = axis_by_axis(type.shape, from, to);
  if (path.size() <= 2) return direct;
  BoxingPlan staged = plan_of(type, path);
  return staged.bytes < direct.bytes ? staged : direct;
}

int64_t boxing_lower_bound(const TensorType& type, const Layout& from, const Layout& to) {
  if (from == to) return 0;
  const double total = static_cast<double>(type.shape.numel() * static_cast<int64_t>(size_of(type.dtype)));
  if (from.placement == to.placement) {
    const Placement& placement = from.placement;
    double bytes = 0;
    NdSbp current = from.sbp;
    for (int k = 0; k < to.sbp.size(); ++k) {
      if (current[k] == to.sbp[k]) continue;
      double group = total;  // the bytes one group along mesh axis k holds
      for (int j = 0; j < current.size(); ++j) {
        if (j != k && current[j].is_split()) group /= static_cast<double>(placement.mesh[j]);
      }
      const NdSbp next = current.with(k, to.sbp[k]);
      const auto exact = current[k].is_split() && to.sbp[k].is_split()
                             ? collective_path(type.shape, {placement, current}, {placement, next})
                             : std::nullopt;
      if (exact && exact->size() == 1) {
        // S(i) -> S(j) with uneven splits: what each device lacks of its new box, exactly (the
        // table's T(n-1)/n^2 holds for even splits only).
        bytes += static_cast<double>(collective_bytes(type.shape, type.dtype, exact->front()));
      } else {
        bytes += table_bytes(current[k], to.sbp[k], group, static_cast<double>(placement.mesh[k])) * placement.size();
      }
      current = next;
    }
    return static_cast<int64_t>(bytes + 0.5);
  }
  int64_t bytes = 0;
  for (int e = 0; e < to.placement.size(); ++e) {
    if (holds_zeros(from, to, e)) continue;
    const Region box = shard_region(type.shape, to.placement, to.sbp, e);
    int64_t held = 0;
    const int d = from.placement.index_of(to.placement.devices[e]);
    if (d >= 0 && !from.sbp.has_partial()) {
      held = shard_region(type.shape, from.placement, from.sbp, d).intersect(box).numel();
    }
    bytes += (box.numel() - held) * static_cast<int64_t>(size_of(type.dtype));
  }
  return bytes;
}

}  // namespace tessel
