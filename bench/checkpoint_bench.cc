// Benchmarks of checkpoints (runtime/checkpoint.h). Prints figures; asserts nothing about time.
//
// The model: an MLP 1024-4096-4096-1024 with AdamW, so each weight has two moments beside it
// (25.2 M parameters, 302 MB of variables).
//
// (a) One process: the time save() holds training (the copy into memory), the time to a
//     committed checkpoint, and restore, beside the same bytes written with write + fsync and
//     read back (the disk's own figure), and torch.save / torch.load of the same state in
//     PyTorch (python3-torch, run with /usr/bin/python3) when it is there.
// (b) Over 4 processes (it launches itself with tessel-launch): the variables split over the
//     ranks, each writing and reading its own quarter.
// (c) Training with checkpoint_every 10 against without: the step-time overhead.
//
//   tessel-bench-checkpoint [--quick] [--dir DIR]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "apps/cli/flags.h"
#include "comm/job.h"
#include "core/logging.h"
#include "devices/cpu_device.h"
#include "ops/ops.h"
#include "runtime/session.h"

namespace tessel {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

struct Model {
  std::unique_ptr<Graph> graph = std::make_unique<Graph>(7);
  Tensor loss;
  int64_t batch;
};

// The MLP, its weights pinned `weights` on `placement` (B: every device holds them).
Model build(int64_t batch, const Placement& placement, const std::vector<Sbp>& weights, bool pin_weights) {
  Model m{.batch = batch};
  Graph& g = *m.graph;
  const std::vector<int64_t> widths = {1024, 4096, 4096, 1024};
  Tensor h = g.input("x", {batch, widths.front()});
  pin(h, placement, {B});
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    Tensor w = g.param(concat("w", i), {widths[i], widths[i + 1]}, init::normal(0.02));
    if (pin_weights) pin(w, placement, {weights[i % weights.size()]});
    h = matmul(h, w);
    if (i + 2 < widths.size()) h = relu(h);
  }
  Tensor target = g.input("target", {batch, widths.back()});
  pin(target, placement, {B});
  Tensor error = h - target;
  m.loss = mean(error * error);
  g.minimize(m.loss, AdamW{.lr = 1e-4});
  return m;
}

Feeds feeds_of(int64_t batch) {
  HostTensor x(Shape{batch, 1024}, DType::f32), t(Shape{batch, 1024}, DType::f32);
  for (int64_t i = 0; i < x.numel(); ++i)
    x.data<float>()[i] = 0.001f * static_cast<float>(i % 97), t.data<float>()[i] = 0;
  return {{"x", x}, {"target", t}};
}

int64_t variable_bytes(Graph& g) {
  int64_t bytes = 0;
  for (const Node& node : g.nodes()) {
    if (node.op == "variable") bytes += node.outputs[0].shape.numel() * 4;
  }
  return bytes;
}

// The disk's own figures for `bytes`: one write + fsync, then one read (of a file just written,
// so from the page cache, as restore's reads are here).
std::pair<double, double> raw_disk(const std::string& dir, int64_t bytes) {
  std::vector<char> buffer(static_cast<size_t>(bytes), 1);
  const std::string path = dir + "/raw.bin";
  auto start = Clock::now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Error::FailedPrecondition(concat("cannot create ", path));
  for (int64_t at = 0; at < bytes;) {
    const ssize_t n = ::write(fd, buffer.data() + at, static_cast<size_t>(std::min<int64_t>(bytes - at, 64 << 20)));
    if (n <= 0) throw Error::FailedPrecondition(concat("cannot write ", path));
    at += n;
  }
  ::fsync(fd);
  ::close(fd);
  const double write_seconds = since(start);
  start = Clock::now();
  const int in = ::open(path.c_str(), O_RDONLY);
  if (in < 0) throw Error::FailedPrecondition(concat("cannot open ", path));
  for (int64_t at = 0; at < bytes;) {
    const ssize_t n = ::read(in, buffer.data() + at, static_cast<size_t>(std::min<int64_t>(bytes - at, 64 << 20)));
    if (n <= 0) throw Error::FailedPrecondition(concat("cannot read ", path));
    at += n;
  }
  ::close(in);
  const double read_seconds = since(start);
  std::filesystem::remove(path);
  return {write_seconds, read_seconds};
}

void print_row(const char* what, double seconds, int64_t bytes) {
  std::printf("  %-52s %9.1f ms  %7.0f MB/s\n", what, 1e3 * seconds, 1e-6 * static_cast<double>(bytes) / seconds);
}

// (a): one process, one device.
void one_process(const std::string& dir, bool quick) {
  Model m = build(quick ? 8 : 32, Placement::cpu(1), {B}, false);
  const int64_t bytes = variable_bytes(*m.graph);
  std::printf("(a) one process: MLP 1024-4096-4096-1024 + AdamW moments, %.0f MB of variables\n",
              1e-6 * static_cast<double>(bytes));
  Session session(*m.graph, {m.loss});
  session.step(feeds_of(m.batch));
  const std::string root = dir + "/one";
  double hold = 0, total = 0, restore = 0;
  const int repeats = quick ? 1 : 3;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    session.save(root);
    hold += since(start);
    session.wait_for_save();
    total += since(start);
    const auto restoring = Clock::now();
    session.restore(root);
    restore += since(restoring);
  }
  print_row("Tessel save: training held (copy into memory)", hold / repeats, bytes);
  print_row("Tessel save: committed (xxh64, write, fsync, rename)", total / repeats, bytes);
  print_row("Tessel restore (read, verify every chunk)", restore / repeats, bytes);
  const auto [write_seconds, read_seconds] = raw_disk(dir, bytes);
  print_row("the same bytes: write + fsync (the disk)", write_seconds, bytes);
  print_row("the same bytes: read back", read_seconds, bytes);
  const std::string script = concat(TESSEL_SOURCE_DIR, "/bench/torch_checkpoint.py");
  const std::string command = concat("/usr/bin/python3 ", script, " ", dir, " 2>&1");
  if (std::filesystem::exists("/usr/bin/python3")) {
    FILE* pipe = ::popen(command.c_str(), "r");
    char line[512];
    while (pipe != nullptr && std::fgets(line, sizeof line, pipe) != nullptr) std::printf("  %s", line);
    if (pipe != nullptr) ::pclose(pipe);
  }
  std::filesystem::remove_all(root);
}

// (c): step time with and without checkpoint_every 10, at 1 and 2 kernel threads (with 2, the
// background writer has no core of its own on this 2-core machine). Each setting runs twice,
// alternating, and the mean is printed.
void overhead(const std::string& dir, bool quick) {
  const int64_t batch = 256;
  const int steps = quick ? 10 : 40;
  std::printf(
      "\n(c) training, batch %lld, %d steps after one warm-up (twice each, alternating): checkpoint_every 10 against "
      "none\n",
      static_cast<long long>(batch), steps);
  const Feeds feeds = feeds_of(batch);
  for (int threads : {1, 2}) {
    set_cpu_threads(threads);
    double per_step[2] = {0, 0};
    for (int round = 0; round < 4; ++round) {
      const int with = round % 2;
      Model m = build(batch, Placement::cpu(1), {B}, false);
      Session session(
          *m.graph, {m.loss},
          {.checkpoint_dir = with ? dir + "/every" : "", .checkpoint_every = with ? 10 : 0, .keep_checkpoints = 1});
      session.step(feeds);
      const auto start = Clock::now();
      session.run(steps, [&](int64_t) -> std::optional<Feeds> { return feeds; });
      per_step[with] += since(start) / steps / 2;
      if (with) session.wait_for_save();
    }
    std::printf(
        "  %d kernel thread(s): %7.1f ms/step without, %7.1f ms/step with checkpoint_every 10 (in the background): "
        "%+.1f%%\n",
        threads, 1e3 * per_step[0], 1e3 * per_step[1], 100 * (per_step[1] / per_step[0] - 1));
  }
  std::filesystem::remove_all(dir + "/every");
}

// (b): one rank of a 4-process job; rank 0 prints.
int rank_part(const std::string& dir) {
  comm::Job job(comm::job_config_from_environment().value());
  const int ranks = job.world_size(), rank = job.rank();
  // Tensor-parallel weights (S(1), S(0), S(1)): every rank holds a quarter of each, moments too.
  const Placement placement = Placement::cpu(ranks);
  Model m = build(8, placement, {S(1), S(0), S(1)}, true);
  const int64_t bytes = variable_bytes(*m.graph);
  double hold, total, restore;
  int64_t written, read;
  {
    Session session(*m.graph, {m.loss},
                    {.placement = placement, .ranks = ranks, .rank = rank, .transport = &job.transport()});
    session.step(feeds_of(m.batch));
    auto start = Clock::now();
    session.save(dir + "/ranks");
    hold = since(start);
    written = session.wait_for_save().bytes;
    total = since(start);
    start = Clock::now();
    read = session.restore(dir + "/ranks").bytes;
    restore = since(start);
  }
  if (rank == 0) {
    std::printf(
        "(b) %d processes on this machine, weights and moments split over them (%.0f MB in all; rank 0 wrote %.0f MB "
        "and read %.0f MB)\n",
        ranks, 1e-6 * static_cast<double>(bytes), 1e-6 * static_cast<double>(written),
        1e-6 * static_cast<double>(read));
    print_row("Tessel save: training held (rank 0)", hold, bytes);
    print_row("Tessel save: committed by every rank", total, bytes);
    print_row("Tessel restore, every rank its own slices", restore, bytes);
    std::filesystem::remove_all(dir + "/ranks");
  }
  std::fflush(stdout);
  job.finish();
  return 0;
}

}  // namespace
}  // namespace tessel

int main(int argc, char** argv) {
  using namespace tessel;
  init_logging(argv[0]);
  bool quick = false;
  std::string dir = "/tmp/tessel-bench-checkpoint";
  CLI::App app("save and restore on 1 and 4 processes, beside the disk and PyTorch", "tessel-bench-checkpoint");
  cli::style(app);
  app.add_flag("--quick", quick, "a short run");
  app.add_option("--dir", dir, "where the checkpoints go")->type_name("DIR");
  cli::parse(app, argc, argv);
  try {
    std::filesystem::create_directories(dir);
    if (std::getenv("TESSEL_RANK") != nullptr) return rank_part(dir);
    one_process(dir, quick);
    std::printf("\n");
    std::fflush(stdout);
    const std::string self = std::filesystem::canonical("/proc/self/exe").string();
    const int status = std::system(concat(TESSEL_LAUNCH, " --nproc-per-node 4 -- ", self, " --dir ", dir,
                                          " 2>&1 | grep -v '^\\[rank [0-9]\\] [IW]2\\|^tessel-launch'")
                                       .c_str());
    if (status != 0) std::printf("(b) the 4-process job exited %d\n", status);
    overhead(dir, quick);
  } catch (const Error& error) {
    std::fprintf(stderr, "tessel-bench-checkpoint: %s\n", error.what());
    return 1;
  }
  return 0;
}
