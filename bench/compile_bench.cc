// tessel-bench-compile: how compiling grows with the job. A graph of about 1,000 nodes (an MLP
// of tanh(bias_add(matmul(h, w), b)) layers, with backward and SGD updates) in two layouts:
//   data-parallel   batch S(0), parameters B: every gradient is all-reduced;
//   tensor-parallel Megatron pairs: w1 S(1), b1 S(0), then w2 S(0) and an all-reduce of the
//                   partial sums, activations B between pairs;
// compiled at 1, 8, 64, 256 and 1,024 devices with one device per rank. For each it prints the
// time and the peak memory of compiling one rank's share (PlanOptions::rank), its actors, and
// at 8 and 64 devices the same for the whole-job plan (rank -1). Every figure comes from a
// child process of its own, so that peak memory is that compile's alone. Prints figures and
// asserts nothing.
//
//   tessel-bench-compile [--layers N] [--devices 1,8,64,256,1024] [--whole 8,64]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli/flags.h"
#include "core/logging.h"
#include "graph/compile.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"

namespace {

using namespace tessel;

struct Model {
  Graph graph{1};
  Tensor loss;
};

// `layers` layers (an even number for tensor-parallel) over `devices` CPU devices.
void build(Model& model, const std::string& layout, int layers, int devices) {
  Graph& g = model.graph;
  const Placement placement = Placement::cpu(devices);
  const int64_t width = std::max<int64_t>(64, devices), batch = std::max<int64_t>(64, devices);
  Tensor h = g.input("x", {batch, width});
  Tensor target = g.input("target", {batch, width});
  const bool data_parallel = layout == "data-parallel";
  pin(h, placement, {data_parallel ? S(0) : B});
  pin(target, placement, {data_parallel ? S(0) : B});
  for (int l = 0; l < layers; ++l) {
    Tensor w = g.param(concat("w", l), {width, width}, init::normal(0.02));
    Tensor b = g.param(concat("b", l), {width}, init::zeros());
    if (data_parallel) {
      pin(w, placement, {B});
      pin(b, placement, {B});
      h = tanh(bias_add(matmul(h, w), b));
    } else if (l % 2 == 0) {  // column-parallel
      pin(w, placement, {S(1)});
      pin(b, placement, {S(0)});
      h = tanh(bias_add(matmul(h, w), b));
    } else {  // row-parallel: partial sums, all-reduced
      pin(w, placement, {S(0)});
      pin(b, placement, {B});
      h = tanh(bias_add(to(matmul(h, w), {B}), b));
    }
  }
  Tensor error = h - target;
  model.loss = mean(error * error);
  g.minimize(model.loss, SGD{.lr = 0.01});
}

int64_t status_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::atoll(line.c_str() + std::strlen(field));
  }
  return -1;
}

struct Figures {
  double seconds = 0, peak_mb = 0;
  int nodes = 0, actors = 0, devices_in_plan = 0, collectives = 0, transfers = 0;
};

// Compiles in a child process and reads back its figures.
Figures measure(const std::string& layout, int layers, int devices, int rank) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    Model model;
    build(model, layout, layers, devices);
    std::ofstream("/proc/self/clear_refs") << "5";  // the peak starts again from here
    const int64_t before = status_kib("VmRSS:");
    const auto start = std::chrono::steady_clock::now();
    const proto::Plan plan = compile_plan(
        model.graph, {.fetches = {model.loss}, .placement = Placement::cpu(devices), .ranks = devices, .rank = rank});
    Figures f;
    f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    f.peak_mb = static_cast<double>(status_kib("VmHWM:") - before) / 1024.0;
    f.nodes = model.graph.num_nodes();
    for (const proto::RankPlan& share : plan.ranks()) {
      for (const proto::DevicePlan& device : share.devices()) {
        ++f.devices_in_plan;
        f.actors += device.actors_size();
        for (const proto::ActorDef& actor : device.actors()) {
          f.collectives += actor.kind() == proto::COLLECTIVE;
          f.transfers += actor.kind() == proto::SEND || actor.kind() == proto::RECV;
        }
      }
    }
    [[maybe_unused]] const ssize_t written = write(fds[1], &f, sizeof f);
    _exit(0);
  }
  close(fds[1]);
  Figures f;
  const ssize_t got = read(fds[0], &f, sizeof f);
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (got != static_cast<ssize_t>(sizeof f) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) f.seconds = -1;
  return f;
}

void print(const std::string& layout, int devices, const char* share, const Figures& f) {
  if (f.seconds < 0) {
    std::printf("%-16s %8d  %-12s  failed (killed or out of memory)\n", layout.c_str(), devices, share);
    return;
  }
  std::printf("%-16s %8d  %-12s %6d %9.3f %9.1f %9d %9.1f %8d %8d\n", layout.c_str(), devices, share, f.nodes,
              f.seconds, f.peak_mb, f.actors, static_cast<double>(f.actors) / std::max(1, f.devices_in_plan),
              f.collectives, f.transfers);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  init_logging(argv[0]);
  int layers = 84;
  std::string devices_text = "1,8,64,256,1024", whole_text = "8,64";
  CLI::App app("compile time and peak memory of one rank's share and of the whole-job plan", "tessel-bench-compile");
  cli::style(app);
  app.add_option("--layers", layers, "the MLP's layers (rounded down to even)")->check(cli::integer_in(2, 1 << 16));
  app.add_option("--devices", devices_text, "devices of the rank-0 plans")->check(cli::integer_list_in(1, 1 << 20));
  app.add_option("--whole", whole_text, "devices of the whole-job plans")->check(cli::integer_list_in(1, 1 << 20));
  cli::parse(app, argc, argv);
  layers = layers / 2 * 2;
  const std::vector<int> devices = cli::integer_list(devices_text), whole = cli::integer_list(whole_text);
  std::printf("compiling an MLP of %d layers with backward and SGD; one device per rank\n", layers);
  std::printf(
      "targets: one rank's share at 1,024 devices in at most 1 s and 500 MB; the whole-job plan\n"
      "growing no worse than linearly in devices\n\n");
  std::printf("%-16s %8s  %-12s %6s %9s %9s %9s %9s %8s %8s\n", "layout", "devices", "plan", "nodes", "seconds",
              "peak MB", "actors", "per dev", "collect.", "send/rcv");
  for (const std::string layout : {"data-parallel", "tensor-parallel"}) {
    for (int n : devices) print(layout, n, "rank 0", measure(layout, layers, n, n > 1 ? 0 : -1));
    for (int n : whole) print(layout, n, "whole job", measure(layout, layers, n, -1));
  }
  return 0;
}
