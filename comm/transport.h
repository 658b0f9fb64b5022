// A rank's data plane: one UCX worker driven by its own progress thread, with an endpoint to
// every other rank of the job. Tensor bytes between ranks travel here as UCX tag messages (tcp
// between nodes, shared memory within one; UCX_TLS narrows the choice); never through CAF.
//
//   comm::Transport transport;
//   transport.connect(addresses_of_every_rank, my_rank);   // addresses come over the control plane
//   transport.receive(tag, ~0ull, buffer, bytes, [](const comm::Completion& c) { ... });
//   transport.send(peer, tag, data, bytes, [](const comm::Completion& c) { ... });
//
// Every call is thread-safe and returns at once; `done` runs later on the progress thread
// (keep it short: the SEND and RECV actors post a CAF message from it). Buffers must stay
// valid until their `done` ran. A failed transfer or a peer that disconnects calls the failure
// handler, naming the peer rank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tessel::comm {

struct Completion {
  bool ok = true;
  std::string error{};  // why it failed
  uint64_t tag = 0;     // a receive: the tag the sender used
  size_t bytes = 0;     // a receive: the bytes that arrived
};

class Transport {
 public:
  // `net_device` is the one network device UCX may use (its NET_DEVICES: "lo" for a job that
  // is all on this machine, else the interface that leads to the coordinator), so that UCX's
  // tcp transport listens there only; UCX_NET_DEVICES in the environment wins. Empty: every
  // device, UCX's default. Shared memory within the machine is no network device.
  explicit Transport(const std::string& net_device = {});
  // close().
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // This rank's worker address, to hand to the other ranks.
  std::vector<uint8_t> address() const;
  // Endpoints to every rank; `addresses[rank]` is that rank's address() (its own is skipped).
  void connect(const std::vector<std::vector<uint8_t>>& addresses, int self);

  using Done = std::function<void(const Completion&)>;
  // `group` names the owner (an executor) for forget_group().
  void send(int peer, uint64_t tag, const void* data, size_t bytes, Done done, uint64_t group = 0);
  // A small message whose bytes the transport keeps until it is sent.
  void send_value(int peer, uint64_t tag, uint64_t value, Done done = {});
  // Receives the first message whose tag matches `tag` on the bits set in `mask`. Returns an
  // id for cancel(); a cancelled receive never calls `done`.
  uint64_t receive(uint64_t tag, uint64_t mask, void* data, size_t bytes, Done done, uint64_t group = 0);
  void cancel(uint64_t receive_id);
  // Before an owner goes away: cancels its receives and drops the `done` of its sends still in
  // flight, and returns once that is so (their callbacks hold the owner's actors).
  void forget_group(uint64_t group);
  // A group id no other owner of this process uses.
  static uint64_t new_group();

  // Called on the progress thread when a transfer fails or a peer's endpoint breaks.
  void on_failure(std::function<void(int peer, const std::string& reason)> handler);

  // Cancels receives still posted, stops the progress thread and closes the endpoints (waiting
  // at most 2 s for peers that may be dead). Afterwards every call returns at once and does
  // nothing: no `done` runs any more. Recovery closes an epoch's transport this way, after the
  // actors that used it were aborted and before their buffers go away.
  void close();

  // Whether `peer` (a rank connect() was given) runs on this machine, where UCX uses shared memory.
  bool same_machine(int peer) const;

  // What UCX chose: its transports per endpoint ("tcp", "posix", ...), for logs and tests.
  std::string describe() const;

  // Bytes handed to send() and bytes that arrived, over the transport's life.
  uint64_t bytes_sent() const;
  uint64_t bytes_received() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessel::comm
