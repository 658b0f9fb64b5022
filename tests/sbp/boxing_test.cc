// The boxing planner on its own: every conversion of DESIGN.md's table, on 1-D meshes of 2, 3
// and 4 devices, on a 2x2 mesh and between different placements, with uneven splits. Source
// shards are made from a logical tensor by the SBP's definition; the plan is applied to them
// piece by piece, and every target shard must hold what the target SBP's definition says.
// Through actors, a chain of to() conversions must hand back the same values.
#include "sbp/boxing.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

using Shards = std::vector<HostTensor>;  // by index in the placement

HostTensor box_of(const HostTensor& whole, const Region& region) { return block_of(whole, region.starts, region.shape()); }

// Devices that hold parts of the same partial value: equal coordinates on every non-P axis.
std::vector<int> group_key(const Layout& layout, int index) {
  std::vector<int> key = layout.placement.coordinates(index);
  for (int k = 0; k < layout.sbp.size(); ++k) {
    if (layout.sbp[k].is_partial()) key[k] = -1;
  }
  return key;
}

std::map<std::vector<int>, std::vector<int>> groups_of(const Layout& layout) {
  std::map<std::vector<int>, std::vector<int>> groups;
  for (int d = 0; d < layout.placement.size(); ++d) groups[group_key(layout, d)].push_back(d);
  return groups;
}

bool holds_maxima(const Layout& layout) {
  return std::any_of(layout.sbp.sbps().begin(), layout.sbp.sbps().end(),
                     [](const Sbp& s) { return s.kind() == Sbp::Kind::partial_max; });
}

// Shards of `whole` by the definition of `layout`: S and B hold their box; the devices of a P
// group hold values whose sum (or max) is the box: random ones, and one device the remainder
// (or the value itself, the others something smaller).
Shards make_shards(const HostTensor& whole, const Layout& layout, uint64_t seed) {
  Shards shards(layout.placement.size());
  const auto groups = groups_of(layout);
  const bool max = holds_maxima(layout);
  for (const auto& [key, members] : groups) {
    const HostTensor box = box_of(whole, shard_region(whole.shape(), layout.placement, layout.sbp, members[0]));
    HostTensor remainder = box.clone();
    for (size_t m = 0; m < members.size(); ++m) {
      if (m + 1 == members.size()) {
        shards[members[m]] = remainder;
        continue;
      }
      HostTensor part = testing::random_tensor(box.shape(), seed + members[m]);
      for (int64_t i = 0; i < part.numel(); ++i) {
        if (max) {
          part.set(i, box.get(i) - 1 - std::abs(part.get(i)));
        } else {
          remainder.set(i, remainder.get(i) - part.get(i));
        }
      }
      shards[members[m]] = part;
    }
  }
  return shards;
}

// Applies one stage the way the compiler's slice, copy, assemble and fill actors do.
Shards apply(const BoxingStage& stage, const Shape& shape, const Shards& sources) {
  Shards targets;
  for (const BoxingTarget& target : stage.targets) {
    const Region box = shard_region(shape, stage.to.placement, stage.to.sbp, target.target);
    HostTensor out(box.shape(), DType::f32);
    const bool max = target.partial == Sbp::Kind::partial_max;
    const float start = target.zeros || target.reduce ? (max ? -INFINITY : 0.0f) : NAN;
    for (int64_t i = 0; i < out.numel(); ++i) out.set(i, start);
    for (const BoxingPiece& piece : target.pieces) {
      const HostTensor& source = sources[piece.source];
      const Region in{piece.source_starts, piece.extents};
      const HostTensor part = box_of(source, in);
      const std::vector<int64_t> strides = out.shape().strides();
      for (int64_t i = 0; i < part.numel(); ++i) {
        int64_t rest = i, at = 0;
        for (int a = part.shape().rank() - 1; a >= 0; --a) {
          at += (piece.target_starts[a] + rest % piece.extents[a]) * strides[a];
          rest /= piece.extents[a];
        }
        const double value = part.get(i);
        out.set(at, !target.reduce ? value : max ? std::max(out.get(at), value) : out.get(at) + value);
      }
    }
    targets.push_back(out);
  }
  return targets;
}

// Every target shard holds what `layout` says it holds of `whole`.
void expect_definition(const HostTensor& whole, const Layout& layout, const Shards& shards, const std::string& what) {
  const auto groups = groups_of(layout);
  const bool max = holds_maxima(layout);
  for (const auto& [key, members] : groups) {
    const HostTensor box = box_of(whole, shard_region(whole.shape(), layout.placement, layout.sbp, members[0]));
    for (int64_t i = 0; i < box.numel(); ++i) {
      double combined = max ? -INFINITY : 0;
      for (int d : members) {
        ASSERT_EQ(shards[d].shape(), box.shape()) << what << ", device " << d;
        combined = max ? std::max(combined, shards[d].get(i)) : combined + shards[d].get(i);
      }
      ASSERT_NEAR(combined, box.get(i), 1e-5) << what << ", element " << i << " of group of device " << members[0];
    }
  }
}

void check_conversion(const Shape& shape, const Layout& from, const Layout& to) {
  const std::string what = concat(from.to_string(), " -> ", to.to_string(), " of ", shape);
  const HostTensor whole = testing::random_tensor(shape, 17);
  Shards shards = make_shards(whole, from, 99);
  const BoxingPlan plan = plan_boxing({shape, DType::f32}, from, to);
  int64_t bytes = 0;
  for (const BoxingStage& stage : plan.stages) {
    shards = apply(stage, shape, shards);
    bytes += stage.bytes;
  }
  EXPECT_EQ(bytes, plan.bytes) << what;
  if (from == to) {
    EXPECT_TRUE(plan.stages.empty()) << what;
  }
  expect_definition(whole, to, shards, what);
}

std::vector<NdSbp> all_sbps(int mesh_rank) {
  const std::vector<Sbp> one{S(0), S(1), B, P, Sbp::partial_max()};
  std::vector<NdSbp> result;
  if (mesh_rank == 1) {
    for (const Sbp& s : one) result.push_back(NdSbp({s}));
    return result;
  }
  for (const Sbp& a : one) {
    for (const Sbp& b : one) {
      const bool mixed = (a.kind() == Sbp::Kind::partial_sum && b.kind() == Sbp::Kind::partial_max) ||
                         (a.kind() == Sbp::Kind::partial_max && b.kind() == Sbp::Kind::partial_sum);
      if (!mixed) result.push_back(NdSbp({a, b}));
    }
  }
  return result;
}

void check_every_pair(const Shape& shape, const Placement& from, const Placement& to) {
  int checked = 0;
  for (const NdSbp& a : all_sbps(from.mesh_rank())) {
    for (const NdSbp& b : all_sbps(to.mesh_rank())) {
      if (!layout_fits(shape, {from, a}) || !layout_fits(shape, {to, b})) continue;
      check_conversion(shape, {from, a}, {to, b});
      ++checked;
      if (::testing::Test::HasFailure()) return;
    }
  }
  EXPECT_GE(checked, from.mesh_rank() * to.mesh_rank() == 4 ? 400 : 20);
}

TEST(Boxing, EveryConversionOnOneDimensionalMeshesWithUnevenSplits) {
  for (int n : {2, 3, 4}) check_every_pair({5, 7}, Placement::cpu(n), Placement::cpu(n));
}

TEST(Boxing, EveryConversionOnATwoByTwoMeshOneAxisAtATime) {
  check_every_pair({6, 5}, Placement::cpu_mesh(2, 2), Placement::cpu_mesh(2, 2));
}

TEST(Boxing, EveryConversionBetweenDifferentPlacements) {
  check_every_pair({5, 7}, Placement::cpu(2), Placement::cpu(2, 2));            // a pipeline hand-off
  check_every_pair({5, 7}, Placement::cpu(3), Placement::cpu_devices({3, 1}));  // overlapping devices
  check_every_pair({6, 5}, Placement::cpu_mesh(2, 2), Placement::cpu(2));       // 2-D to 1-D
  check_every_pair({5, 7}, Placement::cpu(1), Placement::cpu_mesh(2, 2));       // one device to a mesh
}

// On an even tensor the planner moves exactly the bytes of DESIGN.md's table.
TEST(Boxing, BytesMeetTheTable) {
  const TensorType type{{8, 12}, DType::f32};
  const double t = 8 * 12 * 4;
  for (int n : {2, 4}) {
    const Placement mesh = Placement::cpu(n);
    const auto bytes = [&](Sbp from, Sbp to) { return plan_boxing(type, {mesh, {from}}, {mesh, {to}}).bytes; };
    const auto per_device = [&](double value) { return static_cast<int64_t>(value * n + 0.5); };
    EXPECT_EQ(bytes(P, B), per_device(2 * t * (n - 1) / n)) << n;
    EXPECT_EQ(bytes(P, S(0)), per_device(t * (n - 1) / n)) << n;
    EXPECT_EQ(bytes(S(1), B), per_device(t * (n - 1) / n)) << n;
    EXPECT_EQ(bytes(S(0), S(1)), per_device(t * (n - 1) / (n * n))) << n;
    EXPECT_EQ(bytes(B, S(0)), 0) << n;
    EXPECT_EQ(bytes(B, P), 0) << n;
    for (const auto& [from, to] : std::vector<std::pair<Sbp, Sbp>>{{P, B}, {P, S(0)}, {S(1), B}, {S(0), S(1)}}) {
      EXPECT_EQ(bytes(from, to), boxing_lower_bound(type, {mesh, {from}}, {mesh, {to}})) << n;
    }
  }
  // 2x2: P -> B along one mesh axis costs an all-reduce within each group of 2.
  const Placement grid = Placement::cpu_mesh(2, 2);
  EXPECT_EQ(plan_boxing(type, {grid, {S(0), P}}, {grid, {S(0), B}}).bytes, static_cast<int64_t>(t / 2 * 4 / 2 * 2));
  // Between placements: each target receives its box, and nothing it already holds.
  EXPECT_EQ(plan_boxing(type, {Placement::cpu(2), {S(0)}}, {Placement::cpu(2, 2), {S(0)}}).bytes,
            static_cast<int64_t>(t));
  EXPECT_EQ(plan_boxing(type, {Placement::cpu(2), {S(0)}}, {Placement::cpu(1, 1), {B}}).bytes,
            static_cast<int64_t>(t / 2));
  EXPECT_EQ(boxing_lower_bound(type, {Placement::cpu(2), {S(0)}}, {Placement::cpu(1, 1), {B}}),
            static_cast<int64_t>(t / 2));
}

// Through actors: x converted along a chain of layouts, fetched, equals x.
TEST(Boxing, ActorsConvertThroughAChainOfLayouts) {
  Graph g;
  Tensor x = g.input("x", {5, 7});
  const Placement four = Placement::cpu(4), grid = Placement::cpu_mesh(2, 2);
  pin(x, four, {S(0)});
  Tensor y = to(x, four, {S(1)});
  y = to(y, four, {P});
  y = to(y, grid, {S(0), S(1)});
  y = to(y, grid, {P, S(0)});
  y = to(y, Placement::cpu_devices({3, 1}), {S(1)});
  y = to(y, Placement::cpu(1, 2), {B});
  y = to(y, grid, {Sbp::partial_max(), B});
  Tensor z = relu(y);  // reduces the P(max) before a nonlinear op
  Session session(g, {y, z}, {.placement = four});
  const HostTensor value = testing::random_tensor({5, 7}, 3);
  const std::vector<HostTensor> out = session.step({{"x", value}});
  for (int64_t i = 0; i < value.numel(); ++i) {
    EXPECT_NEAR(out[0].get(i), value.get(i), 1e-6) << i;
    EXPECT_NEAR(out[1].get(i), std::max(0.0, value.get(i)), 1e-6) << i;
  }
  EXPECT_EQ(session.plan().ranks(0).devices_size(), 4);
}

// bf16 and f16 through the same kinds of conversions, partial sums and maxima included: the
// chain only moves values (and adds zeros), so every element comes back exactly. A bf16 product's
// partial sums are reduced in f32 and rounded once by boxing_assemble, or at each arriving chunk
// by a collective, so the reduced value is within a few roundings of the one-device product.
TEST(Boxing, HalfPrecisionTensorsConvertAndReduce) {
  for (DType half : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(std::string(name_of(half)));
    Graph g;
    Tensor x = g.input("x", {5, 7});
    Tensor a = g.input("a", {6, 9});
    Tensor b = g.input("b", {9, 4});
    const Placement four = Placement::cpu(4), grid = Placement::cpu_mesh(2, 2), three = Placement::cpu(3);
    pin(x, four, {S(0)});
    Tensor y = cast(x, half);
    y = to(y, four, {S(1)});
    y = to(y, four, {P});
    y = to(y, grid, {S(0), S(1)});
    y = to(y, grid, {P, S(0)});
    y = to(y, Placement::cpu_devices({3, 1}), {S(1)});
    y = to(y, grid, {Sbp::partial_max(), B});
    y = to(y, four, {B});
    std::vector<Tensor> fetches{cast(y, DType::f32)};
    // A bf16 product (f16 has no matmul) whose partial sums are reduced: all at once (P -> B),
    // scattered (P -> S(0)), and into another placement (assembled).
    if (half == DType::bf16) {
      pin(a, three, {S(1)});
      pin(b, three, {S(0)});
      Tensor partial = matmul(cast(a, half), cast(b, half));
      for (const Tensor& reduced :
           {to(partial, three, {B}), to(partial, three, {S(0)}), to(partial, Placement::cpu(2), {B})}) {
        fetches.push_back(cast(reduced, DType::f32));
      }
    }
    Session session(g, fetches, {.placement = four});
    const Feeds feeds{{"x", testing::random_tensor({5, 7}, 3)},
                      {"a", testing::random_tensor({6, 9}, 4)},
                      {"b", testing::random_tensor({9, 4}, 5)}};
    const std::vector<HostTensor> out = session.step(feeds);
    const std::vector<HostTensor> expected = Interpreter(g).evaluate(feeds, fetches);
    for (int64_t i = 0; i < out[0].numel(); ++i) EXPECT_EQ(out[0].get(i), expected[0].get(i)) << "chain @" << i;
    if (half != DType::bf16) continue;
    double largest = 0;
    for (int64_t i = 0; i < expected[1].numel(); ++i) largest = std::max(largest, std::abs(expected[1].get(i)));
    ASSERT_GT(largest, 0.5);
    // Three partial sums: each rounded once, then two rounding additions.
    const double tolerance = 4 * largest * 0x1p-8;
    for (size_t f = 1; f < fetches.size(); ++f) {
      for (int64_t i = 0; i < expected[f].numel(); ++i) {
        EXPECT_NEAR(out[f].get(i), expected[f].get(i), tolerance) << "fetch " << f << " @" << i;
      }
    }
  }
}

}  // namespace
}  // namespace tessel
