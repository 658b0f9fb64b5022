// Sessions: compile a graph once and train it step by step through the actor runtime.
//
//   Session session(g, {loss});                       // actors on CAF, one worker thread
//   auto losses = session.run(100, [&](int64_t step) { return Feeds{{"x", x[step]}, {"y", y[step]}}; });
//   HostTensor w = session.variable("w");
//
// With SessionOptions::use_interpreter the same calls run the reference interpreter instead,
// which is what the runtime's tests compare against.
#pragma once

#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/executor.h"
#include "graph/compile.h"
#include "graph/graph.h"

namespace tessel {

struct SessionOptions {
  bool use_interpreter = false;  // the reference interpreter instead of actors
  int worker_threads = 1;        // actors (kernels) that run at the same time
  int register_count = 1;        // registers per output (see PlanOptions)
  bool share_memory = true;      // registers of disjoint lifetimes share arena bytes
  int steps_in_flight = 2;       // steps fed ahead of the oldest unfinished one
  // Where tensors that nothing pins live (PlanOptions::placement): Placement::cpu(4) runs the
  // graph over cpu:0 ... cpu:3 in this process.
  Placement placement = Placement::cpu(1);
  int kernel_threads_per_device = 1;  // with several devices: each one's kernel threads
  // A job of several processes (comm/job.h): the plan's devices spread over `ranks` ranks
  // (PlanOptions::ranks), this process runs rank `rank`'s share, and bytes between ranks move
  // through `transport`. Every rank makes the same calls in the same order.
  int ranks = 1;
  int rank = 0;
  comm::Transport* transport = nullptr;
};

// One shard of a variable held by this rank, and where it starts in the whole variable.
struct VariableShardValue {
  std::string device;  // "cpu:2"
  std::vector<int64_t> starts;
  HostTensor value;
};

class Session {
 public:
  // Compiles `graph` (which must outlive the session) into a training plan that fetches
  // `fetches` at every step. Throws Error as compile_plan() does.
  Session(Graph& graph, std::vector<Tensor> fetches, SessionOptions options = {});
  // The same, with a plan the caller compiled (for instance with per-tensor register counts).
  Session(Graph& graph, const PlanOptions& plan_options, SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Returns the feeds of step `step` (counted over the session's life), or nullopt to stop.
  using FeedFn = Executor::FeedFn;
  // Called as each step completes, in order, with its number and fetched values.
  using StepFn = Executor::StepFn;

  // Runs up to `steps` training steps, fed by `feed`, and returns each step's fetched values
  // (also handed to `on_step` as each step completes). Errors (bad feeds, a kernel's error
  // naming its op) are thrown; after a kernel error the session cannot run again.
  std::vector<std::vector<HostTensor>> run(int64_t steps, const FeedFn& feed, const StepFn& on_step = {});
  // Runs one step per element of [begin, end), each a Feeds.
  template <typename Iterator>
  std::vector<std::vector<HostTensor>> run(Iterator begin, Iterator end) {
    return run(std::distance(begin, end), [&](int64_t) -> std::optional<Feeds> { return *begin++; });
  }
  std::vector<HostTensor> step(const Feeds& feeds);

  // Computes `fetches` in evaluation mode (dropout off), updating nothing, with the current
  // variables. Evaluation plans are compiled once per list of fetches and kept.
  std::vector<HostTensor> evaluate(const Feeds& feeds, const std::vector<Tensor>& fetches);

  // A copy of a variable's current value; Error::NotFound for an unknown name, and
  // Error::FailedPrecondition when part of it lives on another rank.
  HostTensor variable(const std::string& name) const;
  // This rank's shards of a variable (every device's copy of a broadcast one).
  std::vector<VariableShardValue> local_shards(const std::string& name) const;
  void set_variable(const std::string& name, const HostTensor& value);

  int64_t steps_done() const;
  // The training plan (empty with use_interpreter).
  const proto::Plan& plan() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessel
