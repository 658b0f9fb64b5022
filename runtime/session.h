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
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/executor.h"
#include "graph/compile.h"
#include "graph/graph.h"
#include "runtime/checkpoint.h"

namespace tessel {
namespace comm {
class Job;
}

// What a recovery did, after a member was lost or joined. SessionOptions::on_membership_change
// gets it as soon as the variables are restored (they hold the values of step resumed_at then;
// first_step_ms is still 0; a member that joined gets it as its first run() begins), and every
// rank's run() logs it in one line once the first step after it completed.
struct MembershipChange {
  int epoch = 0;
  std::string why;               // who was lost or joined, as the coordinator saw it
  bool joined = false;           // this rank joined the running job: its state came from the others
  int ranks = 0, rank = 0;       // the job's ranks now, and this one's number among them
  int devices = 0;               // devices the plan spans now
  int64_t resumed_at = 0;        // the steps done the state was restored to
  std::string source;            // "memory" (snapshots) or the checkpoint's path
  int64_t heard_at_unix_ms = 0;  // when this rank heard of the loss (wall clock)
  // Milliseconds of each phase, from when this rank heard of the loss.
  double abort_ms = 0, reform_ms = 0, replan_ms = 0, restore_ms = 0, first_step_ms = 0;
  std::string to_string() const;
};

struct SessionOptions {
  bool use_interpreter = false;  // the reference interpreter instead of actors
  int worker_threads = 1;        // actors (kernels) that run at the same time
  int register_count = 1;        // registers per output (see PlanOptions)
  bool share_memory = true;      // registers of disjoint lifetimes share arena bytes
  bool fuse = true;              // matmul epilogues fuse into one actor (PlanOptions::fuse)
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
  // Checkpoints (runtime/checkpoint.h): with checkpoint_every N > 0, run() saves into
  // checkpoint_dir after every N-th step (counted over the session's life), writing in the
  // background, and keeps the newest keep_checkpoints.
  std::string checkpoint_dir{};
  int64_t checkpoint_every = 0;
  int keep_checkpoints = 3;
  // The program's own data-stream position, saved with each checkpoint of checkpoint_every
  // (the step is saved anyway, and is the position when the feeds are a function of the step).
  std::function<std::map<std::string, int64_t>()> data_position{};
  // A job of several processes, in place of ranks, rank and transport: they are the job's. With
  // the job's recovery on (comm/job.h), run() survives the loss of ranks: it keeps a snapshot in
  // memory every `snapshot_every` steps (runtime/recovery.h), and when a member is lost it aborts
  // the step, re-forms the job, re-lays the graph's placements over the devices that remain
  // (devices per rank stay; graph/relayout.h), re-plans, restores every variable from the
  // survivors' snapshots (or, when a slice survived nowhere, from the newest checkpoint in
  // checkpoint_dir), and goes on from that step: the global batch is the same, each survivor takes
  // a larger share. Steps after the restored one run again, and on_step sees them again.
  comm::Job* job = nullptr;
  // Steps between two snapshots; 0: as many as keep a snapshot's cost under 5% of the steps
  // between two (1 when it is that cheap), measured as the job runs.
  int64_t snapshot_every = 0;
  std::function<void(const MembershipChange&)> on_membership_change{};
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

  // Checkpoints (runtime/checkpoint.h). Every rank of a job makes these calls too, in the same order.
  //
  // Saves every variable (parameters and optimizer state) and the training position into
  // `root`/step-N, N = steps_done(), with `data` as the data-stream position. Returns once this
  // rank's shards are copied into memory: writing and committing go on in the background, one
  // save at a time (a save waits for the one before it). An error of the background write is
  // thrown by the next save(), wait_for_save() or restore(), and logged by the destructor.
  void save(const std::string& root, std::map<std::string, int64_t> data = {});
  // Waits until the save in flight is committed and returns what it wrote (this rank's bytes).
  // Error::FailedPrecondition when no save was made.
  CheckpointInfo wait_for_save();
  // Loads the checkpoint at `path` (a step-N directory, or a root: its newest complete
  // checkpoint, passing over damaged ones) onto this session's layout, whatever layout wrote it,
  // and sets steps_done() to its step: the next run() goes on where the saved run stood.
  // Refusals as checkpoint::restore().
  CheckpointInfo restore(const std::string& path);

  int64_t steps_done() const;
  // The training plan (empty with use_interpreter).
  const proto::Plan& plan() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessel
