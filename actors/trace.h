// A timeline of what the actors did, as a Chrome trace event file (JSON; Perfetto and
// chrome://tracing open it).
//
//   TESSEL_TRACE=run.json tessel-gpt ...                 or trace::start("run.json") in a program
//   tessel-launch --trace run.json --nproc-per-node 2 -- tessel-gpt ...
//
// Every actor activation is a span on its device's track, named by op (or kind) and tensor,
// with its step and the bytes it produced: kernels, input copies, fetches, updates, sends,
// receives and collectives. A receive's span runs from the moment its register was free to
// take the bytes until they arrived; a send's and a collective's until their bytes left or the
// collective completed. Each completed step is an instant event across the process ("step 12").
// Each process is a Chrome process: "rank R" under a launcher (TESSEL_RANK), with one thread
// per device ("cpu:0"), plus one for the steps.
//
// The file is written when the process exits (or at stop()). A process that is a rank of a job
// writes FILE.rankR; tessel-launch merges its ranks' files into FILE when they have exited.
// Timestamps are the wall clock, in microseconds, so ranks on several nodes line up as well as
// their clocks agree.
//
// Off (the default), an activation costs one load and one branch: active() is null.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tessel::trace {

class Recorder;

namespace detail {
extern std::atomic<Recorder*> active;
}

// The recorder while tracing is on, else null. TESSEL_TRACE turns it on at the first Executor.
inline Recorder* active() { return detail::active.load(std::memory_order_acquire); }

// Starts tracing into `path` (for a rank of a job, path.rankR): what TESSEL_TRACE=path does.
// Error::InvalidArgument for an empty path; tracing that is already on keeps its file.
void start(const std::string& path);
// Reads TESSEL_TRACE once and starts tracing when it names a file.
void start_from_environment();
// Writes the file now and turns tracing off; returns the path written ("" when tracing was off).
// Error::FailedPrecondition when the file cannot be written.
std::string stop();

// Microseconds on the trace's clock.
int64_t now_us();

// What a span belongs to, registered once per actor of an executor.
struct ActorInfo {
  std::string device;  // "cpu:0": its track
  std::string name;    // "matmul matmul_1_g0"
  std::string kind;    // "kernel", "send", "recv", "collective", "input", "fetch", "update", "variable"
  int64_t bytes = 0;   // what one activation produces
};

class Recorder {
 public:
  explicit Recorder(std::string path);
  // Registers actors; returns the id of the first (the rest follow in order).
  int add_actors(const std::vector<ActorInfo>& actors);
  // One activation of actor `id` at step `step`, from `begin_us` to now.
  void span(int id, int64_t step, int64_t begin_us);
  // Step `step` completed.
  void step_done(int64_t step);
  // The whole file's JSON text; `pid` numbers this process among the job's.
  std::string json(int pid) const;
  const std::string& path() const { return path_; }

 private:
  struct State;
  std::string path_;
  std::shared_ptr<State> state_;
};

// Merges per-rank trace files (each a JSON object with "traceEvents") into one at `path`.
// Error::InvalidArgument naming a file that is not a trace.
void merge(const std::vector<std::string>& parts, const std::string& path);

}  // namespace tessel::trace
