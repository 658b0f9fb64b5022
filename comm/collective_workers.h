// Private to comm/ and the executor that owns them: the threads that run the collectives' work.
#pragma once

#include <functional>
#include <memory>

namespace tessel::comm {

// The threads that copy and reduce the collectives' pieces: the communicators' side of the
// work, so that a member never waits on a scheduler thread for its peers.
class CollectiveWorkers {
 public:
  explicit CollectiveWorkers(int threads);
  // Runs what is queued, then joins.
  ~CollectiveWorkers();
  CollectiveWorkers(const CollectiveWorkers&) = delete;
  CollectiveWorkers& operator=(const CollectiveWorkers&) = delete;
  void post(std::function<void()> task);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessel::comm
