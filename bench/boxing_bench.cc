// Bytes that boxing moves per training step in each parallel example, against the lower
// bound of DESIGN.md's table for the same conversions, and the step time over 4 CPU devices
// beside the one-device interpreter.
//
//   tessel-bench-boxing [--steps N]
//
// "moved" adds up the registers of the plan's copy actors (each moves one register per step
// between two devices); "planned" is the planner's own count, which must agree; "bound" is
// the table: P->B 2T(n-1)/n, P->S and S->B T(n-1)/n, S->S T(n-1)/n^2 per device, B->S and
// B->P nothing, and between placements the bytes a device does not hold yet.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "apps/models/parallel.h"
#include "core/logging.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"

namespace {

using namespace tessel;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run(const std::string& name, const models::ExampleSize& size, const char* size_name, int steps) {
  models::ParallelExample example = models::build_parallel_example(name, size);
  Session session(*example.graph, {example.loss}, SessionOptions{.placement = example.placement});
  const proto::Plan& plan = session.plan();
  int64_t moved = 0;
  int copies = 0;
  std::map<std::string, int64_t> by_tensor;  // boxing/<tensor>/... -> bytes
  for (const proto::DevicePlan& device : plan.ranks(0).devices()) {
    for (const proto::ActorDef& actor : device.actors()) {
      if (actor.op() != "copy") continue;
      ++copies;
      moved += actor.outputs(0).register_bytes();
      const std::string& n = actor.name();
      by_tensor[n.substr(7, n.find("/copy") - 7)] += actor.outputs(0).register_bytes();
    }
  }
  std::vector<Feeds> batches;  // made before timing: the synthetic teacher is not what is measured
  for (int s = 0; s <= steps; ++s) batches.push_back(example.feeds(s));
  const auto feed = [&](int64_t step) -> std::optional<Feeds> { return batches[step % batches.size()]; };
  session.run(1, feed);  // warm up
  auto start = std::chrono::steady_clock::now();
  session.run(steps, feed);
  const double devices_ms = 1e3 * seconds_since(start) / steps;
  Interpreter reference(*example.graph);
  reference.train_step(*feed(0), {example.loss});
  start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) reference.train_step(*feed(s), {example.loss});
  const double one_ms = 1e3 * seconds_since(start) / steps;
  std::printf("%-16s %-6s %7d %12lld %12lld %12lld %7.3f %10.2f %10.2f\n", name.c_str(), size_name, copies,
              static_cast<long long>(moved), static_cast<long long>(plan.boxing_bytes()),
              static_cast<long long>(plan.boxing_lower_bound()),
              plan.boxing_lower_bound() > 0 ? static_cast<double>(moved) / plan.boxing_lower_bound() : 1.0, devices_ms,
              one_ms);
  std::string top;
  for (int k = 0; k < 3 && !by_tensor.empty(); ++k) {
    auto largest = std::max_element(by_tensor.begin(), by_tensor.end(),
                                    [](const auto& a, const auto& b) { return a.second < b.second; });
    top += concat(k ? ", " : "", largest->first, " ", largest->second);
    by_tensor.erase(largest);
  }
  std::printf("%-16s   largest conversions (bytes): %s\n", "", top.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  init_logging(argv[0]);
  int steps = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--steps" && i + 1 < argc) {
      steps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: tessel-bench-boxing [--steps N]\n");
      return 2;
    }
  }
  std::printf("boxing per training step, 4 CPU devices in one process (bytes; ratio = moved / bound)\n");
  std::printf("%-16s %-6s %7s %12s %12s %12s %7s %10s %10s\n", "example", "size", "copies", "moved", "planned", "bound",
              "ratio", "ms 4 dev", "ms 1 dev");
  const models::ExampleSize small{};
  const models::ExampleSize large{.batch = 256, .inputs = 256, .hidden = 1024, .outputs = 64, .micro_batches = 4};
  for (const std::string& name : models::parallel_example_names()) {
    run(name, small, "small", steps);
    run(name, large, "large", std::max(1, steps / 4));
  }
  std::printf(
      "small: batch 64, 32-128-16; large: batch 256, 256-1024-64 (pipeline: 4 micro-batches).\n"
      "ms 4 dev: actors over cpu:0..3 (1 scheduler thread and 1 kernel thread each) on this machine's cores;\n"
      "ms 1 dev: the reference interpreter, op by op, on one device (kernels on every core).\n"
      "4 simulated devices share this machine's cores, so the times compare overheads, not speed-ups.\n");
  return 0;
}
