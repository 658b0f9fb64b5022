// Bytes that boxing moves per training step in each parallel example, against the lower
// bound of DESIGN.md's table for the same conversions, and the step time over 4 CPU devices
// beside the one-device interpreter.
//
//   tessel-bench-boxing [--steps N]
//
// "moved" adds up the registers of the plan's copy actors (each moves one register per step
// between two devices) and the bytes each COLLECTIVE actor's member receives from the other
// members (collective_received_bytes); "planned" is the planner's own count, which must agree
// (a difference is reported and makes the bench fail); "bound" is the table: P->B 2T(n-1)/n,
// P->S and S->B T(n-1)/n, S->S T(n-1)/n^2 per device, B->S and B->P nothing, and between
// placements the bytes a device does not hold yet.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "apps/cli/flags.h"
#include "apps/models/parallel.h"
#include "core/logging.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "sbp/collective.h"
#include "sbp/sbp.h"

namespace {

using namespace tessel;

const proto::AttributeValue& attribute(const proto::ActorDef& actor, const std::string& name) {
  auto it = actor.attrs().find(name);
  if (it == actor.attrs().end()) throw std::runtime_error(concat(actor.name(), " has no attribute '", name, "'"));
  return it->second;
}

// The elements of `box` with `axis` cut to the `index`-th of `count` splits (sbp/sbp.h's
// shard_range, as actors/collective_layout.cc cuts it); `axis` -1 leaves the box whole.
int64_t split_elements(std::vector<int64_t> box, int axis, int count, int index) {
  if (axis >= 0) {
    const auto [begin, end] = shard_range(box.at(axis), count, index);
    box[axis] = end - begin;
  }
  int64_t elements = 1;
  for (int64_t extent : box) elements *= extent;
  return elements;
}

// The bytes one COLLECTIVE actor (member m of n over a box of E elements) receives from the
// other members per step, as comm::Communicator moves them (comm/communicator.h):
//   all_reduce      reduce-scatter of flat chunks c_j (E/n, the first E mod n one more), then an
//                   all-gather of them: (n-1) c_m + (E - c_m);
//   reduce_scatter  the other members' partials of its output chunk o_m (to_axis): (n-1) o_m;
//   all_gather      every chunk but its own i_m (from_axis): E - i_m;
//   all_to_all      its output o_m (to_axis) but the part of it that its own input (from_axis)
//                   already holds.
// Summed over the members of every group, this is sbp/collective.cc's collective_bytes.
int64_t collective_received_bytes(const proto::ActorDef& actor) {
  const std::optional<CollectiveKind> kind = parse_collective(actor.op());
  if (!kind) throw std::runtime_error(concat(actor.name(), ": '", actor.op(), "' is not a collective"));
  const std::vector<int64_t> box(attribute(actor, "box").ints().values().begin(),
                                 attribute(actor, "box").ints().values().end());
  const int n = attribute(actor, "members").ints().values_size();
  const int m = static_cast<int>(attribute(actor, "member").i());
  const int from_axis = static_cast<int>(attribute(actor, "from_axis").i());
  const int to_axis = static_cast<int>(attribute(actor, "to_axis").i());
  const int64_t element = static_cast<int64_t>(size_of(dtype_named(actor.outputs(0).type().dtype())));
  const int64_t whole = split_elements(box, -1, n, m);
  int64_t elements = 0;
  switch (*kind) {
    case CollectiveKind::all_reduce: {
      const int64_t chunk = whole / n + (m < whole % n ? 1 : 0);
      elements = (n - 1) * chunk + (whole - chunk);
      break;
    }
    case CollectiveKind::reduce_scatter:
      elements = (n - 1) * split_elements(box, to_axis, n, m);
      break;
    case CollectiveKind::all_gather:
      elements = whole - split_elements(box, from_axis, n, m);
      break;
    case CollectiveKind::all_to_all: {
      std::vector<int64_t> own_input = box;  // the part of the box this member's input holds
      const auto [begin, end] = shard_range(box.at(from_axis), n, m);
      own_input[from_axis] = end - begin;
      elements = split_elements(box, to_axis, n, m) - split_elements(own_input, to_axis, n, m);
      break;
    }
  }
  return elements * element;
}

// The tensor of a boxing actor's name: "boxing/<tensor>/<what>@<device>#<count>".
std::string boxed_tensor(const std::string& name) {
  const size_t last = name.rfind('/');
  return last == std::string::npos || last < 7 ? name : name.substr(7, last - 7);
}

// What a plan's actors move per step, over every rank and device.
struct BoxingCount {
  int64_t moved = 0;
  int copies = 0, collectives = 0;
  std::map<std::string, int64_t> by_tensor;  // <tensor> of boxing/<tensor>/... -> bytes
};

BoxingCount count_boxing(const proto::Plan& plan) {
  BoxingCount count;
  for (const proto::RankPlan& rank : plan.ranks()) {
    for (const proto::DevicePlan& device : rank.devices()) {
      for (const proto::ActorDef& actor : device.actors()) {
        int64_t bytes = 0;
        if (actor.kind() == proto::COLLECTIVE) {
          ++count.collectives;
          bytes = collective_received_bytes(actor);
        } else if (actor.op() == "copy") {
          ++count.copies;
          bytes = actor.outputs(0).register_bytes();
        } else {
          continue;
        }
        count.moved += bytes;
        count.by_tensor[boxed_tensor(actor.name())] += bytes;
      }
    }
  }
  return count;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Prints one example's row; false when the actors' bytes and the planner's count differ.
bool run(const std::string& name, const models::ExampleSize& size, const char* size_name, int steps) {
  models::ParallelExample example = models::build_parallel_example(name, size);
  Session session(*example.graph, {example.loss}, SessionOptions{.placement = example.placement});
  const proto::Plan& plan = session.plan();
  const BoxingCount count = count_boxing(plan);
  const int64_t moved = count.moved;
  std::map<std::string, int64_t> by_tensor = count.by_tensor;
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
  const bool agree = moved == plan.boxing_bytes();
  std::printf("%-16s %-6s %7d %11d %12lld %12lld %12lld %7.3f %10.2f %10.2f%s\n", name.c_str(), size_name, count.copies,
              count.collectives, static_cast<long long>(moved), static_cast<long long>(plan.boxing_bytes()),
              static_cast<long long>(plan.boxing_lower_bound()),
              plan.boxing_lower_bound() > 0 ? static_cast<double>(moved) / plan.boxing_lower_bound() : 1.0, devices_ms,
              one_ms, agree ? "" : "  MOVED != PLANNED");
  std::string top;
  for (int k = 0; k < 3 && !by_tensor.empty(); ++k) {
    auto largest = std::max_element(by_tensor.begin(), by_tensor.end(),
                                    [](const auto& a, const auto& b) { return a.second < b.second; });
    top += concat(k ? ", " : "", largest->first, " ", largest->second);
    by_tensor.erase(largest);
  }
  std::printf("%-16s   largest conversions (bytes): %s\n", "", top.c_str());
  return agree;
}

// One conversion of a [10, 7] float tensor over 4 devices, uneven along both axes (10 = 3+3+2+2,
// 7 = 2+2+2+1), so every collective kind's count is checked, packing included (S(1)).
// Prints its row; false when the actors' bytes and the planner's count differ.
bool conversion(const std::string& from_name, const std::string& to_name) {
  const Shape shape{10, 7};
  const Placement devices = Placement::cpu(4);
  Graph g;
  Tensor source;
  if (from_name == "P(sum)") {  // each device's row of a [4, 1, 1] input, broadcast and summed over devices
    Tensor x = g.input("x", Shape{4, 1, 1});
    pin(x, devices, {S(0)});
    source = sum(broadcast_to(x, Shape{4, 10, 7}), {0});
  } else {
    source = g.input("x", shape);
    pin(source, devices, {from_name == "S(0)" ? S(0) : S(1)});
  }
  const Sbp target = to_name == "B" ? B : to_name == "S(0)" ? S(0) : S(1);
  Tensor total = sum(to(source, {target}));
  Session session(g, {total}, SessionOptions{.placement = devices});
  const proto::Plan& plan = session.plan();
  const BoxingCount count = count_boxing(plan);
  const bool agree = count.moved == plan.boxing_bytes();
  std::printf("%-16s %-6s %7d %11d %12lld %12lld %12lld %7.3f%s\n", (from_name + " -> " + to_name).c_str(), "10x7",
              count.copies, count.collectives, static_cast<long long>(count.moved),
              static_cast<long long>(plan.boxing_bytes()), static_cast<long long>(plan.boxing_lower_bound()),
              plan.boxing_lower_bound() > 0 ? static_cast<double>(count.moved) / plan.boxing_lower_bound() : 1.0,
              agree ? "" : "  MOVED != PLANNED");
  return agree;
}

}  // namespace

int main(int argc, char** argv) {
  init_logging(argv[0]);
  int steps = 20;
  CLI::App app("bytes boxing moves per step against the lower bound, and the step time", "tessel-bench-boxing");
  cli::style(app);
  app.add_option("--steps", steps, "timed steps")->check(cli::integer_in(1, 1 << 20));
  cli::parse(app, argc, argv);
  std::printf("boxing per training step, 4 CPU devices in one process (bytes; ratio = moved / bound)\n");
  std::printf("%-16s %-6s %7s %11s %12s %12s %12s %7s %10s %10s\n", "example", "size", "copies", "collectives", "moved",
              "planned", "bound", "ratio", "ms 4 dev", "ms 1 dev");
  const models::ExampleSize small{};
  const models::ExampleSize large{.batch = 256, .inputs = 256, .hidden = 1024, .outputs = 64, .micro_batches = 4};
  bool agree = true;
  try {
    for (const std::string& name : models::parallel_example_names()) {
      agree = run(name, small, "small", steps) && agree;
      agree = run(name, large, "large", std::max(1, steps / 4)) && agree;
    }
    for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"P(sum)", "B"}, {"P(sum)", "S(1)"}, {"S(0)", "B"}, {"S(1)", "B"}, {"S(0)", "S(1)"}, {"S(1)", "S(0)"}}) {
      agree = conversion(from, to) && agree;
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "tessel-bench-boxing: %s\n", error.what());
    return 1;
  }
  std::printf(
      "small: batch 64, 32-128-16; large: batch 256, 256-1024-64 (pipeline: 4 micro-batches).\n"
      "ms 4 dev: actors over cpu:0..3 (1 scheduler thread and 1 kernel thread each) on this machine's cores;\n"
      "ms 1 dev: the reference interpreter, op by op, on one device (kernels on every core).\n"
      "4 simulated devices share this machine's cores, so the times compare overheads, not speed-ups.\n"
      "copies: copy actors (one register each); collectives: COLLECTIVE actors (each counts what its member\n"
      "receives from the others); moved: both, which must equal the planner's own count, planned.\n"
      "X -> Y: that one conversion of a [10, 7] float tensor over cpu:0..3 (compiled, not run).\n");
  if (!agree) std::fprintf(stderr, "tessel-bench-boxing: the actors move other bytes than the planner counted\n");
  return agree ? 0 : 1;
}
