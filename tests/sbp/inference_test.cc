// SBP inference: pins are honoured, the cheaper of two alternatives wins, and a user's
// mistake is an Error that names the tensor.
#include "sbp/inference.h"

#include <gtest/gtest.h>

#include "ops/ops.h"
#include "sbp/boxing.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

const Placement kTwo = Placement::cpu(2);
const Placement kFour = Placement::cpu(4);

Layout layout_of(const SbpAssignment& layouts, const Tensor& t) { return layouts.output({t.node(), t.output()}); }

TEST(Inference, HonoursEveryPinAndTheDefaultPlacement) {
  Graph g;
  Tensor x = g.input("x", {8, 6});
  Tensor w = g.param("w", {6, 4}, init::normal(0.1));
  Tensor b = g.param("b", {4});
  pin(x, kFour, {B});
  pin(w, kFour, {S(1)});
  Tensor y = bias_add(matmul(x, w), b);
  Tensor handed = to(y, Placement::cpu(2, 2), {S(0)});  // a pipeline-style hand-off
  Tensor z = to(relu(handed), {P});                     // SBP only: keeps the placement
  Tensor loss = mean(z);
  g.minimize(loss, SGD{});
  const SbpAssignment layouts = infer_sbp(g, kFour);
  EXPECT_EQ(layout_of(layouts, x), (Layout{kFour, {B}}));
  EXPECT_EQ(layout_of(layouts, w), (Layout{kFour, {S(1)}}));
  EXPECT_EQ(layout_of(layouts, handed), (Layout{Placement::cpu(2, 2), {S(0)}}));
  EXPECT_EQ(layout_of(layouts, z), (Layout{Placement::cpu(2, 2), {P}}));
  // Unpinned: matmul of B x S(1) needs no boxing, so it gives S(1); the bias follows.
  const Node& bias_add_node = g.node(y.node());
  EXPECT_EQ(layouts.output(bias_add_node.inputs[0]).sbp, NdSbp({S(1)}));
  EXPECT_EQ(layouts.nodes[bias_add_node.id].inputs[1], NdSbp({S(0)}));
  EXPECT_EQ(layout_of(layouts, b), (Layout{kFour, {S(0)}}));
}

// matmul(a, b) with a S(1) and b B: S(1) x S(0) -> P only slices b (0 bytes); every other
// signature moves a.
TEST(Inference, PicksTheSignatureThatMovesFewerBytes) {
  Graph g;
  Tensor a = g.input("a", {4, 64});
  Tensor b = g.param("b", {64, 64});
  pin(a, kFour, {S(1)});
  pin(b, kFour, {B});
  Tensor c = matmul(a, b);
  const SbpAssignment layouts = infer_sbp(g, kFour);
  EXPECT_EQ(layouts.nodes[c.node()].inputs, (std::vector<NdSbp>{{S(1)}, {S(0)}}));
  EXPECT_EQ(layout_of(layouts, c).sbp, NdSbp({P}));
  EXPECT_EQ(layouts.boxing_bytes, 0);
  // The alternative the data-parallel signature would need: a all-to-all to S(0).
  EXPECT_GT(plan_boxing(a.type(), {kFour, {S(1)}}, {kFour, {S(0)}}).bytes, 0);

  // The same product with a pinned S(0): data parallel, S(0) x B -> S(0), is free instead.
  Graph h;
  Tensor a2 = h.input("a", {4, 64});
  Tensor b2 = h.param("b", {64, 64});
  pin(a2, kFour, {S(0)});
  pin(b2, kFour, {B});
  Tensor c2 = matmul(a2, b2);
  const SbpAssignment data_parallel = infer_sbp(h, kFour);
  EXPECT_EQ(data_parallel.nodes[c2.node()].inputs, (std::vector<NdSbp>{{S(0)}, {B}}));
  EXPECT_EQ(layout_of(data_parallel, c2).sbp, NdSbp({S(0)}));
}

// add(big on {0,1}, small on {2,3}): the op runs where the big operand is, and the small one moves.
TEST(Inference, RunsAnOpWhereMovingItsInputsCostsLeast) {
  for (bool big_first : {true, false}) {
    Graph g;
    Tensor big = g.input("big", {64, 64});
    Tensor small = g.input("small", {1, 64});
    pin(big, big_first ? Placement::cpu(2) : Placement::cpu(2, 2), {S(0)});
    pin(small, big_first ? Placement::cpu(2, 2) : Placement::cpu(2), {B});
    Tensor sum = add(big, small);
    const SbpAssignment layouts = infer_sbp(g, kFour);
    EXPECT_EQ(layouts.nodes[sum.node()].placement, layout_of(layouts, big).placement) << big_first;
    EXPECT_EQ(layout_of(layouts, sum).sbp, NdSbp({S(0)})) << big_first;
    EXPECT_EQ(layouts.boxing_bytes, 2 * 64 * 4) << big_first;  // the small row, to each of 2 devices
  }
}

// Data parallel: the weight gradient is partial and its update needs it whole: one all-reduce.
TEST(Inference, DataParallelGradientsAreAllReducedForTheUpdate) {
  Graph g;
  Tensor x = g.input("x", {8, 6});
  Tensor w = g.param("w", {6, 4}, init::normal(0.1));
  pin(x, kTwo, {S(0)});
  pin(w, kTwo, {B});
  Tensor loss = mean(matmul(x, w));
  g.minimize(loss, SGD{});
  const SbpAssignment layouts = infer_sbp(g, kTwo);
  for (const Node& node : g.nodes()) {
    if (node.op != "sgd_update") continue;
    EXPECT_EQ(layouts.nodes[node.id].inputs, (std::vector<NdSbp>{{B}, {B}}));
    const TensorRef gradient = node.inputs[1];
    EXPECT_EQ(layouts.output(gradient).sbp, NdSbp({P}));
  }
}

TEST(InferenceErrors, NameTheTensorAndWhatWasExpected) {
  Graph g;
  Tensor x = g.input("x", {3, 4});
  EXPECT_TESSEL_ERROR(pin(x, kTwo, {S(2)}), ErrorCode::kInvalidArgument, "'x'", "S(2)", "splits axis 2", "2 axes");
  EXPECT_TESSEL_ERROR(pin(x, Placement{.devices = {}, .mesh = Shape{0}}, {B}), ErrorCode::kInvalidArgument,
                      "at least one device");
  EXPECT_TESSEL_ERROR(pin(x, kFour, {S(0)}), ErrorCode::kInvalidArgument, "'x'", "extent 3",
                      "some device would hold nothing");
  EXPECT_TESSEL_ERROR(pin(x, kTwo, {S(0), B}), ErrorCode::kInvalidArgument, "'x'", "2 entries", "1 axes");
  EXPECT_TESSEL_ERROR(pin(x, Placement::cpu_mesh(2, 2), {P, Sbp::partial_max()}), ErrorCode::kInvalidArgument, "'x'",
                      "mixes P(sum) and P(max)");
  EXPECT_TESSEL_ERROR(pin(x, kTwo, {P}), ErrorCode::kInvalidArgument, "'x'", "partial", "expected S(axis) or B");
  EXPECT_TESSEL_ERROR(pin(relu(x), kTwo, {B}), ErrorCode::kInvalidArgument, "relu", "use to(");
  EXPECT_TESSEL_ERROR(to(x, kTwo, {S(5)}), ErrorCode::kInvalidArgument, "'x'", "S(5)");
  EXPECT_TESSEL_ERROR(Placement::parse("gpu:{0}"), ErrorCode::kInvalidArgument, "not a placement", "gpu");
  EXPECT_TESSEL_ERROR(Placement::parse("cpu:{0,1,2} mesh [2, 2]"), ErrorCode::kInvalidArgument, "4 slots for 3");
}

TEST(InferenceErrors, ContradictoryPinsAreRefused) {
  Graph g;
  Tensor x = g.input("x", {4, 4});
  pin(x, kTwo, {S(0)});
  pin(x, kTwo, {S(0)});  // the same pin again is fine
  EXPECT_TESSEL_ERROR(pin(x, kTwo, {B}), ErrorCode::kInvalidArgument, "'x'", "contradict", "S(0) on", "B on");

  // A parameter and its optimizer state pinned differently: the update writes both in place.
  Graph h;
  Tensor w = h.param("w", {4, 4}, init::normal(0.1));
  pin(w, kTwo, {S(0)});
  h.minimize(mean(relu(w)), SGD{.momentum = 0.9});
  Tensor momentum;
  for (const Node& node : h.nodes()) {
    if (node.op == "variable" && node.attrs.get_string("name") != "w") momentum = Tensor(&h, node.id, 0);
  }
  ASSERT_TRUE(momentum.defined());
  pin(momentum, kTwo, {B});
  EXPECT_TESSEL_ERROR(infer_sbp(h, kTwo), ErrorCode::kInvalidArgument, "sgd_update", "'w'", "S(0)", "B on",
                      "contradict");
}

TEST(Layouts, PlacementsPrintAndParse) {
  for (const Placement& p :
       {Placement::cpu(1), Placement::cpu(4, 2), Placement::cpu_mesh(2, 2), Placement::cpu_devices({3, 1})}) {
    EXPECT_EQ(Placement::parse(p.to_string()), p) << p.to_string();
  }
  EXPECT_EQ(Placement::parse("cpu:{0, 1}"), Placement::cpu(2));
  EXPECT_EQ(Placement::cpu_mesh(2, 3).to_string(), "cpu:{0,1,2,3,4,5} mesh [2, 3]");
  EXPECT_EQ(Placement::cpu_mesh(2, 2).coordinates(3), (std::vector<int>{1, 1}));
  EXPECT_EQ(Placement::cpu_mesh(2, 2).index_at({1, 0}), 2);
  EXPECT_EQ((Layout{Placement::cpu_mesh(2, 2), {S(0), B}}).to_string(), "(S(0), B) on cpu:{0,1,2,3} mesh [2, 2]");
  // Nested splits: (S(0), S(0)) splits each row block again; uneven extents give the first more.
  const Region r = shard_region({7, 3}, Placement::cpu_mesh(2, 2), {S(0), S(0)}, 1);
  EXPECT_EQ(r.starts, (std::vector<int64_t>{2, 0}));
  EXPECT_EQ(r.extents, (std::vector<int64_t>{2, 3}));
}

}  // namespace
}  // namespace tessel
