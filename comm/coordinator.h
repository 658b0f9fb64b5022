// The control plane's coordinator: rank 0 hosts it on CAF and publishes it over the CAF
// middleman; every rank joins it with the job's token (comm/job.h). A join without the right
// token is refused and logged, and the job goes on. Once every rank joined, each gets the
// roster of UCX addresses (every rank derives its share of the plan itself). The job fails
// when a rank misses the heartbeat deadline or its presence actor goes down (its process or
// connection ended) before it left. Only control messages travel here; tensor bytes go over
// UCX (comm/transport.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tessel {

struct CoordinatorOptions {
  // A member lost after the roster formed starts the next epoch among the others (comm/job.h)
  // instead of failing the job, as long as members on `min_nodes` nodes remain.
  bool recovery = false;
  int min_nodes = 1;
  // With recovery, a rank may join the running job (join_coordinator's rank -1): it starts the
  // next epoch, with it. 0: from any number of nodes; else the job's ranks stay on at most this many.
  int max_nodes = 0;
  // A standby, which every rank of a recovering job keeps: it refuses everything until
  // take_over(), when the coordinator was lost and the job elected this rank's (comm/job.h).
  bool standby = false;
};

// A member of the last roster, for a coordinator that takes over.
struct TakeoverMember {
  int member = 0;
  int node = 0;
  std::string control;  // "host:port" of its standby coordinator
};

class Coordinator {
 public:
  // Listens on `host`:`port` (port 0: any free port) for `world_size` ranks showing `token`.
  // Once every rank has joined, a rank that sends no heartbeat for `heartbeat_deadline_seconds`
  // fails the job: every rank learns it from its next heartbeat's answer. Before that, ranks
  // wait for the roster without heartbeats, and the job fails only when the roster has not
  // gathered `join_timeout_seconds` after the first join, naming the ranks still missing.
  Coordinator(std::string token, int world_size, const std::string& host = "127.0.0.1", uint16_t port = 0,
              double heartbeat_deadline_seconds = 10, double join_timeout_seconds = 60,
              CoordinatorOptions options = {});
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  uint16_t port() const;
  std::vector<int> members() const;  // ranks admitted so far, ascending
  int refused() const;               // joins refused so far
  bool complete() const;             // every rank of the world has joined
  std::string failure() const;       // why the job failed; empty while it has not
  int epoch() const;                 // 0, and one more at each membership change
  // A standby becomes the job's coordinator at `epoch`, with the members of the last roster that
  // remain: each reforms with it, and one that does not is lost at the heartbeat deadline. A rank
  // that joins from then on is named `next_member` (or after the highest member), then onwards.
  void take_over(int epoch, const std::vector<TakeoverMember>& members, int next_member = 0);
  bool active() const;
  // Also listens on `port` (on its own interface), as a coordinator that took over does on the job's
  // first coordinator port, for ranks that join the running job there. False when it is taken.
  bool listen_also(uint16_t port);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct JoinReply {
  bool accepted = false;
  std::string message;  // why a join was refused
};

// Joins the coordinator at host:port as `rank`, presenting `token`; rank -1 joins a running job
// with recovery as a new member (the message is then "joined MEMBER EPOCH"), from `node`. Error::FailedPrecondition
// when the coordinator cannot be reached within `timeout_seconds`.
JoinReply join_coordinator(const std::string& host, uint16_t port, const std::string& token, int rank,
                           int timeout_seconds = 10, int node = 0);

}  // namespace tessel
