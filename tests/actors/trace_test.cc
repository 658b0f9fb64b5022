// The Chrome trace (actors/trace.h): read back with nlohmann-json, it holds one span per actor of
// the plan per step, on one track per device, and one instant event per step.
#include "actors/trace.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "core/error.h"
#include "proto/plan.pb.h"
#include "tessel.h"

namespace tessel {
namespace {

using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

TEST(Trace, OffByDefaultAndStopWritesNothing) {
  EXPECT_EQ(trace::active(), nullptr);
  EXPECT_EQ(trace::stop(), "");
  EXPECT_THROW(trace::start(""), Error);
}

TEST(Trace, HoldsOneSpanPerActorPerStepOnATrackPerDevice) {
  const std::string path = testing::TempDir() + "/tessel-trace-test.json";
  std::filesystem::remove(path);
  Graph g(/*seed=*/3);
  const Placement devices = Placement::cpu(2);
  Tensor x = g.input("x", {8, 6});
  Tensor target = g.input("target", {8, 4});
  Tensor w1 = g.param("w1", {6, 10}, init::normal(0.3));
  Tensor w2 = g.param("w2", {10, 4}, init::normal(0.3));
  pin(x, devices, {B});
  pin(w1, devices, {S(1)});
  pin(w2, devices, {S(0)});
  Tensor error = to(matmul(relu(matmul(x, w1)), w2), {B}) - target;
  Tensor loss = mean(error * error);
  g.minimize(loss, SGD{.lr = 0.1});
  HostTensor xs(Shape{8, 6}, f32), ts(Shape{8, 4}, f32);
  for (int64_t i = 0; i < xs.numel(); ++i) xs.set(i, std::sin(0.3 * i));
  for (int64_t i = 0; i < ts.numel(); ++i) ts.set(i, std::cos(0.2 * i));
  constexpr int kSteps = 5;
  int actors = 0;
  std::set<std::string> device_names;
  trace::start(path);
  ASSERT_NE(trace::active(), nullptr);
  {
    Session session(g, {loss}, {.placement = devices});
    for (const proto::DevicePlan& device : session.plan().ranks(0).devices()) {
      actors += device.actors_size();
      device_names.insert(device.device());
    }
    for (int step = 0; step < kSteps; ++step) session.step({{"x", xs}, {"target", ts}});
  }
  EXPECT_EQ(trace::stop(), path);
  EXPECT_EQ(trace::active(), nullptr);

  const json file = read_json(path);
  ASSERT_TRUE(file.contains("traceEvents"));
  std::map<int, std::string> threads;
  std::set<std::tuple<int, std::string, int64_t>> seen;  // (track, name, step): each once
  int spans = 0, steps = 0, collectives = 0, matmuls = 0;
  for (const json& event : file["traceEvents"]) {
    const std::string phase = event.at("ph");
    if (phase == "M" && event.at("name") == "thread_name") threads[event.at("tid")] = event.at("args").at("name");
    if (phase == "i") {
      EXPECT_EQ(event.at("name"), concat("step ", steps));
      ++steps;
    }
    if (phase != "X") continue;
    ++spans;
    const int64_t step = event.at("args").at("step");
    EXPECT_GE(step, 0);
    EXPECT_LT(step, kSteps);
    EXPECT_GE(event.at("args").at("bytes").get<int64_t>(), 0);
    EXPECT_GE(event.at("dur").get<int64_t>(), 0);
    EXPECT_TRUE(seen.emplace(event.at("tid"), event.at("name"), step).second)
        << event.at("name") << " twice at step " << step;
    if (event.at("cat") == "collective") ++collectives;
    if (std::string(event.at("name")).rfind("matmul ", 0) == 0) ++matmuls;
  }
  EXPECT_EQ(spans, actors * kSteps) << "one span per actor of the plan per step";
  EXPECT_EQ(steps, kSteps);
  EXPECT_GT(collectives, 0) << "the all-reduce of the row-parallel product";
  EXPECT_GT(matmuls, 0);
  std::set<std::string> tracks;
  for (const auto& [tid, name] : threads) tracks.insert(name);
  std::set<std::string> expected = device_names;
  expected.insert("steps");
  EXPECT_EQ(tracks, expected) << "one track per device, and the steps";
  std::filesystem::remove(path);
}

TEST(Trace, MergesRanksFilesAndRefusesOthers) {
  const std::string dir = testing::TempDir();
  for (int rank = 0; rank < 2; ++rank) {
    std::ofstream(concat(dir, "/part", rank, ".json"))
        << json{{"traceEvents", {{{"name", "k"}, {"ph", "X"}, {"pid", rank}, {"tid", 1}, {"ts", 1}, {"dur", 2}}}}}.dump();
  }
  trace::merge({dir + "/part0.json", dir + "/part1.json"}, dir + "/merged.json");
  const json merged = read_json(dir + "/merged.json");
  ASSERT_EQ(merged.at("traceEvents").size(), 2u);
  EXPECT_EQ(merged["traceEvents"][1]["pid"], 1);
  std::ofstream(dir + "/bad.json") << "{\"not\": ";
  try {
    trace::merge({dir + "/bad.json"}, dir + "/merged.json");
    FAIL() << "merged a file that is not a trace";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("bad.json is not a trace file"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace tessel
