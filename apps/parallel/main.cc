// tessel-example: trains one of the parallel examples (apps/models/parallel.h) over CPU
// devices in this process, and the same graph on one device through the reference
// interpreter, side by side: the losses and the parameters must agree.
//
//   tessel-example tensor-parallel [--steps 100] [--every 10] [--workers 1] [--plan]
//
// Exits 0 when every parameter matches the one-device run within 1e-4 relative, 1 otherwise.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "apps/models/parallel.h"
#include "core/logging.h"
#include "graph/plan_inspect.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"

namespace {

[[noreturn]] void usage(const std::string& problem) {
  std::string names;
  for (const std::string& name : tessel::models::parallel_example_names()) names += " " + name;
  std::fprintf(stderr,
               "tessel-example: %s\n"
               "usage: tessel-example NAME [--steps N] [--every K] [--workers N] [--plan]\n"
               "NAME is one of:%s\n",
               problem.c_str(), names.c_str());
  std::exit(2);
}

int64_t integer(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 1) usage(flag + " expects a positive integer, got '" + text + "'");
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tessel;
  init_logging(argv[0]);
  std::string name;
  int64_t steps = 100, every = 10, workers = 1;
  bool show_plan = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value after " + flag);
      return argv[++i];
    };
    if (flag == "--help") usage("trains a parallel example");
    if (flag == "--steps") {
      steps = integer(flag, value());
    } else if (flag == "--every") {
      every = integer(flag, value());
    } else if (flag == "--workers") {
      workers = integer(flag, value());
    } else if (flag == "--plan") {
      show_plan = true;
    } else if (!flag.empty() && flag[0] != '-' && name.empty()) {
      name = flag;
    } else {
      usage("unknown argument '" + flag + "'");
    }
  }
  if (name.empty()) usage("which example?");
  try {
    models::ParallelExample example = models::build_parallel_example(name);
    Graph& g = *example.graph;
    Session session(g, {example.loss},
                    SessionOptions{.worker_threads = static_cast<int>(workers), .placement = example.placement});
    Interpreter reference(g);
    const proto::Plan& plan = session.plan();
    if (show_plan) std::fputs(describe_plan(plan).c_str(), stdout);
    int actors = 0;
    for (const proto::DevicePlan& device : plan.ranks(0).devices()) actors += device.actors_size();
    std::printf("%s: %s\n", example.name.c_str(), example.summary.c_str());
    std::printf("plan: %d devices, %d actors; boxing moves %lld bytes per step (table lower bound %lld)\n",
                plan.ranks(0).devices_size(), actors, static_cast<long long>(plan.boxing_bytes()),
                static_cast<long long>(plan.boxing_lower_bound()));
    std::printf("%6s  %14s  %14s\n", "step", "loss (devices)", "loss (1 device)");
    session.run(
        steps, [&](int64_t step) -> std::optional<Feeds> { return example.feeds(step); },
        [&](int64_t step, const std::vector<HostTensor>& fetched) {
          const std::vector<HostTensor> expected = reference.train_step(example.feeds(step), {example.loss});
          if (step % every == 0 || step + 1 == steps) {
            std::printf("%6lld  %14.7f  %14.7f\n", static_cast<long long>(step), fetched[0].get(0), expected[0].get(0));
          }
        });
    double worst = 0;
    std::string worst_name;
    for (const Tensor& param : g.params()) {
      const std::string variable = g.node(param.node()).attrs.get_string("name");
      const HostTensor a = session.variable(variable), b = reference.variable(variable);
      double scale = 1e-3;
      for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(b.get(i)));
      for (int64_t i = 0; i < b.numel(); ++i) {
        const double error = std::abs(a.get(i) - b.get(i)) / scale;
        if (error > worst) worst = error, worst_name = variable;
      }
    }
    const bool same = worst <= 1e-4;
    std::printf("parameters after %lld steps: largest difference from one device %.2e (relative, in %s): %s\n",
                static_cast<long long>(steps), worst, worst_name.empty() ? "-" : worst_name.c_str(),
                same ? "the same numbers" : "DIFFERENT");
    return same ? 0 : 1;
  } catch (const Error& error) {
    std::fprintf(stderr, "tessel-example: %s\n", error.what());
    return 1;
  }
}
