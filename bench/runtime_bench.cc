// Benchmarks of the actor runtime. Prints figures; asserts nothing about time.
//
// (a) Chains and diamonds of trivial actors (one-element relu/tanh/add kernels): actor
//     activations per second and microseconds per activation, the cost of the protocol.
// (b) One training step (forward, backward, SGD) of an MLP 1024-4096-4096-1024, batch 256,
//     f32, through the runtime with 1 and 2 worker threads, beside the reference interpreter
//     and PyTorch (Debian's python3-torch, run with /usr/bin/python3) with 1 and 2 threads,
//     with the GFLOP/s each achieves; with fusion on (each matmul and its relu one oneDNN actor) and
//     off; and with bf16 matmuls beside PyTorch's bf16 autocast.
//
//   tessel-bench-runtime [--quick] [--steps N] [--torch PATH_TO_torch_mlp.py]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "actors/executor.h"
#include "actors/trace.h"
#include "apps/cli/flags.h"
#include "apps/models/mlp.h"
#include "devices/arena.h"
#include "devices/cpu_device.h"
#include "graph/compile.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"

namespace tessel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

HostTensor filled(const Shape& shape, float value) {
  HostTensor t(shape, DType::f32);
  std::fill(t.data<float>(), t.data<float>() + t.numel(), value);
  return t;
}

// (a) ------------------------------------------------------------------------------------

struct TrivialGraph {
  Graph g;
  Tensor out;
};

void chain(TrivialGraph& t, int length) {
  Tensor x = t.g.input("x", {1});
  for (int i = 0; i < length; ++i) x = relu(x);
  t.out = x;
}

void diamonds(TrivialGraph& t, int count) {
  Tensor x = t.g.input("x", {1});
  for (int i = 0; i < count; ++i) x = add(relu(x), tanh(x));
  t.out = x;
}

// `traced`: with a Chrome trace recording every activation (actors/trace.h); off, an activation
// pays one test of a null pointer for it.
void run_trivial(const char* name, void (*build)(TrivialGraph&, int), int size, int registers, int workers, int steps,
                 bool traced = false) {
  const std::string trace_file = concat("/tmp/tessel-bench-runtime-trace.", getpid(), ".json");
  if (traced) trace::start(trace_file);
  TrivialGraph t;
  build(t, size);
  PlanOptions options;
  options.fetches = {t.out};
  options.register_count = registers;
  const proto::Plan plan = compile_plan(t.g, options);
  HostArena variables(plan.ranks(0).devices(0).variable_arena_bytes());
  Executor executor(plan, 0, {variables.data()}, {.worker_threads = workers, .steps_in_flight = registers + 1});
  const Feeds feeds{{"x", filled({1}, 0.5f)}};
  const auto feed = [&](int64_t) -> std::optional<Feeds> { return feeds; };
  executor.run(steps / 10, feed);  // warm up
  const int64_t before = executor.activations();
  const auto start = Clock::now();
  executor.run(steps, feed);
  const double elapsed = seconds_since(start);
  const double activations = static_cast<double>(executor.activations() - before);
  std::printf("%-18s %7d %10d %8d %7d %14.0f %13.2f\n", name, executor.actor_count(), registers, workers, steps,
              activations / elapsed, 1e6 * elapsed / activations);
  if (traced) std::remove(trace::stop().c_str());
}

// (b) ------------------------------------------------------------------------------------

struct MlpFigure {
  double ms_per_step;
  double gflops;
  double last_loss;
};

MlpFigure mlp_step(bool interpreter, int workers, int kernel_threads, int steps, bool check_finite,
                   DType matmuls = DType::f32, bool fuse = true) {
  set_cpu_threads(kernel_threads);
  Graph g;
  const models::Mlp mlp =
      models::build_mlp(g, {1024, 4096, 4096, 1024}, 256, 1e-3, {.check_finite = check_finite}, matmuls);
  const Feeds feeds{{"x", filled({256, 1024}, 0.1f)}, {"target", filled({256, 1024}, 0.0f)}};
  Session session(g, {mlp.loss}, {.use_interpreter = interpreter, .worker_threads = workers, .fuse = fuse});
  const auto feed = [&](int64_t) -> std::optional<Feeds> { return feeds; };
  session.run(1, feed);  // warm up: first touches of the arena and the variables
  const auto start = Clock::now();
  const auto losses = session.run(steps, feed);
  const double seconds = seconds_since(start) / steps;
  return {1e3 * seconds, mlp.flops_per_step / seconds * 1e-9, losses.back()[0].to_floats()[0]};
}

double mlp_flops() {
  Graph g;
  return models::build_mlp(g, {1024, 4096, 4096, 1024}, 256).flops_per_step;
}

// Runs the PyTorch script; returns ms per step, or a negative number when it cannot run.
// torch.set_num_threads() does not reach the OpenBLAS that Debian's torch calls for matmul,
// so OPENBLAS_NUM_THREADS carries the same count there; `blas_threads` 0 leaves it unset.
double torch_step(const std::string& script, int threads, int blas_threads, int steps, std::string& version,
                  bool bf16) {
  const std::string environment = blas_threads > 0 ? "OPENBLAS_NUM_THREADS=" + std::to_string(blas_threads) + " " : "";
  const std::string command = environment + "/usr/bin/python3 " + script + " --threads " + std::to_string(threads) +
                              " --steps " + std::to_string(steps) + (bf16 ? " --bf16" : "") + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char line[512];
  std::string output;
  while (std::fgets(line, sizeof line, pipe)) output += line;
  if (pclose(pipe) != 0) {
    std::printf("  (PyTorch did not run: %s)\n", output.c_str());
    return -1;
  }
  char torch_version[64] = {0};
  int reported_threads = 0;
  double ms = -1;
  if (std::sscanf(output.c_str(), "torch %63s threads %d ms_per_step %lf", torch_version, &reported_threads, &ms) !=
      3) {
    std::printf("  (unexpected PyTorch output: %s)\n", output.c_str());
    return -1;
  }
  version = torch_version;
  return ms;
}

}  // namespace
}  // namespace tessel

int main(int argc, char** argv) {
  using namespace tessel;
  bool quick = false;
  int steps = 5;
  std::string script = std::string(TESSEL_SOURCE_DIR) + "/bench/torch_mlp.py";
  CLI::App app("the actor protocol's cost, and the MLP's step beside PyTorch", "tessel-bench-runtime");
  cli::style(app);
  app.add_flag("--quick", quick, "a short run");
  app.add_option("--steps", steps, "timed MLP steps")->check(cli::integer_in(1, 1 << 20));
  app.add_option("--torch", script, "the PyTorch script")->type_name("torch_mlp.py");
  cli::parse(app, argc, argv);
  set_cpu_threads(1);
  const int trivial_steps = quick ? 2000 : 20000;
  std::printf("(a) trivial actors: one-element kernels, so the figures are the protocol's cost\n");
  std::printf("%-18s %7s %10s %8s %7s %14s %13s\n", "graph", "actors", "registers", "workers", "steps", "activations/s",
              "us/activation");
  for (int registers : {1, 2}) {
    for (int workers : {1, 2}) {
      run_trivial("chain-64", chain, 64, registers, workers, trivial_steps);
      run_trivial("diamond-16", diamonds, 16, registers, workers, trivial_steps);
    }
  }
  // Tracing: the rows above run with it off (one branch per activation); these record a span of
  // every activation into a Chrome trace (TESSEL_TRACE), written when the run ends.
  for (int workers : {1, 2}) {
    run_trivial("chain-64", chain, 64, 1, workers, trivial_steps);
    run_trivial("chain-64 traced", chain, 64, 1, workers, trivial_steps, /*traced=*/true);
  }

  std::printf("\n(b) MLP 1024-4096-4096-1024, batch 256, f32, forward + backward + SGD: %.2f GFLOP per step\n",
              mlp_flops() * 1e-9);
  std::printf("%-58s %8s %10s %9s\n", "runtime", "threads", "ms/step", "GFLOP/s");
  const int mlp_steps = quick ? 1 : steps;
  struct Config {
    const char* name;
    bool interpreter;
    int workers, kernel_threads;
    bool check_finite = true;  // MinimizeOptions::check_finite: each update first reads its gradient
    bool fuse = true;          // PlanOptions::fuse: each matmul and its relu one actor (oneDNN)
  };
  const Config configs[] = {
      {"tessel actors, 1 worker x 1 kernel thread", false, 1, 1},
      {"  the same, without the finite check", false, 1, 1, false},
      {"  the same, unfused (OpenBLAS matmul, then relu)", false, 1, 1, true, false},
      {"tessel actors, 2 workers x 1 kernel thread", false, 2, 1},
      {"tessel actors, 1 worker x 2 kernel threads", false, 1, 2},
      {"  the same, unfused (OpenBLAS matmul, then relu)", false, 1, 2, true, false},
      {"tessel actors, 2 workers x 2 kernel threads", false, 2, 2},
      {"  the same, without the finite check", false, 2, 2, false},
      {"tessel interpreter, 1 kernel thread", true, 1, 1},
      {"tessel interpreter, 2 kernel threads", true, 1, 2},
  };
  double f32_loss = 0;
  for (const Config& c : configs) {
    const MlpFigure f =
        mlp_step(c.interpreter, c.workers, c.kernel_threads, mlp_steps, c.check_finite, DType::f32, c.fuse);
    std::printf("%-58s %8d %10.1f %9.1f\n", c.name, c.workers * c.kernel_threads, f.ms_per_step, f.gflops);
    std::fflush(stdout);
    f32_loss = f.last_loss;
  }
  // bf16 matmuls (oneDNN), f32 weights, gradients and SGD; the loss beside the f32 runs' after as many steps.
  if (OpRegistry::global().has_kernel("matmul", DeviceType::cpu, DType::bf16)) {
    for (int kernel_threads : {1, 2}) {
      for (bool fuse : {true, false}) {
        const MlpFigure f = mlp_step(false, 1, kernel_threads, mlp_steps, true, DType::bf16, fuse);
        char name[64];
        std::snprintf(name, sizeof name, "tessel actors, bf16 matmuls, 1 x %d kernel thread%s%s", kernel_threads,
                      kernel_threads > 1 ? "s" : "", fuse ? "" : ", unfused");
        std::printf("%-58s %8d %10.1f %9.1f   loss %.6g (f32: %.6g)\n", name, kernel_threads, f.ms_per_step, f.gflops,
                    f.last_loss, f32_loss);
        std::fflush(stdout);
      }
    }
  }
  struct TorchConfig {
    int threads, blas_threads;
    const char* label;
    bool bf16 = false;
  };
  const TorchConfig torch_configs[] = {
      {1, 1, "pytorch %s, 1 thread (OpenBLAS 1)"},
      {2, 2, "pytorch %s, 2 threads (OpenBLAS 2)"},
      {1, 0, "pytorch %s, set_num_threads(1), OpenBLAS default"},
      {1, 1, "pytorch %s, bf16 autocast, 1 thread", true},
      {2, 2, "pytorch %s, bf16 autocast, 2 threads", true},
  };
  for (const TorchConfig& c : torch_configs) {
    std::string version;
    const double ms = torch_step(script, c.threads, c.blas_threads, mlp_steps, version, c.bf16);
    if (ms < 0) continue;
    char name[128];
    std::snprintf(name, sizeof name, c.label, version.c_str());
    std::printf("%-58s %8s %10.1f %9.1f\n", name, c.blas_threads > 0 ? std::to_string(c.threads).c_str() : "1+cores",
                ms, mlp_flops() / (ms * 1e-3) * 1e-9);
    std::fflush(stdout);
  }
  return 0;
}
