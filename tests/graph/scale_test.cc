// The plan grows with the graph and a rank's devices, not with the job: actors per device stay
// the same as devices are added, one rank's share of a large job compiles alone, and the
// planner's lower bound never exceeds what the plan moves.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <sstream>

#include "apps/models/parallel.h"
#include "graph/compile.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "sbp/boxing.h"
#include "sbp/collective.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

struct Mlp {
  Graph graph{3};
  Tensor loss;
};

// A data-parallel MLP of `layers` tanh layers over `devices` devices: batch S(0), parameters B.
void data_parallel_mlp(Mlp& mlp, int devices, int layers = 4) {
  Graph& g = mlp.graph;
  const Placement placement = Placement::cpu(devices);
  Tensor h = g.input("x", {2 * devices, 16});
  Tensor target = g.input("target", {2 * devices, 16});
  pin(h, placement, {S(0)});
  pin(target, placement, {S(0)});
  for (int l = 0; l < layers; ++l) {
    Tensor w = g.param(concat("w", l), {16, 16}, init::normal(0.1));
    Tensor b = g.param(concat("b", l), {16}, init::zeros());
    pin(w, placement, {B});
    pin(b, placement, {B});
    h = tanh(bias_add(matmul(h, w), b));
  }
  Tensor error = h - target;
  mlp.loss = mean(error * error);
  g.minimize(mlp.loss, SGD{.lr = 0.1});
}

// Actors on each device of the whole-job plan, by kind of actor.
std::map<std::string, int> actors_on(const proto::DevicePlan& device) {
  std::map<std::string, int> kinds;
  for (const proto::ActorDef& actor : device.actors())
    ++kinds[actor.op().empty() ? proto::ActorKind_Name(actor.kind()) : actor.op()];
  return kinds;
}

TEST(Scale, ActorsPerDeviceOfADataParallelMlpDoNotGrowWithDevices) {
  std::map<std::string, int> at_four;
  for (int devices : {4, 16, 64}) {
    Mlp mlp;
    data_parallel_mlp(mlp, devices);
    const proto::Plan plan = compile_plan(mlp.graph, {.fetches = {mlp.loss}, .placement = Placement::cpu(devices)});
    ASSERT_EQ(plan.ranks(0).devices_size(), devices);
    // cpu:0 also holds the fetch; every other device is alike.
    for (int d = 1; d < devices; ++d) {
      const std::map<std::string, int> kinds = actors_on(plan.ranks(0).devices(d));
      if (at_four.empty()) at_four = kinds;
      EXPECT_EQ(kinds, at_four) << devices << " devices, cpu:" << d;
    }
    EXPECT_EQ(actors_on(plan.ranks(0).devices(1)).at("all_reduce"), 2 * 4 + 1)
        << "one all-reduce per gradient of 4 weights and 4 biases, and one for the loss";
  }
}

TEST(Scale, OneRankCompilesItsShareOfA256DeviceJob) {
  Mlp mlp;
  data_parallel_mlp(mlp, 256, 8);
  for (int rank : {0, 97, 255}) {
    const proto::Plan plan =
        compile_plan(mlp.graph, {.fetches = {mlp.loss}, .placement = Placement::cpu(256), .ranks = 256, .rank = rank});
    ASSERT_EQ(plan.ranks_size(), 1);
    EXPECT_EQ(plan.ranks(0).rank(), rank);
    EXPECT_EQ(plan.rank_count(), 256);
    ASSERT_EQ(plan.ranks(0).devices_size(), 1);
    EXPECT_EQ(plan.ranks(0).devices(0).device(), concat("cpu:", rank));
    int collectives = 0;
    for (const proto::ActorDef& actor : plan.ranks(0).devices(0).actors()) {
      if (actor.kind() != proto::COLLECTIVE) continue;
      ++collectives;
      EXPECT_EQ(actor.attrs().at("member").i(), rank) << actor.name();
      EXPECT_EQ(actor.attrs().at("member_ranks").ints().values_size(), 256) << actor.name();
    }
    EXPECT_EQ(collectives, 2 * 8 + 1);
    // It reads back as a plan file would, its ends on the 255 absent ranks named by rank alone.
    EXPECT_NO_THROW(plan_from_bytes(plan_to_bytes(plan, PlanFormat::binary), PlanFormat::binary));
  }
}

// Every rank's share equals the whole-job plan's share of that rank field for field (actors,
// names, channels, registers, offsets, control edges, arenas), for every example, on 4 and 8
// devices over 2 and 4 ranks, with and without memory sharing, on uneven batches. Lifetimes
// count schedule positions over the plan, so only they, and the ends on ranks a share lacks
// (named by rank alone, device and actor -1), may differ.
TEST(Scale, EveryRanksShareIsItsPartOfTheWholeJobPlan) {
  for (const std::string& name : models::parallel_example_names()) {
    for (int devices : {4, 8}) {
      for (int ranks : {2, 4}) {
        for (bool share_memory : {true, false}) {
          models::ParallelExample example =
              models::build_parallel_example(name, {.batch = name == "pipeline" ? 64 : 30, .devices = devices});
          PlanOptions whole{
              .fetches = {example.loss}, .share_memory = share_memory, .placement = example.placement, .ranks = ranks};
          const proto::Plan job = compile_plan(*example.graph, whole);
          for (int rank = 0; rank < ranks; ++rank) {
            PlanOptions options = whole;
            options.rank = rank;
            const proto::Plan share = compile_plan(*example.graph, options);
            std::string differences;
            google::protobuf::util::MessageDifferencer differencer;
            differencer.ReportDifferencesToString(&differences);
            differencer.IgnoreField(proto::OutputDef::descriptor()->FindFieldByName("first_use"));
            differencer.IgnoreField(proto::OutputDef::descriptor()->FindFieldByName("last_use"));
            differencer.Compare(share.ranks(0), share_of(job, rank));
            std::string unexpected;
            std::istringstream lines(differences);
            for (std::string line; std::getline(lines, line);) {
              if (line.rfind("ignored:", 0) == 0) continue;
              const bool end =
                  line.find("consumers[") != std::string::npos || line.find("producer") != std::string::npos;
              if (end && (line.find(": -1") != std::string::npos || line.find("-1 ->") != std::string::npos)) continue;
              unexpected += line + "\n";
            }
            EXPECT_EQ(unexpected, "") << name << " on " << devices << " devices over " << ranks << " ranks, rank "
                                      << rank << (share_memory ? "" : ", without sharing");
          }
        }
      }
    }
  }
}

TEST(Scale, TheLowerBoundNeverExceedsWhatThePlanMoves) {
  for (const std::string& name : models::parallel_example_names()) {
    models::ParallelExample example = models::build_parallel_example(name);
    const proto::Plan plan = compile_plan(*example.graph, {.fetches = {example.loss}, .placement = example.placement});
    EXPECT_LE(plan.boxing_lower_bound(), plan.boxing_bytes()) << name;
    EXPECT_GT(plan.boxing_lower_bound(), 0) << name;
  }
  // A reshape of a partial sum: its P(sum) stays partial through the reshape.
  Graph g(5);
  Tensor x = g.input("x", {8, 16});
  Tensor w = g.param("w", {16, 12}, init::normal(0.1));
  pin(x, Placement::cpu(4), {S(1)});
  pin(w, Placement::cpu(4), {S(0)});
  Tensor flat = reshape(matmul(x, w), {96});  // P(sum) from the split inner dimension
  Tensor loss = mean(flat * flat);
  g.minimize(loss, SGD{.lr = 0.1});
  const proto::Plan plan = compile_plan(g, {.fetches = {loss}, .placement = Placement::cpu(4)});
  EXPECT_LE(plan.boxing_lower_bound(), plan.boxing_bytes());
  // Every collective on uneven splits: the bound is at most what the collective moves.
  for (int n = 2; n <= 5; ++n) {
    for (const Shape& shape : {Shape{10, 7}, Shape{7, 5}, Shape{13, 6}}) {
      const Placement devices = Placement::cpu(n);
      for (const auto& [from, to] : std::vector<std::pair<Sbp, Sbp>>{
               {P, B}, {P, S(0)}, {P, S(1)}, {S(0), B}, {S(1), B}, {S(0), S(1)}, {S(1), S(0)}}) {
        const TensorType type{shape, DType::f32};
        const auto steps = collective_path(shape, {devices, {from}}, {devices, {to}});
        ASSERT_TRUE(steps.has_value());
        int64_t moved = 0;
        for (const CollectiveStep& step : *steps) moved += collective_bytes(shape, type.dtype, step);
        EXPECT_LE(boxing_lower_bound(type, {devices, {from}}, {devices, {to}}), moved)
            << from << " -> " << to << " of " << shape << " on " << n << " devices";
      }
    }
  }
}

}  // namespace
}  // namespace tessel
