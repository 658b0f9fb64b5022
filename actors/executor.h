// The per-rank executor: builds one actor per plan actor on CAF's scheduler, feeds each
// step's inputs, collects the fetched values and reports when steps complete.
//
//   Executor executor(plan, /*rank=*/0, variables.data(), {.worker_threads = 2});
//   auto outputs = executor.run(100, [&](int64_t step) -> std::optional<Feeds> { return batch(step); });
//
// Actors talk only by messages (ready, ack, end of stream, abort); a kernel runs inside its
// actor, on one of `worker_threads` scheduler threads, and never waits on another actor.
// Registers live in an arena laid out by the plan; variables live in the caller's variable
// arena, laid out by the plan's VariableDefs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/tensor.h"

namespace tessel {
namespace proto {
class Plan;
}
namespace comm {
class Transport;
}

struct ExecutorOptions {
  // CAF scheduler threads per device of the rank: how many actors (kernels) run at once.
  int worker_threads = 1;
  // With several devices, each has its own pool of this many kernel threads (parallel_for);
  // one device uses the process's pool (set_cpu_threads).
  int kernel_threads_per_device = 1;
  int steps_in_flight = 2;  // how many steps the executor feeds ahead of the oldest unfinished one
  // A run in which no step completes for this long is aborted with an Error (it never hangs).
  double stall_timeout_seconds = 600;
  // A plan over several ranks moves bytes between them through the rank's transport (its
  // SEND and RECV actors); every rank must be running its share. Plans sharing one transport at
  // the same time need distinct tag spaces (0 to 63), the same on every rank.
  comm::Transport* transport = nullptr;
  int tag_space = 0;
};

class Executor {
 public:
  // Builds the actors of `rank`'s share of `plan` and waits for nothing: sources act when
  // run() hands them steps. `variables` holds the variable arena of each device of that share
  // (DevicePlan.variable_arena_bytes), in order; the caller owns them and keeps them alive.
  // Every device gets its own register arena. Throws Error for a plan this executor cannot
  // run (no share for `rank`, a wrong number of variable arenas, an unknown kernel).
  Executor(const proto::Plan& plan, int rank, std::vector<std::byte*> variables, ExecutorOptions options = {});
  // Drains: end of stream to every source, then waits until every actor has stopped.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  using FeedFn = std::function<std::optional<Feeds>(int64_t step)>;
  // Runs up to `steps` steps, calling feed(step) for each (steps are numbered from 0 over the
  // executor's life) until it returns nullopt. Returns each completed step's fetched values, in
  // the plan's fetch order. A feed of an unknown name or wrong type, or a missing feed, is an
  // Error before its step starts; steps fed before it still complete (their outputs are
  // dropped) so the executor stays consistent. An Error from a kernel aborts every actor and is rethrown,
  // naming the op; the executor is then unusable (FailedPrecondition).
  // `on_step`, when given, is called on the caller's thread as each step completes, in order,
  // with the step's number and fetched values.
  using StepFn = std::function<void(int64_t step, const std::vector<HostTensor>& fetched)>;
  std::vector<std::vector<HostTensor>> run(int64_t steps, const FeedFn& feed, const StepFn& on_step = {});

  // From any thread: the run in progress, or else the next one, ends with Error::Aborted naming
  // `why`, having aborted every actor; the executor is then unusable. Recovery's first step.
  void interrupt(const std::string& why);
  // On the caller's thread, between runs: aborts every actor now, so that destroying the
  // executor does not wait for a drain that peers which are gone cannot finish.
  void abandon(const std::string& why);

  // Steps completed, counted as set_steps_done() set them.
  int64_t steps_done() const;
  // Between runs: the steps done so far are `steps` (a restored checkpoint's). The next step's
  // feed, its kernels (the optimizer's step count, dropout's draws) and on_step see `steps`.
  void set_steps_done(int64_t steps);
  int64_t activations() const;  // kernels run (or feeds copied, values fetched) so far, all actors
  int actor_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessel
