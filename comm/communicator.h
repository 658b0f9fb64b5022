// Collectives over a group of devices, with NCCL's shape (DESIGN.md, "SBP, in one table"): a
// communicator per group, made once, and all-reduce, reduce-scatter, all-gather, all-to-all,
// send and receive on it. A group's members may live in this process (their buffers are read
// directly, no copy through a transport) or on other ranks (pieces move over UCX through the
// rank's comm::Transport).
//
//   comm::CollectiveWorkers workers(2);
//   comm::CpuCommunicator comm({.group = 3, .member_ranks = {0, 0, 1, 1}, .rank = 0,
//                            .transport = &transport, .workers = &workers});
//   comm.all_reduce(/*member=*/0, send0, recv0, count, f32, comm::ReduceOp::sum, done0);
//   comm.all_reduce(/*member=*/1, send1, recv1, count, f32, comm::ReduceOp::sum, done1);
//
// Every call returns at once. `done` runs later on a worker thread, once this member's part is
// over: its receive buffer holds the result and nothing reads its send buffer any more (keep it
// short: the collective actors post a CAF message from it). Buffers stay the caller's and must
// stay valid until then. Every member calls the same operations in the same order with counts
// that agree; each member has at most one operation in flight.
//
// Algorithms, by size: an all-reduce of at most 64 KiB over more than 2 members goes by
// recursive doubling (log n rounds of whole-buffer exchanges, the members above the largest
// power of two folded in first and answered last), where latency is its cost. Every other
// operation is one or two rounds of pairwise exchange, member i sending its piece for member j
// straight to j (all-reduce: a reduce-scatter, then an all-gather of the reduced chunks), so
// each member moves the bytes of DESIGN.md's table. Reductions take the pieces in an order fixed
// by the group, whatever order they arrive in, so results do not depend on timing: a piece from
// another rank first where there is one (it lands in place, with no copy), then the others in
// member order. Pieces from other ranks move in chunks of `chunk_bytes` and are reduced as they
// come.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/collective_workers.h"
#include "core/dtype.h"

namespace tessel::comm {

class Transport;

enum class ReduceOp { sum, max };

struct CommunicatorOptions {
  // Unique among the communicators that share a transport and tag space at one time, and the
  // same on every rank: it is part of every tag. At most kTagChannels (comm/tags.h).
  int group = 0;
  std::vector<int> member_ranks{};  // the rank of each member, in member order (at most 4,096)
  int rank = 0;                     // this process: its members are those it calls for
  Transport* transport = nullptr;   // needed when a member lives on another rank
  int tag_space = 0;
  uint64_t transport_group = 0;  // the owner of its transfers (Transport::forget_group)
  CollectiveWorkers* workers = nullptr;
  // Pieces between ranks move in chunks of this, rounded up to whole elements (a multiple of
  // 8 bytes), or larger where a piece would need more than 16.
  size_t chunk_bytes = size_t{1} << 20;
};

// The interface every implementation gives (this CPU one over memory and UCX; NCCL's on CUDA
// devices): a communicator per group, each call for one member, completion through `done`.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int size() const = 0;

  using Done = std::function<void(const std::string& error)>;  // empty: it worked
  // `count` elements everywhere; recv = the reduction of every member's send.
  virtual void all_reduce(int member, const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                          Done done) = 0;
  // send holds counts[0] + ... + counts[n-1] elements, chunk j after chunk j-1; recv gets
  // counts[member]: the reduction of every member's chunk `member`.
  virtual void reduce_scatter(int member, const void* send, void* recv, const std::vector<size_t>& counts, DType dtype,
                              ReduceOp op, Done done) = 0;
  // send holds counts[member] elements; recv gets every member's, in member order.
  virtual void all_gather(int member, const void* send, void* recv, const std::vector<size_t>& counts, DType dtype,
                          Done done) = 0;
  // Chunk j of send (send_counts[j] elements) goes to member j; chunk j of recv
  // (recv_counts[j]) comes from member j, whose send_counts[member] it must equal.
  virtual void all_to_all(int member, const void* send, void* recv, const std::vector<size_t>& send_counts,
                          const std::vector<size_t>& recv_counts, DType dtype, Done done) = 0;
  // Point to point: the k-th send from member a to member b meets b's k-th receive from a.
  virtual void send(int member, int peer, const void* data, size_t bytes, Done done) = 0;
  virtual void receive(int member, int peer, void* data, size_t bytes, Done done) = 0;

  // Stops every operation in flight: receives are cancelled, and each local member with an
  // operation in flight gets done(why). Later calls fail the same way. Recovery aborts a
  // communicator and makes the next epoch's; it never mends one.
  virtual void abort(const std::string& why) = 0;
};

// The CPU communicator: members' buffers in host memory, in this process or on other ranks.
class CpuCommunicator final : public Communicator {
 public:
  // Error::InvalidArgument for no members, too many, a group out of range, no workers, or
  // members on other ranks and no transport.
  explicit CpuCommunicator(CommunicatorOptions options);
  // Aborts what is in flight (no `done` runs after it returns).
  ~CpuCommunicator() override;
  CpuCommunicator(const CpuCommunicator&) = delete;
  CpuCommunicator& operator=(const CpuCommunicator&) = delete;

  int size() const override;
  void all_reduce(int member, const void* send, void* recv, size_t count, DType dtype, ReduceOp op, Done done) override;
  void reduce_scatter(int member, const void* send, void* recv, const std::vector<size_t>& counts, DType dtype,
                      ReduceOp op, Done done) override;
  void all_gather(int member, const void* send, void* recv, const std::vector<size_t>& counts, DType dtype,
                  Done done) override;
  void all_to_all(int member, const void* send, void* recv, const std::vector<size_t>& send_counts,
                  const std::vector<size_t>& recv_counts, DType dtype, Done done) override;
  void send(int member, int peer, const void* data, size_t bytes, Done done) override;
  void receive(int member, int peer, void* data, size_t bytes, Done done) override;
  void abort(const std::string& why) override;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tessel::comm
