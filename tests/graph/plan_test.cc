// Plans: what compile_plan() emits, the memory layout, and writing plans to files.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>

#include "graph/compile.h"
#include "graph/plan_inspect.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

const proto::DevicePlan& device_of(const proto::Plan& plan) { return plan.ranks(0).devices(0); }

const proto::ActorDef& actor_named(const proto::Plan& plan, const std::string& name) {
  for (const proto::ActorDef& actor : device_of(plan).actors()) {
    if (actor.name() == name) return actor;
  }
  throw Error::NotFound(name);
}

// x -> relu -> relu -> ... (six times) -> fetched. Each register lives from its writer to
// its one reader, so two buffers of 1 KiB hold the whole chain.
struct Chain {
  Graph g;
  Tensor x, out;
  Chain() {
    x = g.input("x", {256});
    out = x;
    for (int i = 0; i < 6; ++i) out = relu(out);
  }
};

TEST(Plan, SharingMakesTheArenaSmallerThanTheSumOfRegisters) {
  Chain chain;
  const proto::Plan shared = compile_plan(chain.g, {.fetches = {chain.out}});
  EXPECT_EQ(device_of(shared).register_bytes(), 7 * 1024) << "x and six relus, 1 KiB each";
  EXPECT_EQ(device_of(shared).arena_bytes(), 2 * 1024) << "a register and its reader's output alternate";

  const proto::Plan separate = compile_plan(chain.g, {.fetches = {chain.out}, .share_memory = false});
  EXPECT_EQ(device_of(separate).arena_bytes(), device_of(separate).register_bytes());
  EXPECT_EQ(device_of(separate).register_bytes(), 7 * 1024);
}

TEST(Plan, SharedBytesAreOrderedByControlEdges) {
  Chain chain;
  const proto::Plan plan = compile_plan(chain.g, {.fetches = {chain.out}});
  // x, relu_1, relu_3 and relu_5 share bytes. Within a step the data edges already order
  // them. Across steps, x's writer must wait for the last reader of those bytes in the
  // previous step: the fetch of relu_5 (which also implies relu_2 and relu_4 are done).
  const proto::ActorDef& input = actor_named(plan, "x");
  const proto::ActorDef& second = actor_named(plan, "relu_1");
  EXPECT_EQ(input.outputs(0).offsets(0), second.outputs(0).offsets(0));
  bool waits_for_previous_step = false;
  for (const proto::InputDef& in : input.inputs()) {
    waits_for_previous_step |= in.control() && in.initial_tokens() == 1 &&
                               device_of(plan).actors(in.producer().actor()).name() == "fetch/relu_5";
  }
  EXPECT_TRUE(waits_for_previous_step) << plan_to_bytes(plan, PlanFormat::text);
  int back_edges = 0;
  for (const proto::InputDef& in : input.inputs()) back_edges += in.initial_tokens();
  EXPECT_EQ(back_edges, 1) << "waits implied by another are left out";
}

TEST(Plan, RegistersWithSeveralBuffersAreNotShared) {
  Chain chain;
  PlanOptions options{.fetches = {chain.out}, .register_count = 2};
  const proto::Plan plan = compile_plan(chain.g, options);
  EXPECT_EQ(device_of(plan).register_bytes(), 14 * 1024);
  EXPECT_EQ(device_of(plan).arena_bytes(), 14 * 1024);
  for (const proto::ActorDef& actor : device_of(plan).actors()) {
    for (const proto::OutputDef& output : actor.outputs()) {
      EXPECT_FALSE(output.shared());
      if (!output.control()) {
        EXPECT_EQ(output.offsets_size(), 2);
      }
    }
  }
}

TEST(Plan, TrainingPlanHasVariablesUpdatesAndTheirOrdering) {
  Graph g;
  Tensor x = g.input("x", {4, 3});
  Tensor w = g.param("w", {3, 2}, init::normal(0.1));
  Tensor loss = mean(matmul(x, w));
  g.minimize(loss, SGD{.lr = 0.1, .momentum = 0.9});
  const proto::Plan plan = compile_plan(g, {.fetches = {loss}});
  EXPECT_TRUE(plan.training());
  ASSERT_EQ(device_of(plan).variables_size(), 2) << "w and its momentum";
  const proto::ActorDef& variable = actor_named(plan, "w");
  EXPECT_EQ(variable.kind(), proto::VARIABLE);
  EXPECT_TRUE(variable.driven());
  int updates = 0;
  for (const proto::ActorDef& actor : device_of(plan).actors()) {
    if (actor.kind() != proto::UPDATE) continue;
    ++updates;
    EXPECT_EQ(actor.op(), "sgd_update");
    // It reads w, and so does the backward matmul for x's gradient... which x does not need;
    // every reader of w other than the update must reach it.
    EXPECT_EQ(device_of(plan).actors(actor.inputs(0).producer().actor()).name(), "w");
  }
  EXPECT_EQ(updates, 1);
  const proto::Plan evaluation = compile_plan(g, {.fetches = {loss}, .training = false});
  for (const proto::ActorDef& actor : device_of(evaluation).actors()) EXPECT_NE(actor.kind(), proto::UPDATE);
  EXPECT_EQ(device_of(evaluation).variable_arena_bytes(), device_of(plan).variable_arena_bytes())
      << "every variable is laid out, used or not, so plans of one graph share variables";
}

TEST(Plan, RoundTripsThroughBinaryAndTextFiles) {
  Chain chain;
  const proto::Plan plan = compile_plan(chain.g, {.fetches = {chain.out}});
  const std::string directory = ::testing::TempDir();
  for (const std::string name : {"chain.plan", "chain.pbtxt"}) {
    const std::string path = directory + "/" + name;
    write_plan(plan, path);
    const proto::Plan loaded = read_plan(path);
    EXPECT_EQ(plan_to_bytes(loaded, PlanFormat::binary), plan_to_bytes(plan, PlanFormat::binary)) << name;
    std::filesystem::remove(path);
  }
  EXPECT_EQ(plan_to_bytes(plan, PlanFormat::binary), plan_to_bytes(plan, PlanFormat::binary)) << "deterministic";
}

TEST(Plan, CorruptPlansAreClearErrors) {
  Chain chain;
  proto::Plan plan = compile_plan(chain.g, {.fetches = {chain.out}});
  EXPECT_TESSEL_ERROR(plan_from_bytes("not a plan at all", PlanFormat::text), ErrorCode::kDataLoss,
                      "tessel.proto.Plan");
  proto::DevicePlan* device = plan.mutable_ranks(0)->mutable_devices(0);
  device->mutable_actors(2)->mutable_inputs(0)->mutable_producer()->set_actor(99);
  EXPECT_TESSEL_ERROR(plan_from_bytes(plan_to_bytes(plan, PlanFormat::binary), PlanFormat::binary),
                      ErrorCode::kInvalidArgument, "actor 2 'relu_1'", "names actor 99");
  plan = compile_plan(chain.g, {.fetches = {chain.out}});
  plan.mutable_ranks(0)->mutable_devices(0)->set_arena_bytes(100);
  EXPECT_TESSEL_ERROR(validate_plan(plan), ErrorCode::kInvalidArgument, "outside its arena of 100 bytes");
  EXPECT_TESSEL_ERROR(read_plan("/nonexistent/dir/x.plan"), ErrorCode::kNotFound, "/nonexistent/dir/x.plan");
}

// What the runtime takes from a plan without looking again is checked first (each of these ran
// into a crash under the plan fuzzer, tests/fuzz/plan_fuzz.cc): an actor kind the runtime does
// not know, a register off its alignment, an input of a feed the plan does not declare or
// outside it, a fetch index out of range, arenas of impossible sizes, a misplaced variable.
TEST(Plan, WhatTheRuntimeReliesOnIsChecked) {
  Chain chain;
  const proto::Plan plan = compile_plan(chain.g, {.fetches = {chain.out}});
  const auto actor_of_kind = [](proto::Plan& p, proto::ActorKind kind) -> proto::ActorDef& {
    for (proto::ActorDef& actor : *p.mutable_ranks(0)->mutable_devices(0)->mutable_actors()) {
      if (actor.kind() == kind) return actor;
    }
    throw Error::NotFound("no such actor");
  };
  ASSERT_NO_THROW(validate_plan(plan));
  proto::Plan bad = plan;
  actor_of_kind(bad, proto::KERNEL).set_kind(static_cast<proto::ActorKind>(96));
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "has kind 96, which is no actor kind");
  bad = plan;
  actor_of_kind(bad, proto::KERNEL).mutable_outputs(0)->set_offsets(0, 4);
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "a register at offset 4, not a multiple of 64");
  bad = plan;
  actor_of_kind(bad, proto::INPUT).set_feed("y");
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "reads feed 'y', which the plan does not declare");
  bad = plan;
  actor_of_kind(bad, proto::INPUT).add_feed_starts(1);
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "holds [256] f32 from starts [1] of feed 'x' [256]",
                      "outside it");
  bad = plan;
  bad.mutable_feeds(0)->mutable_type()->set_dtype("i32");
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "of feed 'x' [256] i32, outside it");
  bad = plan;
  actor_of_kind(bad, proto::FETCH).set_fetch_index(-3);
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "is fetch -3 of a plan of 1 fetches");
  bad = plan;
  actor_of_kind(bad, proto::KERNEL).set_op("no_such_op");
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "runs op 'no_such_op', which is not registered");
  bad = plan;
  proto::OutputDef& relu_out = *actor_of_kind(bad, proto::KERNEL).mutable_outputs(0);
  relu_out.mutable_type()->set_shape(0, 128);
  relu_out.set_register_bytes(512);
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument,
                      "has outputs ([128] f32) where its op makes ([256] f32) of its inputs ([256] f32)");
  bad = plan;
  (*actor_of_kind(bad, proto::KERNEL).mutable_attrs())["axis"].set_i(3);
  actor_of_kind(bad, proto::KERNEL).set_op("softmax");
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "has inputs or attributes its op refuses");
  bad = plan;
  bad.mutable_ranks(0)->mutable_devices(0)->set_arena_bytes(-64);
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "has arenas of -64 and");
}

// What is not a plan file says so: a directory, an empty file or /dev/null (not "an evaluation
// plan of 0 ranks"), and a text plan's parse error names its line and column.
TEST(Plan, FilesThatAreNoPlansSayWhy) {
  EXPECT_TESSEL_ERROR(read_plan("/tmp"), ErrorCode::kInvalidArgument, "'/tmp' is a directory, not a plan file");
  EXPECT_TESSEL_ERROR(read_plan("/dev/null"), ErrorCode::kDataLoss, "reading plan '/dev/null'", "the plan is empty");
  EXPECT_TESSEL_ERROR(plan_from_bytes("", PlanFormat::binary), ErrorCode::kDataLoss, "the plan is empty: 0 bytes");
  EXPECT_TESSEL_ERROR(plan_from_bytes("", PlanFormat::text), ErrorCode::kInvalidArgument, "holds no rank's share");
  EXPECT_TESSEL_ERROR(plan_from_bytes("seed: 1\nranks {\n  rank: oops\n}\n", PlanFormat::text), ErrorCode::kDataLoss,
                      "the text is not a valid tessel.proto.Plan: line 3, column");
  // The text parser takes any bytes in a string; the binary format would not read them back.
  EXPECT_TESSEL_ERROR(plan_from_bytes("ranks {\n  devices {\n    device: \"cpu\\377\"\n  }\n}\n", PlanFormat::text),
                      ErrorCode::kDataLoss, "a string in it is not UTF-8");
}

// A collective's group comes from the plan's bytes too: a member out of range, or one that the
// group puts on another device, is refused by name before any executor reads it.
TEST(Plan, CollectivesWhoseGroupDoesNotHoldTogetherAreRefused) {
  Graph g;
  Tensor x = g.input("x", {4, 6});
  pin(x, Placement::cpu(2), {S(0)});
  Tensor y = sum(x);  // P(sum), all-reduced for the fetch
  const proto::Plan plan = compile_plan(g, {.fetches = {y}, .training = false, .placement = Placement::cpu(2)});
  const auto first_collective = [](proto::Plan& p) -> proto::ActorDef& {
    for (proto::ActorDef& actor : *p.mutable_ranks(0)->mutable_devices(0)->mutable_actors()) {
      if (actor.kind() == proto::COLLECTIVE) return actor;
    }
    throw Error::NotFound("no collective");
  };
  proto::Plan bad = plan;
  (*first_collective(bad).mutable_attrs())["member"].set_i(5);
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "all_reduce", "is member 5 of 2");
  bad = plan;
  (*first_collective(bad).mutable_attrs())["member"].set_i(1);
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "not on rank 0 and cpu:0");
  bad = plan;
  first_collective(bad).mutable_attrs()->erase("members");
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "members");
  bad = plan;
  first_collective(bad).set_op("broadcast_everything");
  EXPECT_TESSEL_ERROR(validate_plan(bad), ErrorCode::kInvalidArgument, "'broadcast_everything' is not a collective");
}

TEST(Plan, BadOptionsAreClearErrors) {
  Chain chain;
  Graph other;
  Tensor stranger = other.input("s", {1});
  EXPECT_TESSEL_ERROR(compile_plan(chain.g, {.fetches = {stranger}}), ErrorCode::kInvalidArgument, "not of this graph");
  EXPECT_TESSEL_ERROR(compile_plan(chain.g, {.fetches = {chain.out}, .register_count = 0}), ErrorCode::kInvalidArgument,
                      "register_count is 0");
  PlanOptions options{.fetches = {chain.out}};
  options.register_counts[chain.x] = -1;
  EXPECT_TESSEL_ERROR(compile_plan(chain.g, options), ErrorCode::kInvalidArgument, "tensor 'x'", "-1 registers");
}

TEST(PlanInspector, ReportsArenaAgainstRegisterSumAndEveryActor) {
  Chain chain;
  const proto::Plan plan = compile_plan(chain.g, {.fetches = {chain.out}});
  const std::string report = describe_plan(plan);
  EXPECT_NE(report.find("arena 2.0 KiB (2048 bytes) for registers that add up to 7.0 KiB (7168 bytes)"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("the arena is 29% of their sum"), std::string::npos) << report;
  for (const proto::ActorDef& actor : device_of(plan).actors()) {
    EXPECT_NE(report.find(actor.name()), std::string::npos) << actor.name();
  }
}

TEST(PlanInspector, DotHasOneNodePerActorAndOneEdgePerConsumer) {
  Chain chain;
  const proto::Plan plan = compile_plan(chain.g, {.fetches = {chain.out}});
  const std::string dot = plan_to_dot(plan);
  ASSERT_EQ(dot.rfind("digraph plan {", 0), 0u);
  size_t nodes = 0, edges = 0, dashed = 0;
  std::istringstream lines(dot);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("[label=\"") != std::string::npos && line.find("->") == std::string::npos) ++nodes;
    if (line.find("->") != std::string::npos) ++edges;
    if (line.find("style=dashed") != std::string::npos) ++dashed;
  }
  size_t consumers = 0, control = 0;
  for (const proto::ActorDef& actor : device_of(plan).actors()) {
    for (const proto::OutputDef& output : actor.outputs()) {
      consumers += output.consumers_size();
      if (output.control()) control += output.consumers_size();
    }
  }
  EXPECT_EQ(nodes, static_cast<size_t>(device_of(plan).actors_size()));
  EXPECT_EQ(edges, consumers);
  EXPECT_EQ(dashed, control);
  EXPECT_GT(control, 0u);
}

// Over two devices every register shows its tensor's layout, an input from the other device
// names that device, the dot output labels data edges with their SBP, and the plan's boxing
// bytes are the bytes of its copy actors and its collectives.
TEST(PlanInspector, ShowsTheLayoutOfEveryTensorAndEdgesBetweenDevices) {
  Graph g;
  Tensor x = g.input("x", {4, 6});
  Tensor w = g.param("w", {6, 3}, init::normal(0.1));
  pin(x, Placement::cpu(2), {S(0)});
  Tensor product = matmul(x, w);                                    // S(0) x B -> S(0)
  Tensor y = sum(product);                                          // a partial sum, all-reduced for the fetch
  Tensor gathered = to(product, Placement::cpu_devices({1}), {B});  // cpu:0's rows copied to cpu:1
  const proto::Plan plan =
      compile_plan(g, {.fetches = {y, gathered}, .training = false, .placement = Placement::cpu(2)});
  ASSERT_EQ(plan.ranks(0).devices_size(), 2);
  const std::string report = describe_plan(plan);
  int64_t copied = 0;
  int all_reduces = 0;
  for (const proto::DevicePlan& device : plan.ranks(0).devices()) {
    for (const proto::ActorDef& actor : device.actors()) {
      for (const proto::OutputDef& output : actor.outputs()) {
        if (output.control()) continue;
        EXPECT_FALSE(output.layout().empty()) << actor.name();
        EXPECT_NE(report.find(concat("{", output.layout(), "}")), std::string::npos) << actor.name();
      }
      if (actor.op() == "copy") copied += actor.outputs(0).register_bytes();
      all_reduces += actor.kind() == proto::COLLECTIVE && actor.op() == "all_reduce";
    }
  }
  EXPECT_NE(report.find("{S(0) on cpu:{0,1} mesh [2]}"), std::string::npos) << report;
  EXPECT_NE(report.find("{P(sum) on cpu:{0,1} mesh [2]}"), std::string::npos) << report;
  EXPECT_NE(report.find(" cpu:0/"), std::string::npos) << report;  // cpu:1 reads cpu:0's rows
  EXPECT_EQ(all_reduces, 2) << "one all-reduce actor per device for the partial sum";
  EXPECT_EQ(copied, 2 * 3 * 4) << "cpu:0's two rows of three floats";
  EXPECT_EQ(plan.boxing_bytes(), copied + 2 * 4) << "the copies, and the all-reduce of a 4-byte scalar over 2 devices";
  EXPECT_NE(report.find("boxing: 32 B (32 bytes) between devices per step"), std::string::npos) << report;
  const std::string dot = plan_to_dot(plan);
  EXPECT_NE(dot.find("\\nS(0), 24 B\""), std::string::npos) << dot;  // the layout and the bytes
  EXPECT_NE(dot.find("-> r0_cpu0_"), std::string::npos) << dot;
  EXPECT_NE(dot.find("r0_cpu1_"), std::string::npos) << dot;
}

}  // namespace
// A binary plan carries its checksum: every one of 200 single flipped bits, anywhere in the file
// (header or plan), is refused as corrupt before anything of it is used.
TEST(Plan, EverySingleFlippedBitIsRefused) {
  Chain chain;
  const std::string bytes = plan_to_bytes(compile_plan(chain.g, {.fetches = {chain.out}}), PlanFormat::binary);
  ASSERT_NO_THROW(plan_from_bytes(bytes, PlanFormat::binary));
  std::mt19937_64 random(17);
  for (int flip = 0; flip < 200; ++flip) {
    std::string flipped = bytes;
    const size_t bit = random() % (flipped.size() * 8);
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    try {
      plan_from_bytes(flipped, PlanFormat::binary);
      ADD_FAILURE() << "a flip of bit " << bit << " of " << flipped.size() * 8 << " went unnoticed";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kDataLoss) << error.what();
    }
  }
  EXPECT_TESSEL_ERROR(plan_from_bytes(bytes.substr(0, bytes.size() - 1), PlanFormat::binary), ErrorCode::kDataLoss,
                      "truncated or too long");
  EXPECT_TESSEL_ERROR(plan_from_bytes(bytes.substr(24), PlanFormat::binary), ErrorCode::kDataLoss,
                      "not a binary Tessel plan");
}

}  // namespace tessel
