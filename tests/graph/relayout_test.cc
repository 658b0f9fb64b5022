// Re-laying placements over another number of devices (graph/relayout.h): each placement keeps
// its share of the devices, a 2-D mesh keeps its columns, and a re-laid graph compiles and trains
// like the interpreter.
#include "graph/relayout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "apps/models/parallel.h"
#include "graph/compile.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

Placement cpu_list(std::vector<int> devices) { return Placement::cpu_devices(std::move(devices)); }

TEST(Relayout, OneDimensionalPlacementOverEveryDeviceSpansEveryNewDevice) {
  EXPECT_EQ(relaid_placement(Placement::cpu(4), 4, 3), Placement::cpu(3));
  EXPECT_EQ(relaid_placement(Placement::cpu(4), 4, 6), Placement::cpu(6));
}

TEST(Relayout, PipelineHalvesKeepTheirHalf) {
  const Placement first_half = Placement::cpu(2), second_half = Placement::cpu(2, 2);
  EXPECT_EQ(relaid_placement(first_half, 4, 3), cpu_list({0}));
  EXPECT_EQ(relaid_placement(second_half, 4, 3), cpu_list({1, 2}));
  EXPECT_EQ(relaid_placement(first_half, 4, 2), cpu_list({0}));
  EXPECT_EQ(relaid_placement(second_half, 4, 2), cpu_list({1}));
}

TEST(Relayout, AStageKeepsAtLeastOneDevice) {
  EXPECT_EQ(relaid_placement(Placement::cpu(2), 4, 1), cpu_list({0}));
  EXPECT_EQ(relaid_placement(Placement::cpu(2, 2), 4, 1), cpu_list({0}));
  EXPECT_EQ(relaid_placement(cpu_list({3}), 4, 3), cpu_list({2}));
}

TEST(Relayout, MeshKeepsItsColumnsAndItsRowsTakeTheShare) {
  EXPECT_EQ(relaid_placement(Placement::cpu_mesh(2, 2), 4, 6), Placement::cpu_mesh(3, 2));
  EXPECT_EQ(relaid_placement(Placement::cpu_mesh(4, 2), 8, 6), Placement::cpu_mesh(3, 2));
  // Three devices hold one row of two: cpu:2 is left out of the mesh.
  EXPECT_EQ(relaid_placement(Placement::cpu_mesh(2, 2), 4, 3), Placement::cpu_mesh(1, 2));
  // The second half of an 8-device job, re-laid over 6: its share is cpu:3..5, one row of two.
  EXPECT_EQ(relaid_placement(Placement::cpu_mesh(2, 2, 4), 8, 6), Placement::cpu_mesh(1, 2, 3));
}

TEST(Relayout, MeshWithMoreColumnsThanItsShareIsRefusedNamingIt) {
  EXPECT_TESSEL_ERROR(relaid_placement(Placement::cpu_mesh(2, 2), 4, 1), ErrorCode::kFailedPrecondition,
                      "cannot re-lay cpu:{0,1,2,3} mesh [2, 2] over 1 devices", "keeps 2 columns");
}

TEST(Relayout, PlacementThatIsNotOneRangeOfTheOldDevicesIsRefused) {
  EXPECT_TESSEL_ERROR(relaid_placement(cpu_list({0, 2}), 4, 3), ErrorCode::kFailedPrecondition,
                      "cannot re-lay cpu:{0,2} mesh [2] from 4 to 3 devices", "expected one range of cpu:0 .. cpu:3");
  EXPECT_TESSEL_ERROR(relaid_placement(Placement::cpu(2, 2), 3, 2), ErrorCode::kFailedPrecondition,
                      "cannot re-lay cpu:{2,3} mesh [2] from 3 to 2 devices", "cpu:0 .. cpu:2");
  EXPECT_TESSEL_ERROR(relaid_placement(Placement::parse("cuda:{0,1}"), 2, 1), ErrorCode::kFailedPrecondition,
                      "cannot re-lay cuda:{0,1}", "only CPU placements move");
  EXPECT_TESSEL_ERROR(relaid_placement(Placement::cpu(4), 4, 0), ErrorCode::kInvalidArgument,
                      "re-laying from 4 to 0 devices");
}

TEST(Relayout, SameNumberOfDevicesReturnsThePlacement) {
  for (const Placement& placement : {Placement::cpu(4), Placement::cpu(2, 2), Placement::cpu_mesh(2, 2),
                                     cpu_list({3, 1, 2}), Placement::parse("cpu:{0,1} per rank 1")}) {
    EXPECT_EQ(relaid_placement(placement, 4, 4), placement) << placement.to_string();
  }
}

// Re-laying in two steps lands where one step does: a [2, 2] mesh over 4 devices re-laid to 2 is
// a 1x2 mesh on cpu:{0,1}; re-laid to 3 it is that 1x2 mesh already, whose share of 2 devices
// ([0, 2 * 2 / 3) = 1 device) is smaller than its 2 columns: a mesh that still fits keeps its row.
// (Without that, a job would survive losing two ranks at once but not one after the other.)
TEST(Relayout, MeshReLaidTwiceLandsWhereOneStepDoes) {
  const Placement once = relaid_placement(Placement::cpu_mesh(2, 2), 4, 2);
  EXPECT_EQ(once, Placement::cpu_mesh(1, 2));
  const Placement on_three = relaid_placement(Placement::cpu_mesh(2, 2), 4, 3);
  EXPECT_EQ(relaid_placement(on_three, 3, 2), once);
}

// A two-stage pipeline: stage 1 (x, w1) on cpu:{0,1}, stage 2 (target, w2) on cpu:{2,3}, each
// data-parallel, and the hidden activations handed from one to the other.
struct Pipeline {
  Graph graph{5};
  Tensor x, target, w1, w2, handed, loss;
  Pipeline() {
    const Placement stage1 = Placement::cpu(2), stage2 = Placement::cpu(2, 2);
    x = graph.input("x", {12, 8});
    target = graph.input("target", {12, 4});
    w1 = graph.param("w1", {8, 6}, init::normal(0.3));
    w2 = graph.param("w2", {6, 4}, init::normal(0.3));
    pin(x, stage1, {S(0)});
    pin(w1, stage1, {B});
    pin(target, stage2, {S(0)});
    pin(w2, stage2, {B});
    handed = to(tanh(matmul(x, w1)), stage2, {S(0)});
    Tensor error = matmul(handed, w2) - target;
    loss = mean(error * error);
    graph.minimize(loss, AdamW{.lr = 0.05});
  }
  static Feeds feeds(int64_t step) {
    return {{"x", testing::random_tensor({12, 8}, 100 + step)},
            {"target", testing::random_tensor({12, 4}, 200 + step)}};
  }
};

Placement placement_of(const Graph& graph, const Tensor& tensor) {
  return Placement::parse(graph.node(tensor.node()).attrs.get_string("placement"));
}

std::map<std::string, Shape> variable_shapes(const Graph& graph) {
  std::map<std::string, Shape> shapes;
  for (const Node& node : graph.nodes()) {
    if (node.op == "variable") shapes.emplace(node.name, node.outputs.at(0).shape);
  }
  return shapes;
}

TEST(Relayout, DevicesSpannedIsOneMoreThanTheHighestDeviceNamed) {
  Pipeline pipeline;
  EXPECT_EQ(devices_spanned(pipeline.graph, Placement::cpu(1)), 4);
  EXPECT_EQ(devices_spanned(pipeline.graph, Placement::cpu(6)), 6);
  relay_graph(pipeline.graph, 4, 3);
  EXPECT_EQ(devices_spanned(pipeline.graph, Placement::cpu(1)), 3);
  Graph unpinned;
  unpinned.input("x", {2, 2});
  EXPECT_EQ(devices_spanned(unpinned, Placement::cpu(2, 3)), 5);
}

TEST(Relayout, RelayGraphMovesEveryPinAndKeepsTheVariables) {
  Pipeline pipeline;
  Graph& g = pipeline.graph;
  const std::map<std::string, Shape> shapes_before = variable_shapes(g);
  relay_graph(g, 4, 3);
  EXPECT_EQ(placement_of(g, pipeline.x), cpu_list({0}));
  EXPECT_EQ(placement_of(g, pipeline.w1), cpu_list({0}));
  EXPECT_EQ(placement_of(g, pipeline.target), cpu_list({1, 2}));
  EXPECT_EQ(placement_of(g, pipeline.w2), cpu_list({1, 2}));
  EXPECT_EQ(placement_of(g, pipeline.handed), cpu_list({1, 2}));
  for (const Node& node : g.nodes()) {
    if (!node.attrs.has("placement")) continue;
    const Placement placement = Placement::parse(node.attrs.get_string("placement"));
    EXPECT_LE(*std::max_element(placement.devices.begin(), placement.devices.end()), 2) << describe(node);
  }
  EXPECT_EQ(variable_shapes(g), shapes_before);

  const proto::Plan plan = compile_plan(g, {.fetches = {pipeline.loss}, .placement = Placement::cpu(3)});
  ASSERT_EQ(plan.ranks_size(), 1);
  ASSERT_EQ(plan.ranks(0).devices_size(), 3);
  for (int d = 0; d < 3; ++d) EXPECT_EQ(plan.ranks(0).devices(d).device(), concat("cpu:", d));
  for (const proto::DevicePlan& device : plan.ranks(0).devices()) {
    for (const proto::VariableDef& variable : device.variables()) {
      ASSERT_TRUE(shapes_before.count(variable.name())) << variable.name();
      const std::vector<int64_t> dims(variable.logical_type().shape().begin(), variable.logical_type().shape().end());
      EXPECT_EQ(Shape(dims), shapes_before.at(variable.name())) << variable.name() << " on " << device.device();
    }
  }
}

// Relative to the larger of the two values (and 1e-3, for values near zero): sums over devices
// add in another order than the interpreter's.
void expect_close(double got, double want, const std::string& what) {
  EXPECT_LE(std::abs(got - want), 1e-5 * std::max(1e-3, std::abs(want))) << what << ": " << got << " vs " << want;
}

TEST(Relayout, ReLaidPipelineTrainsLikeTheInterpreter) {
  Pipeline relaid, reference;
  relay_graph(relaid.graph, 4, 3);
  Session session(relaid.graph, {relaid.loss}, {.placement = relaid_placement(Placement::cpu(4), 4, 3)});
  ASSERT_EQ(session.plan().ranks(0).devices_size(), 3);
  Interpreter interpreter(reference.graph);
  for (int64_t step = 0; step < 3; ++step) {
    const std::vector<HostTensor> got = session.step(Pipeline::feeds(step));
    const std::vector<HostTensor> want = interpreter.train_step(Pipeline::feeds(step), {reference.loss});
    ASSERT_EQ(got.size(), 1u);
    expect_close(got[0].get(0), want[0].get(0), concat("loss at step ", step));
  }
  const HostTensor w2 = session.variable("w2"), expected = interpreter.variable("w2");
  for (int64_t i = 0; i < w2.numel(); ++i) expect_close(w2.get(i), expected.get(i), concat("w2[", i, "]"));
}

TEST(Relayout, ReLaidParallelExamplesTrainLikeTheInterpreter) {
  const models::ExampleSize size{.batch = 24, .inputs = 8, .hidden = 24, .outputs = 4, .micro_batches = 2};
  for (const std::string& name : models::parallel_example_names()) {
    models::ParallelExample relaid = models::build_parallel_example(name, size);
    models::ParallelExample reference = models::build_parallel_example(name, size);
    relay_graph(*relaid.graph, 4, 3);
    Session session(*relaid.graph, {relaid.loss}, {.placement = relaid_placement(relaid.placement, 4, 3)});
    Interpreter interpreter(*reference.graph);
    for (int64_t step = 0; step < 2; ++step) {
      const std::vector<HostTensor> got = session.step(relaid.feeds(step));
      const std::vector<HostTensor> want = interpreter.train_step(reference.feeds(step), {reference.loss});
      ASSERT_EQ(got.size(), 1u) << name;
      expect_close(got[0].get(0), want[0].get(0), concat(name, ": loss at step ", step));
    }
  }
}

}  // namespace
}  // namespace tessel
