// All-reduce between 2 processes over UCX: Tessel's P(sum) -> B boxing, through SEND and RECV
// actors, beside a raw UCX point-to-point transfer of the same bytes and torch.distributed's
// gloo all-reduce, on this machine, in one run.
//
//   tessel-bench-allreduce [--sizes 1,16,256] [--reps N] [--tls shm|tcp|both]
//
// Started alone it is the driver: it launches itself as a 2-rank job with tessel-launch (once
// per UCX transport asked for), runs bench/gloo_allreduce.py, and prints the table. Each rank
// measures, for every size of T MiB:
//   allreduce  a plan that sums a [2, n] tensor split S(0) over axis 0 (each rank's device holds
//              one row, so the sum is P(sum)), converts it to B and fetches the sum of the
//              result. Over 2 devices the planner's P -> B sends each rank's partial tensor whole
//              to the other rank, which adds it: T out and T in per rank, the bound 2T(n-1)/n;
//   control    the same plan without the conversion: the P(sum) result is summed where it lies
//              and only that scalar is all-reduced;
//   p2p        T bytes from rank 0 to rank 1 with comm::Transport (one UCX tag send), and an
//              8-byte answer back.
// The all-reduce's own time is allreduce - control: both plans do the same local work (the
// broadcast, the row sum and the final sum). Steps run one at a time (no overlap), and every
// figure is the median of --reps steps after 2 warm-up steps. Nothing is asserted about time.
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

#include <unistd.h>

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

// Median milliseconds per step of a 2-rank plan over `elements` floats, with or without the
// P -> B conversion. Checks the fetched sum: (a + b) * elements.
double plan_ms(comm::Job& job, int64_t elements, bool convert, int reps) {
  Graph g;
  Tensor x = g.input("x", Shape{2, 1});
  pin(x, Placement::cpu(2), {S(0)});
  Tensor rows = broadcast_to(x, Shape{2, elements});  // row r holds x[r] everywhere
  Tensor partial = sum(rows, {0});                    // S(0) summed over axis 0: P(sum)
  Tensor total = sum(convert ? to(partial, {B}) : partial);
  Session session(g, {total},
                  SessionOptions{.steps_in_flight = 1,
                                 .placement = Placement::cpu(2),
                                 .ranks = job.world_size(),
                                 .rank = job.rank(),
                                 .transport = &job.transport()});
  const float a = 1.0f, b = 2.0f;
  const Feeds feeds{{"x", HostTensor::of(Shape{2, 1}, std::vector<float>{a, b})}};
  std::vector<double> times;
  for (int step = 0; step < 2 + reps; ++step) {
    const auto start = Clock::now();
    const std::vector<HostTensor> fetched = session.step(feeds);
    if (step >= 2) times.push_back(ms_since(start));
    if (!fetched.empty() && fetched[0].defined()) {
      const double expected = (a + b) * static_cast<double>(elements), got = fetched[0].get(0);
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

// Median milliseconds for `bytes` to go from rank 0 to rank 1 and an 8-byte answer to come back.
double p2p_ms(comm::Job& job, size_t bytes, int reps) {
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

// "sysv/memory.0 (am) cma/memory.0 (rma_bw)": the UCX lanes Transport::describe() lists.
std::string lanes_of(const std::string& description) {
  std::istringstream lines(description);
  std::string lanes;
  for (std::string line; std::getline(lines, line);) {
    const size_t lane = line.find("lane[");
    if (lane == std::string::npos) continue;
    std::istringstream words(line.substr(line.find(':', lane) + 1));
    std::string transport, md, arrow, remote, use;
    words >> transport >> md >> arrow >> remote >> use;
    lanes += (lanes.empty() ? "" : " ") + transport.substr(transport.find(':') + 1) + " (" + use + ")";
  }
  return lanes;
}

int rank_main(const std::vector<int>& sizes, int reps) {
  comm::Job job(comm::job_config_from_environment().value());
  if (job.world_size() != 2) {
    std::fprintf(stderr, "tessel-bench-allreduce: runs as 2 ranks, not %d\n", job.world_size());
    return 2;
  }
  for (int mib : sizes) {
    const int64_t elements = int64_t{mib} << 18;  // 4-byte floats
    const double p2p = p2p_ms(job, static_cast<size_t>(elements) * 4, reps);
    const double with = plan_ms(job, elements, true, reps);
    const double without = plan_ms(job, elements, false, reps);
    if (job.rank() == 0) std::printf("RESULT %d %.4f %.4f %.4f %s\n", mib, with, without, p2p, lanes_of(job.transport().describe()).c_str());
    std::fflush(stdout);
  }
  job.finish();
  return 0;
}

struct Row {
  double allreduce = 0, control = 0, p2p = 0;
  std::string transports;
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

int driver_main(const std::string& self, const std::string& sizes_text, const std::vector<int>& sizes, int reps,
                const std::vector<std::string>& tls) {
  std::map<std::string, std::map<int, Row>> rows;  // tls -> MiB -> figures
  for (const std::string& choice : tls) {
    // shm: UCX's own choice between two processes of one machine (shared memory); tcp: loopback
    // sockets, the path between nodes, and gloo's path here.
    const std::string env = choice == "tcp" ? "UCX_TLS=tcp,self " : "";
    const std::string text = output_of(env + TESSEL_LAUNCH " --nproc-per-node 2 -- " + self + " --sizes " + sizes_text +
                                       " --reps " + std::to_string(reps) + " 2>&1");
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      const size_t at = line.find("RESULT ");
      if (at == std::string::npos) continue;
      std::istringstream fields(line.substr(at + 7));
      int mib;
      Row row;
      fields >> mib >> row.allreduce >> row.control >> row.p2p;
      std::getline(fields, row.transports);
      rows[choice][mib] = row;
    }
  }
  std::map<int, double> gloo;
  std::string torch_version = "(not run)";
  const std::string gloo_text = output_of("/usr/bin/python3 " TESSEL_SOURCE_DIR "/bench/gloo_allreduce.py --sizes " +
                                          sizes_text + " --reps " + std::to_string(reps) + " 2>&1");
  std::istringstream gloo_lines(gloo_text);
  for (std::string line; std::getline(gloo_lines, line);) {
    std::istringstream fields(line);
    std::string word, mib_word, ms_word;
    int mib;
    double ms;
    if (fields >> word >> torch_version >> mib_word >> mib >> ms_word >> ms && word == "gloo") gloo[mib] = ms;
  }

  std::printf("all-reduce of float32 between 2 processes on this machine (median ms of %d, after 2 warm-ups)\n", reps);
  std::printf("%-5s %6s %10s %10s %10s %10s %10s %9s %9s\n", "ucx", "MiB", "tessel", "control", "all-reduce", "p2p",
              "gloo", "ar/p2p", "ar/gloo");
  for (const std::string& choice : tls) {
    for (int mib : sizes) {
      const Row& r = rows[choice][mib];
      const double own = r.allreduce - r.control;
      std::printf("%-5s %6d %10.3f %10.3f %10.3f %10.3f %10.3f %9.2f %9.2f\n", choice.c_str(), mib, r.allreduce,
                  r.control, own, r.p2p, gloo[mib], r.p2p > 0 ? own / r.p2p : 0.0, gloo[mib] > 0 ? own / gloo[mib] : 0.0);
    }
    std::printf("%-5s UCX transports: %s\n", choice.c_str(), rows[choice].begin()->second.transports.c_str());
  }
  std::printf(
      "tessel: one step of the plan that all-reduces (P(sum) -> B: each rank sends its partial tensor to the\n"
      "other and adds the one it receives); control: the same plan without the conversion;\n"
      "all-reduce = tessel - control; p2p: the same bytes one way with one UCX tag send (plus an 8-byte answer);\n"
      "gloo: torch %s, torch.distributed.all_reduce with gloo over loopback tcp, 1 thread per process.\n"
      "Each rank sends T and receives T at once, then adds T: with full-duplex links and idle cores, ar/p2p\n"
      "would approach 1. This machine has %u cores, shared by both processes and their copies.\n",
      torch_version.c_str(), std::thread::hardware_concurrency());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  init_logging(argv[0]);
  std::string sizes_text = "1,16,256", tls_text = "both";
  int reps = 10;
  const auto usage = [](const std::string& why) {
    std::fprintf(stderr, "tessel-bench-allreduce: %s\nusage: tessel-bench-allreduce [--sizes MIB,...] [--reps N] "
                 "[--tls shm|tcp|both]\n", why.c_str());
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage("'" + flag + "' needs a value");
    const std::string value = argv[++i];
    if (flag == "--sizes") {
      sizes_text = value;
    } else if (flag == "--reps") {
      reps = std::atoi(value.c_str());
      if (reps < 1) usage("--reps is '" + value + "', expected a positive integer");
    } else if (flag == "--tls") {
      tls_text = value;
      if (value != "shm" && value != "tcp" && value != "both") usage("--tls is '" + value + "', expected shm, tcp or both");
    } else {
      usage("unknown flag '" + flag + "'");
    }
  }
  std::vector<int> sizes;
  std::istringstream list(sizes_text);
  for (std::string item; std::getline(list, item, ',');) {
    const int mib = std::atoi(item.c_str());
    if (mib < 1 || mib > 4096) usage("--sizes has '" + item + "', expected MiB from 1 to 4096");
    sizes.push_back(mib);
  }
  try {
    if (std::getenv("TESSEL_RANK") != nullptr) return rank_main(sizes, reps);
    const std::vector<std::string> tls =
        tls_text == "both" ? std::vector<std::string>{"shm", "tcp"} : std::vector<std::string>{tls_text};
    char self[4096] = {};
    if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) throw std::runtime_error("cannot find this program");
    return driver_main(self, sizes_text, sizes, reps, tls);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "tessel-bench-allreduce: %s\n", error.what());
    return 1;
  }
}
