// All-reduce between 2 and 4 processes over UCX: Tessel's P(sum) -> B boxing, one COLLECTIVE
// actor per device on comm::Communicator, beside a raw UCX point-to-point transfer of the same
// bytes and torch.distributed's gloo all-reduce, on this machine, in one run.
//
//   tessel-bench-allreduce [--sizes 1,16,256] [--procs 2,4] [--reps N] [--tls shm|tcp|both]
//
// Started alone it is the driver: it launches itself as an n-rank job with tessel-launch (once
// per process count and UCX transport asked for), runs bench/gloo_allreduce.py once per process
// count, and prints the table. Each rank measures, for every size of T MiB:
//   allreduce  a plan that sums an [n, T/4] tensor split S(0) over n devices, one per rank (each
//              device holds one row, so the sum is P(sum)), converts it to B and fetches the sum
//              of the result. P -> B on one placement is one COLLECTIVE actor per device
//              (sbp/collective.h): the communicator's reduce-scatter, then all-gather, each rank
//              sending its pieces straight to the others over UCX in chunks, reduced on collective
//              worker threads as they arrive: 2T(n-1)/n out and in per rank;
//   control    the same plan without the conversion: the P(sum) result is summed where it lies
//              and only that scalar is all-reduced;
//   p2p        T bytes from rank 0 to rank 1 with comm::Transport (one UCX tag send), and an
//              8-byte answer back; the other ranks wait.
// The all-reduce's own time is allreduce - control: both plans do the same local work (the
// broadcast, the row sum and the final sum). Steps run one at a time (no overlap), and every
// figure is the median of the reps after 2 warm-up steps. Every step's fetched sum, every p2p
// transfer's bytes and every gloo result is checked: a wrong value ends the bench with an error.
// Nothing is asserted about time: the targets (at least 1.5x faster than gloo at 256 MiB; within
// 2x of p2p for 2 processes) are printed beside the figures.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "apps/cli/flags.h"
#include "comm/communicator.h"
#include "comm/job.h"
#include "comm/transport.h"
#include "core/logging.h"
#include "ops/ops.h"
#include "runtime/session.h"

namespace {

using namespace tessel;
using Clock = std::chrono::steady_clock;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Median milliseconds per step of a plan over `elements` floats on one device per rank, with or
// without the P -> B conversion. Checks every step's fetched sum: (1 + 2 + ... + n) * elements.
double plan_ms(comm::Job& job, int64_t elements, bool convert, int reps) {
  const int n = job.world_size();
  const Placement devices = Placement::cpu(n);
  Graph g;
  Tensor x = g.input("x", Shape{n, 1});
  pin(x, devices, {S(0)});
  Tensor rows = broadcast_to(x, Shape{n, elements});  // row r holds x[r] everywhere
  Tensor partial = sum(rows, {0});                    // S(0) summed over axis 0: P(sum)
  Tensor total = sum(convert ? to(partial, {B}) : partial);
  const SessionOptions options{
      .steps_in_flight = 1,
      .placement = devices,
      .ranks = n,
      .rank = job.rank(),
      .transport = &job.transport(),
  };
  Session session(g, {total}, options);
  std::vector<float> values;  // rank r's row holds r + 1
  for (int r = 0; r < n; ++r) values.push_back(static_cast<float>(r + 1));
  const Feeds feeds{{"x", HostTensor::of(Shape{n, 1}, values)}};
  std::vector<double> times;
  for (int step = 0; step < 2 + reps; ++step) {
    const auto start = Clock::now();
    const std::vector<HostTensor> fetched = session.step(feeds);
    if (step >= 2) times.push_back(ms_since(start));
    if (!fetched.empty() && fetched[0].defined()) {
      const double expected = n * (n + 1) / 2.0 * static_cast<double>(elements), got = fetched[0].get(0);
      if (std::abs(got - expected) > 1e-5 * expected) {
        // At once: unwinding would wait for the other rank's actors to drain.
        std::fprintf(stderr, "tessel-bench-allreduce: the all-reduce of %lld floats summed to %.9g, expected %.9g\n",
                     static_cast<long long>(elements), got, expected);
        std::fflush(stderr);
        std::_Exit(1);
      }
    }
  }
  return median(times);
}

// Median milliseconds for `bytes` to go from rank 0 to rank 1 and an 8-byte answer to come back
// (on rank 0; 0 elsewhere). Ranks after 1 take no part.
double p2p_ms(comm::Job& job, size_t bytes, int reps) {
  if (job.rank() > 1) return 0;
  comm::Transport& transport = job.transport();
  // Tag space 63 is this benchmark's; sessions use 0 to 62.
  const uint64_t base = uint64_t{63} << 56;
  std::vector<uint8_t> buffer(bytes, static_cast<uint8_t>(job.rank() + 1));
  uint64_t answer = 0;
  std::mutex mutex;
  std::condition_variable changed;
  int completed = 0;
  std::string failure;
  const auto done = [&](const comm::Completion& c) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!c.ok) failure = c.error;
    ++completed;
    changed.notify_all();
  };
  const auto wait_for = [&](int count) {
    std::unique_lock<std::mutex> lock(mutex);
    if (!changed.wait_for(lock, std::chrono::seconds(60), [&] { return completed >= count || !failure.empty(); })) {
      throw std::runtime_error("a point-to-point transfer did not complete within 60 s");
    }
    if (!failure.empty()) throw std::runtime_error(concat("a point-to-point transfer failed: ", failure));
  };
  std::vector<double> times;
  for (int rep = 0; rep < 2 + reps; ++rep) {
    const uint64_t data_tag = base | static_cast<uint64_t>(2 * rep), answer_tag = data_tag + 1;
    const int before = completed;
    if (job.rank() == 0) {
      transport.receive(answer_tag, ~uint64_t{0}, &answer, sizeof answer, done);
      const auto start = Clock::now();
      transport.send(1, data_tag, buffer.data(), bytes, done);
      wait_for(before + 2);
      if (rep >= 2) times.push_back(ms_since(start));
    } else {
      transport.receive(data_tag, ~uint64_t{0}, buffer.data(), bytes, done);
      wait_for(before + 1);
      transport.send_value(0, answer_tag, rep, done);
      wait_for(before + 2);
      if (buffer.front() != 1 || buffer.back() != 1) throw std::runtime_error("the point-to-point bytes arrived wrong");
    }
  }
  return job.rank() == 0 ? median(times) : 0;
}

// Median milliseconds of comm::Communicator::all_reduce of `elements` floats straight on raw
// buffers, one member per rank and one worker thread (what the executor gives a rank with one
// device): the collective the plan's COLLECTIVE actors issue, without the plan around it. Each
// rep starts after a 1-float all-reduce (a barrier) and checks every element of the result.
double communicator_ms(comm::Job& job, int64_t elements, int reps) {
  const int n = job.world_size();
  std::vector<int> ranks;
  for (int r = 0; r < n; ++r) ranks.push_back(r);
  comm::CollectiveWorkers workers(1);
  comm::CpuCommunicator communicator({.group = 0,
                                      .member_ranks = ranks,
                                      .rank = job.rank(),
                                      .transport = &job.transport(),
                                      .tag_space = 63,  // this benchmark's: sessions start at 0
                                      .transport_group = comm::Transport::new_group(),
                                      .workers = &workers});
  const float expected = static_cast<float>(n * (n + 1) / 2);
  std::vector<float> send(static_cast<size_t>(elements), static_cast<float>(job.rank() + 1));
  std::vector<float> receive(send.size());
  float token = 1, tokens = 0;
  std::mutex mutex;
  std::condition_variable changed;
  int completed = 0;
  std::string failure;
  const auto done = [&](const std::string& error) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!error.empty()) failure = error;
    ++completed;
    changed.notify_all();
  };
  const auto wait_for = [&](int count) {
    std::unique_lock<std::mutex> lock(mutex);
    if (!changed.wait_for(lock, std::chrono::seconds(60), [&] { return completed >= count; })) {
      throw std::runtime_error("a communicator all-reduce did not complete within 60 s");
    }
    if (!failure.empty()) throw std::runtime_error(concat("a communicator all-reduce failed: ", failure));
  };
  std::vector<double> times;
  for (int rep = 0; rep < 2 + reps; ++rep) {
    std::fill(receive.begin(), receive.end(), std::nanf(""));
    communicator.all_reduce(job.rank(), &token, &tokens, 1, DType::f32, comm::ReduceOp::sum, done);
    wait_for(2 * rep + 1);
    const auto start = Clock::now();
    communicator.all_reduce(job.rank(), send.data(), receive.data(), send.size(), DType::f32, comm::ReduceOp::sum,
                            done);
    wait_for(2 * rep + 2);
    if (rep >= 2) times.push_back(ms_since(start));
    const auto wrong = std::find_if(receive.begin(), receive.end(), [&](float v) { return v != expected; });
    if (wrong != receive.end() || tokens != static_cast<float>(n)) {
      std::fprintf(stderr,
                   "tessel-bench-allreduce: the communicator's all-reduce of %lld floats gave %.9g at %lld on "
                   "rank %d, expected %.9g\n",
                   static_cast<long long>(elements), wrong != receive.end() ? *wrong : tokens,
                   static_cast<long long>(wrong - receive.begin()), job.rank(), expected);
      std::fflush(stderr);
      std::_Exit(1);
    }
  }
  return median(times);
}

// "sysv/memory.0 (am) cma/memory.0 (rma_bw)": the UCX lanes Transport::describe() lists, each
// once however many endpoints use it.
std::string lanes_of(const std::string& description) {
  std::istringstream lines(description);
  std::vector<std::string> lanes;
  for (std::string line; std::getline(lines, line);) {
    const size_t lane = line.find("lane[");
    if (lane == std::string::npos) continue;
    std::istringstream words(line.substr(line.find(':', lane) + 1));
    std::string transport, md, arrow, remote, use;
    words >> transport >> md >> arrow >> remote >> use;
    const std::string name = transport.substr(transport.find(':') + 1) + " (" + use + ")";
    if (std::find(lanes.begin(), lanes.end(), name) == lanes.end()) lanes.push_back(name);
  }
  std::string text;
  for (const std::string& name : lanes) text += (text.empty() ? "" : " ") + name;
  return text;
}

// Steps per figure when --reps is not given: fewer for large sizes, so that the whole run (four
// jobs and two gloo runs) stays within a few minutes on this 2-core machine.
int default_reps(int mib) { return mib <= 1 ? 20 : mib <= 16 ? 10 : 5; }

int rank_main(const std::vector<int>& sizes, int reps) {
  comm::Job job(comm::job_config_from_environment().value());
  if (job.world_size() < 2) {
    std::fprintf(stderr, "tessel-bench-allreduce: runs as 2 or more ranks, not %d\n", job.world_size());
    return 2;
  }
  for (int mib : sizes) {
    const int64_t elements = int64_t{mib} << 18;  // 4-byte floats
    const int steps = reps > 0 ? reps : default_reps(mib);
    const double p2p = p2p_ms(job, static_cast<size_t>(elements) * 4, steps);
    const double with = plan_ms(job, elements, true, steps);
    const double without = plan_ms(job, elements, false, steps);
    const double raw = communicator_ms(job, elements, steps);
    if (job.rank() == 0)
      std::printf("RESULT %d %d %.4f %.4f %.4f %.4f %s\n", mib, steps, with, without, raw, p2p,
                  lanes_of(job.transport().describe()).c_str());
    std::fflush(stdout);
  }
  job.finish();
  return 0;
}

struct Row {
  int reps = 0;
  double allreduce = 0, control = 0, communicator = 0, p2p = 0;
  std::string transports;
};

struct GlooRow {
  double ms = 0;
  int reps = 0;
};

// Runs `command` and returns its output; exits with its status when it fails.
std::string output_of(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + command);
  std::string text;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, pipe)) > 0) text.append(chunk, n);
  const int status = pclose(pipe);
  if (status != 0) {
    std::fprintf(stderr, "tessel-bench-allreduce: '%s' failed (status %d):\n%s\n", command.c_str(), status,
                 text.c_str());
    std::exit(1);
  }
  return text;
}


int driver_main(const std::string& self, const std::string& sizes_text, const std::vector<int>& sizes,
                const std::vector<int>& procs, int reps, const std::vector<std::string>& tls) {
  const std::string reps_flag = reps > 0 ? " --reps " + std::to_string(reps) : "";
  std::map<int, std::map<std::string, std::map<int, Row>>> rows;  // processes -> tls -> MiB -> figures
  for (int n : procs) {
    for (const std::string& choice : tls) {
      // shm: UCX's own choice between processes of one machine (shared memory); tcp: sockets on
      // the loopback device only, the path between nodes, and gloo's path here.
      const std::string env = choice == "tcp" ? "UCX_TLS=tcp,self UCX_NET_DEVICES=lo " : "";
      const std::string text = output_of(env + TESSEL_LAUNCH " --nproc-per-node " + std::to_string(n) + " -- " + self +
                                         " --sizes " + sizes_text + reps_flag + " 2>&1");
      std::istringstream lines(text);
      for (std::string line; std::getline(lines, line);) {
        const size_t at = line.find("RESULT ");
        if (at == std::string::npos) continue;
        std::istringstream fields(line.substr(at + 7));
        int mib;
        Row row;
        fields >> mib >> row.reps >> row.allreduce >> row.control >> row.communicator >> row.p2p;
        std::getline(fields, row.transports);
        rows[n][choice][mib] = row;
      }
      for (int mib : sizes) {
        if (rows[n][choice].count(mib) == 0) {
          std::fprintf(stderr, "tessel-bench-allreduce: %d ranks over %s printed no figures for %d MiB:\n%s\n", n,
                       choice.c_str(), mib, text.c_str());
          std::exit(1);
        }
      }
    }
  }
  std::map<int, std::map<int, GlooRow>> gloo;  // processes -> MiB -> figures
  std::string torch_version = "(not run)";
  for (int n : procs) {
    const std::string gloo_text = output_of("/usr/bin/python3 " TESSEL_SOURCE_DIR "/bench/gloo_allreduce.py --procs " +
                                            std::to_string(n) + " --sizes " + sizes_text + reps_flag + " 2>&1");
    std::istringstream gloo_lines(gloo_text);
    for (std::string line; std::getline(gloo_lines, line);) {
      std::istringstream fields(line);
      std::string word, version, procs_word, mib_word, ms_word, min_word, reps_word;
      int processes, mib, count;
      double ms, fastest;
      if (fields >> word >> version >> procs_word >> processes >> mib_word >> mib >> ms_word >> ms >> min_word >>
              fastest >> reps_word >> count &&
          word == "gloo") {
        gloo[processes][mib] = {ms, count};
        torch_version = version;
      }
    }
    for (int mib : sizes) {
      if (gloo[n].count(mib) == 0) {
        std::fprintf(stderr, "tessel-bench-allreduce: gloo over %d processes printed no figure for %d MiB:\n%s\n", n,
                     mib, gloo_text.c_str());
        std::exit(1);
      }
    }
  }

  const unsigned cores = std::thread::hardware_concurrency();
  std::printf("all-reduce of float32 between processes on this machine (median ms of the reps, after 2 warm-ups)\n");
  std::printf("%-5s %-4s %5s %4s %9s %9s %10s %6s %9s %9s %9s %7s %7s  %s\n", "procs", "ucx", "MiB", "reps", "tessel",
              "control", "all-reduce", "GB/s", "comm", "p2p", "gloo", "ar/p2p", "ar/gloo", "targets");
  for (int n : procs) {
    for (const std::string& choice : tls) {
      for (int mib : sizes) {
        const Row& r = rows[n][choice][mib];
        const GlooRow& g = gloo[n][mib];
        const double own = r.allreduce - r.control;
        const double to_p2p = r.p2p > 0 && own > 0 ? own / r.p2p : 0.0;
        const double to_gloo = g.ms > 0 && own > 0 ? own / g.ms : 0.0;
        std::string targets;
        if (mib == 256) targets += to_gloo > 0 && to_gloo <= 1 / 1.5 ? "gloo:met " : "gloo:MISSED ";
        if (n == 2) targets += to_p2p > 0 && to_p2p <= 2 ? "p2p:met" : "p2p:MISSED";
        const double gigabytes_per_second = own > 0 ? static_cast<double>(mib) * (1 << 20) / (own * 1e6) : 0.0;
        std::printf("%-5d %-4s %5d %4d %9.3f %9.3f %10.3f %6.2f %9.3f %9.3f %9.3f %7.2f %7.2f  %s\n", n, choice.c_str(),
                    mib, r.reps, r.allreduce, r.control, own, gigabytes_per_second, r.communicator, r.p2p, g.ms, to_p2p,
                    to_gloo, targets.c_str());
      }
      std::printf("%-5d %-4s UCX transports:%s\n", n, choice.c_str(),
                  rows[n][choice].begin()->second.transports.c_str());
    }
  }
  std::printf(
      "tessel: one step of the plan that all-reduces (P(sum) -> B: one COLLECTIVE actor per device, a\n"
      "reduce-scatter then an all-gather, each rank sending its pieces straight to the others in chunks of\n"
      "1 MiB or more); control: the same plan without the conversion; all-reduce = tessel - control;\n"
      "GB/s: T / all-reduce (nccl-tests' algbw); comm: comm::Communicator::all_reduce alone on raw buffers\n"
      "(one worker thread), without the plan around it; p2p: the same T bytes one way, rank 0 to rank 1, with\n"
      "one UCX tag send (plus an 8-byte answer); gloo: torch %s, torch.distributed.all_reduce with gloo over\n"
      "loopback tcp, 1 thread per process (the same figure on the shm and tcp rows: gloo has no shared-memory\n"
      "path). targets (printed, not asserted): gloo: at least 1.5x faster than gloo (ar/gloo <= 0.67) at\n"
      "256 MiB; p2p: within 2x of the point-to-point transfer (ar/p2p <= 2) for 2 processes.\n"
      "Each rank sends and receives 2T(n-1)/n and adds T(n-1)/n; with full-duplex links and idle cores, ar/p2p\n"
      "would approach 2(n-1)/n. This machine has %u cores, shared by all the processes, their copies and their\n"
      "reductions (each rank moves bytes on its UCX progress thread and reduces on its collective worker).\n",
      torch_version.c_str(), cores);
  for (int n : procs) {
    if (static_cast<unsigned>(n) >= cores) {
      std::printf(
          "%d processes on %u cores are oversubscribed (%d busy threads at least, besides CAF's): the %d-process\n"
          "rows measure contention for the cores as much as the algorithm.\n",
          n, cores, 2 * n, n);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  init_logging(argv[0]);
  std::string sizes_text = "1,16,256", procs_text = "2,4", tls_text = "both";
  int reps = 0;  // 0: default_reps per size
  CLI::App app("all-reduce over 2 and 4 processes, beside raw UCX and gloo", "tessel-bench-allreduce");
  cli::style(app);
  app.add_option("--sizes", sizes_text, "MiB per all-reduce")->check(cli::integer_list_in(1, 4096));
  app.add_option("--procs", procs_text, "processes per job")->check(cli::integer_list_in(2, 64));
  app.add_option("--reps", reps, "all-reduces per figure (default: fewer for larger sizes)")
      ->check(cli::integer_in(1, 1 << 20));
  app.add_option("--tls", tls_text, "UCX transports between the processes")
      ->check(CLI::IsMember({"shm", "tcp", "both"}));
  cli::parse(app, argc, argv);
  const std::vector<int> sizes = cli::integer_list(sizes_text);
  try {
    if (std::getenv("TESSEL_RANK") != nullptr) return rank_main(sizes, reps);
    const std::vector<int> procs = cli::integer_list(procs_text);
    const std::vector<std::string> tls =
        tls_text == "both" ? std::vector<std::string>{"shm", "tcp"} : std::vector<std::string>{tls_text};
    char self[4096] = {};
    if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) throw std::runtime_error("cannot find this program");
    return driver_main(self, sizes_text, sizes, procs, reps, tls);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "tessel-bench-allreduce: %s\n", error.what());
    return 1;
  }
}
