// A rank's membership of a job of several processes: the control plane (CAF), the data plane
// (comm/transport.h) and the rules for ending.
//
//   comm::Job job(comm::job_config_from_environment().value());  // what tessel-launch sets
//   Session session(graph, {loss}, {.ranks = job.world_size(), .rank = job.rank(),
//                                   .transport = &job.transport()});
//   ... train ...
//   job.finish();  // waits until every rank has finished, so no rank's peers vanish early
//
// Rank 0 hosts the coordinator (comm/coordinator.h) at master_addr:master_port. Every rank
// joins it with the job token and its UCX address, waits for the whole roster, connects its
// transport to every other rank, and then heartbeats both ways: a rank silent for longer than
// the deadline, a lost coordinator, or a broken UCX peer ends the membership as it stands.
//
// Without recovery that fails the job: this process prints why ("tessel rank 1: the job failed:
// rank 3 sent no heartbeat for 2.0 s") and exits with status 3, so the launcher stops the rest.
//
// With recovery (JobConfig::recovery; tessel-launch --nnodes MIN:MAX sets it) the job goes on:
// each loss of a member starts a new epoch. The on_epoch_end handler hears of it (Session's
// aborts the step in flight), and reform() joins the next epoch: a fresh transport, so nothing
// of an older epoch reaches the new one, and ranks renumbered among the members that remain.
// A member keeps its first rank as its name in the job (member()). The job fails only when
// fewer than `min_nodes` nodes remain, or when the coordinator itself is lost. A member that the
// job went on without (it froze past the deadline, and woke) exits with status 4.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace tessel::comm {

class Transport;

struct JobConfig {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  uint16_t master_port = 29400;
  std::string token{};
  double heartbeat_interval_seconds = 0.5;
  double heartbeat_deadline_seconds = 5;
  double join_timeout_seconds = 60;  // for the whole roster to gather
  int node = 0;                      // the node this rank runs on (tessel-launch's node rank)
  bool recovery = false;             // a lost member starts a new epoch instead of failing the job
  int min_nodes = 1;                 // with recovery: the job fails when fewer nodes remain
  int max_nodes = 0;                 // with recovery: ranks that join stay within this many nodes (0: any)
  // Joins a running job with recovery as a new member (a replacement), instead of as `rank` of a
  // job being formed: the coordinator names it and starts the next epoch with it.
  bool join = false;
};

// From TESSEL_RANK, TESSEL_WORLD_SIZE, TESSEL_LOCAL_RANK, TESSEL_MASTER_ADDR,
// TESSEL_MASTER_PORT, TESSEL_JOB_TOKEN, TESSEL_HEARTBEAT_DEADLINE, TESSEL_JOIN_TIMEOUT (seconds
// for the whole roster to gather), TESSEL_NODE_RANK, TESSEL_RECOVERY (1: on), TESSEL_MIN_NODES,
// TESSEL_MAX_NODES and TESSEL_JOIN (1: join the running job; tessel-launch sets them); nullopt
// when TESSEL_RANK is not set. Error::InvalidArgument naming a bad variable.
std::optional<JobConfig> job_config_from_environment();

class Job {
 public:
  // Joins (rank 0 first starts the coordinator) and connects. Error::FailedPrecondition when
  // the coordinator refuses the join (naming why: a wrong token, say) or the roster does not
  // gather within the join timeout. With JobConfig::join it joins the running job, and returns
  // once the epoch with it formed (its Session then takes its state from the others); when the
  // job finished before that, this process says so and exits with status 0.
  explicit Job(JobConfig config);
  // finish(), if not called yet.
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  // This epoch's rank, ranks and transport (each epoch has its own).
  int rank() const;
  int world_size() const;
  Transport& transport();
  int node() const;
  // This process's rank at the first epoch, or the name the coordinator gave it when it joined
  // the running job: its name in the job for good.
  int member() const;
  // Whether this member joined the running job (JobConfig::join): it holds no state of its own.
  bool joined_running() const;

  // Recovery (JobConfig::recovery).
  bool recovery() const;
  double heartbeat_deadline_seconds() const;
  int epoch() const;  // the epoch this rank runs in: 0, then one more at each re-forming
  // Whether the coordinator began an epoch after epoch().
  bool epoch_ended() const;
  // `handler` runs, on a thread of the job's, as soon as this rank hears that its epoch ended,
  // with why. Keep it short: abort what uses the transport, and let the caller's thread reform().
  // Replacing it (with {} too) waits for a call under way to return.
  void on_epoch_end(std::function<void(const std::string& why)> handler);
  // Joins the newest epoch: closes this epoch's transport (its peers may be dead; the bytes in
  // flight are dropped), makes a new one, gives its address and waits until every member has;
  // rank(), world_size() and transport() are then the new epoch's. Another loss meanwhile moves
  // it on to the epoch after. Error::FailedPrecondition when the job failed (too few nodes remain)
  // or went on without this rank.
  void reform();
  // The steps this rank has done and the step its run goes to (Session reports them; heartbeats
  // carry them). A rank that finishes after fewer steps than another runs to would leave it
  // waiting: the job fails at once, naming both and the steps.
  void progress(int64_t done, int64_t target);
  // Tells the coordinator this rank is done and waits (bounded by the join timeout) until every
  // rank is; rank 0 keeps the coordinator up until then.
  void finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessel::comm
