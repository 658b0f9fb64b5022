// The control plane's door. CAF's middleman parses whatever reaches its port, and malformed BASP
// bytes can crash it, so no coordinator port is CAF's own: CAF listens on loopback, and a Gate
// listens for the job. A peer passes the gate only once it has proven that it holds the job's
// token, without sending the token:
//
//   gate -> peer   "TESSELG1", a 16-byte nonce
//   peer -> gate   "TESSELG1", its own 16-byte nonce, HMAC-SHA256(token, "peer" nonces)
//   gate -> peer   HMAC-SHA256(token, "gate" nonces): the peer knows it reached this job
//
// and then its bytes flow to CAF and back. A peer that sends anything else, or nothing within
// the handshake's 5 s, is closed, and the refusal is logged (at most one line a second, with a
// count of those left out). On the other side a Tunnel gives CAF a loopback port whose
// connection it carries through the handshake to a gate: one connection, CAF's, after which the
// port is closed.
//
// What this does not stop: a process on the coordinator's own host can connect to CAF's loopback
// port directly, and one on a rank's host that connects to a tunnel's port before CAF does (in
// the moment between the two) is carried in.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace tessel::comm {

class Gate {
 public:
  // Listens on host:port (port 0: any free one) and carries every connection that proves `token`
  // to 127.0.0.1:inner_port. Error::FailedPrecondition when it cannot listen.
  Gate(std::string token, const std::string& host, uint16_t port, uint16_t inner_port);
  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  uint16_t port() const;
  int64_t admitted() const;
  int64_t refused() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

class Tunnel {
 public:
  // A loopback port; each connection this process makes to it is carried to the gate at
  // host:port, which must prove `token` in turn.
  Tunnel(std::string token, std::string host, uint16_t port);
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  uint16_t local_port() const;
  // Why the gate turned this process away ("wrong job token: ..."), once it did; else empty.
  std::string refusal() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessel::comm
