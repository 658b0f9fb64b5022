#include "comm/gate.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "core/error.h"

namespace tessel::comm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kMagic[8] = {'T', 'E', 'S', 'S', 'E', 'L', 'G', '1'};
constexpr size_t kNonce = 16, kProof = 32;
constexpr size_t kHello = sizeof kMagic + kNonce;            // gate -> peer
constexpr size_t kAnswer = sizeof kMagic + kNonce + kProof;  // peer -> gate
constexpr auto kHandshake = std::chrono::seconds(5);
constexpr size_t kMaxPending = 256;     // handshakes under way; the oldest goes first past this
constexpr size_t kBuffer = 256 * 1024;  // per direction of a carried connection

using Proof = std::array<unsigned char, kProof>;

// HMAC-SHA256 under the token of `who` ("peer" or "gate") and the two nonces, the speaker's last.
Proof prove(const std::string& token, const char* who, const unsigned char* first, const unsigned char* second) {
  unsigned char message[4 + 2 * kNonce];
  std::memcpy(message, who, 4);
  std::memcpy(message + 4, first, kNonce);
  std::memcpy(message + 4 + kNonce, second, kNonce);
  Proof proof{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), token.data(), static_cast<int>(token.size()), message, sizeof message, proof.data(), &length);
  return proof;
}

void nonce(unsigned char* out) {
  if (RAND_bytes(out, static_cast<int>(kNonce)) != 1) throw Error::FailedPrecondition("gate: no random bytes");
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

std::string peer_of(const sockaddr_in& address) {
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
  return concat(text, ":", ntohs(address.sin_port));
}

int listen_on(const std::string& host, uint16_t port, uint16_t* bound) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) {
    throw Error::FailedPrecondition(concat("cannot listen on ", host, ":", port, ": the address does not resolve"));
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  const bool ok = fd >= 0 && bind(fd, found->ai_addr, found->ai_addrlen) == 0 && listen(fd, 512) == 0;
  const int error = errno;
  freeaddrinfo(found);
  if (!ok) {
    if (fd >= 0) close(fd);
    throw Error::FailedPrecondition(concat("cannot listen on ", host, ":", port, ": ", std::strerror(error)));
  }
  sockaddr_in address{};
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  *bound = ntohs(address.sin_port);
  set_nonblocking(fd);
  return fd;
}

// One direction of a carried connection: bytes read from `from` wait here until `to` takes them.
struct Flow {
  int from = -1, to = -1;
  std::vector<char> bytes;
  size_t start = 0;
  bool ended = false;  // `from` has no more
  bool shut = false;   // and `to` was told so
  bool pending() const { return start < bytes.size(); }
};

// A connection carried both ways once its handshake is done.
struct Link {
  Flow in, out;  // outside -> inside, inside -> outside
  bool broken = false;
  bool done() const { return broken || (in.shut && out.shut); }
};

// Moves what it can; false when the flow broke.
bool move(Flow& flow, short readable, short writable) {
  if (readable && !flow.ended && flow.bytes.size() < kBuffer) {
    if (flow.start == flow.bytes.size()) flow.bytes.clear(), flow.start = 0;
    char chunk[65536];
    const ssize_t got = read(flow.from, chunk, std::min(sizeof chunk, kBuffer - flow.bytes.size()));
    if (got > 0) {
      flow.bytes.insert(flow.bytes.end(), chunk, chunk + got);
    } else if (got == 0) {
      flow.ended = true;
    } else if (errno != EAGAIN && errno != EINTR) {
      return false;
    }
  }
  if (writable && flow.pending()) {
    const ssize_t sent = send(flow.to, flow.bytes.data() + flow.start, flow.bytes.size() - flow.start, MSG_NOSIGNAL);
    if (sent > 0) {
      flow.start += static_cast<size_t>(sent);
    } else if (sent < 0 && errno != EAGAIN && errno != EINTR) {
      return false;
    }
  }
  if (flow.ended && !flow.pending() && !flow.shut) {
    shutdown(flow.to, SHUT_WR);
    flow.shut = true;
  }
  return true;
}

// At most one line a second; the lines left out are counted into the next.
class RateLimitedLog {
 public:
  void warn(const std::string& what) {
    const auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(1)) {
      ++left_out_;
      return;
    }
    LOG(WARNING) << what << (left_out_ > 0 ? concat(" (and ", left_out_, " more since the last line)") : "");
    last_ = now;
    left_out_ = 0;
  }

 private:
  Clock::time_point last_{};
  int64_t left_out_ = 0;
};

// The event loop both ends share: a listening socket, handshakes under way, carried links.
class Loop {
 public:
  virtual ~Loop() = default;

  void start(int listener) {
    listener_ = listener;
    if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) throw Error::FailedPrecondition("gate: pipe failed");
    thread_ = std::thread([this] { run(); });
  }

  void close_listener() {
    if (listener_ >= 0) close(listener_);
    listener_ = -1;
  }

  void stop() {
    if (!thread_.joinable()) return;
    const char byte = 0;
    if (write(wake_[1], &byte, 1) < 0) LOG(WARNING) << "gate: cannot wake its thread";
    thread_.join();
    for (Link& link : links_) close(link.in.from), close(link.in.to);
    for (const Pending& pending : pending_) close_pending(pending);
    close_listener();
    close(wake_[0]);
    close(wake_[1]);
  }

 protected:
  // A handshake under way: `fd` is the socket it runs on, `other` the inside (or local) end.
  struct Pending {
    int fd = -1, other = -1;
    Clock::time_point deadline;
    std::string peer;
    std::vector<unsigned char> out;  // still to send
    size_t sent = 0;
    std::vector<unsigned char> in;  // received so far
    size_t expect = 0;              // bytes to receive in this phase
    int phase = 0;
    std::array<unsigned char, kNonce> mine{}, theirs{};
  };

  virtual void accept_one(int fd, const sockaddr_in& from) = 0;
  // The pending handshake's bytes arrived (in.size() == expect): true when it goes on or became a link.
  virtual bool advance(Pending& pending) = 0;

  void add_pending(Pending pending) {
    if (pending_.size() >= kMaxPending) {
      refuse(pending_.front(), "too many handshakes at once: the oldest is dropped");
      pending_.pop_front();
    }
    pending_.push_back(std::move(pending));
  }

  void link(int outside, int inside, std::vector<char> ahead_out = {}) {
    Link made;
    made.in.from = outside, made.in.to = inside;
    made.out.from = inside, made.out.to = outside;
    made.out.bytes = std::move(ahead_out);
    const int on = 1;
    setsockopt(outside, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    setsockopt(inside, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    // A peer whose host vanished (a cut cable) sends no FIN: keepalive ends its link in about a
    // minute instead of never.
    const int idle = 30, interval = 10, probes = 3;
    setsockopt(outside, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(outside, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(outside, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(outside, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    links_.push_back(std::move(made));
  }

  // Counted and logged first, then `last_words` (if any) sent, then closed.
  void refuse(const Pending& pending, const std::string& why, std::string_view last_words = {}) {
    ++refused_;
    log_.warn(concat(name_, ": refused ", pending.peer, ": ", why));
    if (!last_words.empty() && pending.fd >= 0 &&
        send(pending.fd, last_words.data(), last_words.size(), MSG_NOSIGNAL) < 0) {
      // the peer is gone already
    }
    close_pending(pending);
  }

  static void close_pending(const Pending& pending) {
    if (pending.fd >= 0) close(pending.fd);
    if (pending.other >= 0) close(pending.other);
  }

 public:
  std::string name_ = "gate";
  std::atomic<int64_t> admitted_{0}, refused_{0};

 private:
  void run() {
    std::vector<pollfd> fds;
    while (true) {
      fds.clear();
      fds.push_back({wake_[0], POLLIN, 0});
      fds.push_back({listener_, POLLIN, 0});
      for (const Pending& pending : pending_) {
        const bool sending = pending.sent < pending.out.size();
        fds.push_back({pending.fd, static_cast<short>(sending ? POLLOUT : POLLIN), 0});
      }
      for (const Link& link : links_) {
        short outside = 0, inside = 0;
        if (!link.in.ended && link.in.bytes.size() < kBuffer) outside |= POLLIN;
        if (link.out.pending()) outside |= POLLOUT;
        if (!link.out.ended && link.out.bytes.size() < kBuffer) inside |= POLLIN;
        if (link.in.pending()) inside |= POLLOUT;
        fds.push_back({link.in.from, outside, 0});
        fds.push_back({link.in.to, inside, 0});
      }
      if (poll(fds.data(), fds.size(), 200) < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;
      const auto now = Clock::now();
      size_t at = 2;
      // The links the poll saw: a handshake that ends below adds one, polled from the next round.
      const size_t polled_links = links_.size();
      // Handshakes: the poll's entries follow pending_'s order; new ones come after.
      std::list<Pending> keep;
      const size_t count = pending_.size();
      for (size_t i = 0; i < count; ++i, ++at) {
        Pending pending = std::move(pending_.front());
        pending_.pop_front();
        const short revents = fds[at].revents;
        if (!step(pending, revents)) continue;
        if (now > pending.deadline) {
          refuse(pending, "no handshake within 5 s");
          continue;
        }
        keep.push_back(std::move(pending));
      }
      pending_.assign(std::make_move_iterator(keep.begin()), std::make_move_iterator(keep.end()));
      size_t seen = 0;
      for (auto it = links_.begin(); it != links_.end() && seen < polled_links; ++it, ++seen) {
        Link& link = *it;
        const short outside = fds[at++].revents, inside = fds[at++].revents;
        const short hangup = POLLERR | POLLHUP;
        if (!move(link.in, outside & (POLLIN | hangup), inside & (POLLOUT | hangup)) ||
            !move(link.out, inside & (POLLIN | hangup), outside & (POLLOUT | hangup))) {
          link.broken = true;
        }
      }
      for (auto it = links_.begin(); it != links_.end();) {
        if (!it->done()) {
          ++it;
          continue;
        }
        close(it->in.from);
        close(it->in.to);
        it = links_.erase(it);
      }
      if (listener_ >= 0 && (fds[1].revents & POLLIN)) {
        for (int n = 0; n < 64 && listener_ >= 0; ++n) {
          sockaddr_in from{};
          socklen_t length = sizeof from;
          const int fd = accept4(listener_, reinterpret_cast<sockaddr*>(&from), &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (fd < 0) break;
          accept_one(fd, from);
        }
      }
    }
  }

  // Sends or receives what the handshake can; false when it ended (refused, or now a link).
  bool step(Pending& pending, short revents) {
    if (revents & (POLLERR | POLLNVAL)) {
      refuse(pending, "its connection failed");
      return false;
    }
    if (pending.sent < pending.out.size()) {
      if (!(revents & POLLOUT)) return true;
      const ssize_t sent =
          send(pending.fd, pending.out.data() + pending.sent, pending.out.size() - pending.sent, MSG_NOSIGNAL);
      if (sent < 0 && errno != EAGAIN && errno != EINTR) {
        refuse(pending, concat("cannot send: ", std::strerror(errno)));
        return false;
      }
      if (sent > 0) pending.sent += static_cast<size_t>(sent);
      if (pending.sent == pending.out.size() && pending.expect == 0) return advance(pending);
      return true;
    }
    if (!(revents & (POLLIN | POLLHUP))) return true;
    unsigned char chunk[kAnswer];
    const ssize_t got = read(pending.fd, chunk, pending.expect - pending.in.size());
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
      refuse(pending, "it closed before the handshake ended");
      return false;
    }
    if (got > 0) pending.in.insert(pending.in.end(), chunk, chunk + got);
    if (pending.in.size() < pending.expect) return true;
    return advance(pending);
  }

  int listener_ = -1;
  int wake_[2] = {-1, -1};
  std::thread thread_;
  std::deque<Pending> pending_;
  std::list<Link> links_;
  RateLimitedLog log_;
};

}  // namespace

// The gate: hello, then the peer's answer, then the proof back and the inside connection.
struct Gate::State : Loop {
  std::string token;
  uint16_t port = 0, inner = 0;

  void accept_one(int fd, const sockaddr_in& from) override {
    Pending pending;
    pending.fd = fd;
    pending.peer = peer_of(from);
    pending.deadline = Clock::now() + kHandshake;
    nonce(pending.mine.data());
    pending.out.assign(kMagic, kMagic + sizeof kMagic);
    pending.out.insert(pending.out.end(), pending.mine.begin(), pending.mine.end());
    pending.expect = kAnswer;
    add_pending(std::move(pending));
  }

  bool advance(Pending& pending) override {
    const unsigned char* answer = pending.in.data();
    if (std::memcmp(answer, kMagic, sizeof kMagic) != 0) {
      refuse(pending, "it does not speak the gate's handshake (a stray connection, or an old Tessel)");
      return false;
    }
    std::memcpy(pending.theirs.data(), answer + sizeof kMagic, kNonce);
    const Proof expected = prove(token, "peer", pending.mine.data(), pending.theirs.data());
    if (CRYPTO_memcmp(expected.data(), answer + sizeof kMagic + kNonce, kProof) != 0) {
      // A proof of zeros says "refused" to a peer that spoke the handshake: it can say why it stops.
      refuse(pending, "its proof of the job token is wrong (wrong job token)", std::string(kProof, '\0'));
      return false;
    }
    const int inside = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(inner);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (inside < 0 || connect(inside, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      if (inside >= 0) close(inside);
      refuse(pending, concat("the coordinator behind the gate is gone: ", std::strerror(errno)));
      return false;
    }
    set_nonblocking(inside);
    const Proof mine = prove(token, "gate", pending.theirs.data(), pending.mine.data());
    link(pending.fd, inside, std::vector<char>(mine.begin(), mine.end()));
    ++admitted_;
    return false;  // a link now, no longer pending
  }
};

Gate::Gate(std::string token, const std::string& host, uint16_t port, uint16_t inner_port)
    : state_(std::make_unique<State>()) {
  if (token.empty()) throw Error::InvalidArgument("a gate needs the job's token");
  state_->token = std::move(token);
  state_->inner = inner_port;
  state_->start(listen_on(host, port, &state_->port));
}

Gate::~Gate() { state_->stop(); }
uint16_t Gate::port() const { return state_->port; }
int64_t Gate::admitted() const { return state_->admitted_.load(); }
int64_t Gate::refused() const { return state_->refused_.load(); }

// The tunnel: this process's connection comes in; the gate is dialled, answers hello, checks the
// answer and proves itself back; then the two are carried.
struct Tunnel::State : Loop {
  std::string token, host;
  uint16_t port = 0, local = 0;
  mutable std::mutex mutex;
  std::string refusal;  // why the gate turned this process away, if it did

  void accept_one(int fd, const sockaddr_in& from) override {
    Pending pending;
    pending.fd = -1;
    pending.other = fd;
    pending.peer = peer_of(from);
    pending.deadline = Clock::now() + kHandshake;
    // One connection a tunnel: CAF's, which connects as soon as the tunnel exists. The port takes
    // no other (one that came first would leave CAF's refused, and its caller tries again).
    close_listener();
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) {
      refuse(pending, concat("the gate's address ", host, " does not resolve"));
      return;
    }
    pending.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const int connected = pending.fd < 0 ? -1 : connect(pending.fd, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    if (pending.fd < 0 || (connected != 0 && errno != EINPROGRESS)) {
      refuse(pending, concat("cannot reach the gate at ", host, ":", port, ": ", std::strerror(errno)));
      return;
    }
    pending.peer = concat(host, ":", port);
    pending.expect = kHello;
    add_pending(std::move(pending));
  }

  bool advance(Pending& pending) override {
    if (pending.phase == 0) {  // hello: answer it
      if (std::memcmp(pending.in.data(), kMagic, sizeof kMagic) != 0) {
        refuse(pending, "it is no Tessel gate");
        return false;
      }
      std::memcpy(pending.theirs.data(), pending.in.data() + sizeof kMagic, kNonce);
      nonce(pending.mine.data());
      const Proof proof = prove(token, "peer", pending.theirs.data(), pending.mine.data());
      pending.out.assign(kMagic, kMagic + sizeof kMagic);
      pending.out.insert(pending.out.end(), pending.mine.begin(), pending.mine.end());
      pending.out.insert(pending.out.end(), proof.begin(), proof.end());
      pending.sent = 0;
      pending.in.clear();
      pending.expect = kProof;
      pending.phase = 1;
      return true;
    }
    const Proof expected = prove(token, "gate", pending.mine.data(), pending.theirs.data());
    if (CRYPTO_memcmp(expected.data(), pending.in.data(), kProof) != 0) {
      const bool refused = std::all_of(pending.in.begin(), pending.in.end(), [](unsigned char c) { return c == 0; });
      const std::string why = refused ? "wrong job token: the gate refused this process's proof of it"
                                      : "the gate did not prove the job token: another job, or an impostor, there";
      {
        std::lock_guard<std::mutex> lock(mutex);
        refusal = why;
      }
      refuse(pending, why);
      return false;
    }
    link(pending.other, pending.fd);
    ++admitted_;
    return false;
  }
};

Tunnel::Tunnel(std::string token, std::string host, uint16_t port) : state_(std::make_unique<State>()) {
  state_->name_ = "tunnel";
  state_->token = std::move(token);
  state_->host = std::move(host);
  state_->port = port;
  state_->start(listen_on("127.0.0.1", 0, &state_->local));
}

Tunnel::~Tunnel() { state_->stop(); }
uint16_t Tunnel::local_port() const { return state_->local; }

std::string Tunnel::refusal() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->refusal;
}

}  // namespace tessel::comm
