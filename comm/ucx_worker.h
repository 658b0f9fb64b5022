// Moving bytes between processes (or within one) with UCX tag messages: tcp between nodes,
// shared memory within one, RDMA where there is hardware for it. Tensor bytes travel here,
// never through the control plane. A single-threaded worker that the caller drives, for raw
// point-to-point transfers; the SEND and RECV actors use comm/transport.h, which runs its own
// progress thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tessel::ucx {

// One UCX context and worker. Not thread-safe: one thread drives it.
class Worker {
 public:
  Worker();
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // This worker's address, to hand to peers (out of band: the control plane).
  std::vector<uint8_t> address() const;
  // An endpoint to the worker at `address`; returns its index for send().
  int connect(const std::vector<uint8_t>& address);

  // A transfer in flight; complete() after progress() reports it done.
  class Transfer {
   public:
    bool complete() const;

   private:
    friend class Worker;
    void* request = nullptr;  // a UCX request, or nullptr once complete
  };
  // Non-blocking; `data` must stay valid until the transfer is complete.
  Transfer send(int endpoint, uint64_t tag, const void* data, size_t bytes);
  Transfer receive(uint64_t tag, void* data, size_t bytes);

  // Drives UCX; returns whether anything progressed.
  bool progress();
  // Progresses this worker and `peers` until `transfer` completes; Error::FailedPrecondition
  // naming the UCX error if it fails, Error on timing out.
  void wait(Transfer& transfer, std::chrono::milliseconds timeout, const std::vector<Worker*>& peers = {});
  // Releases the transfer's request once complete (no-op otherwise). wait() does this.
  void finish(Transfer& transfer);

  // The transports UCX chose for this worker's context ("tcp", "posix", ...), for logs.
  std::string transports() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessel::ucx
