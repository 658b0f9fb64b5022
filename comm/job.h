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
// the deadline, a lost coordinator, or a broken UCX peer fails the job. Failing means, until
// recovery lands, that this process prints why ("tessel rank 1: the job failed: rank 3 sent
// no heartbeat for 2.0 s") and exits with status 3, so the launcher stops the rest.
#pragma once

#include <cstdint>
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
};

// From TESSEL_RANK, TESSEL_WORLD_SIZE, TESSEL_LOCAL_RANK, TESSEL_MASTER_ADDR,
// TESSEL_MASTER_PORT, TESSEL_JOB_TOKEN, TESSEL_HEARTBEAT_DEADLINE and TESSEL_JOIN_TIMEOUT (seconds
// for the whole roster to gather; tessel-launch sets
// them); nullopt when TESSEL_RANK is not set. Error::InvalidArgument naming a bad variable.
std::optional<JobConfig> job_config_from_environment();

class Job {
 public:
  // Joins (rank 0 first starts the coordinator) and connects. Error::FailedPrecondition when
  // the coordinator refuses the join (naming why: a wrong token, say) or the roster does not
  // gather within the join timeout.
  explicit Job(JobConfig config);
  // finish(), if not called yet.
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  int rank() const;
  int world_size() const;
  Transport& transport();
  // Tells the coordinator this rank is done and waits (bounded by the join timeout) until every
  // rank is; rank 0 keeps the coordinator up until then.
  void finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessel::comm
