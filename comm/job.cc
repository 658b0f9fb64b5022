#include "comm/job.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <thread>

#include "comm/control_messages.h"
#include "comm/coordinator.h"
#include "comm/gate.h"
#include "comm/transport.h"
#include "core/error.h"

namespace tessel::comm {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

double number_from(const char* name, const char* text, double low, double high) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (*text == '\0' || *end != '\0' || !(value >= low && value <= high)) {
    throw Error::InvalidArgument(
        concat("environment variable ", name, "='", text, "': expected a number in [", low, ", ", high, "]"));
  }
  return value;
}

// This machine's address on the way to `host` (the coordinator's): what other ranks can reach.
std::string local_address_towards(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr)
    return "127.0.0.1";
  std::string address = "127.0.0.1";
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0) {  // a UDP connect sends nothing
    sockaddr_in local{};
    socklen_t length = sizeof local;
    char text[INET_ADDRSTRLEN] = {};
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0 &&
        inet_ntop(AF_INET, &local.sin_addr, text, sizeof text) != nullptr) {
      address = text;
    }
  }
  if (fd >= 0) ::close(fd);
  freeaddrinfo(found);
  return address;
}

// The network device that holds IPv4 `address` ("lo" for 127.0.0.1); empty if none does.
std::string device_with_address(const std::string& address) {
  in_addr wanted{};
  if (inet_pton(AF_INET, address.c_str(), &wanted) != 1) return {};
  ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0) return {};
  std::string device;
  for (const ifaddrs* i = all; i != nullptr && device.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    if (reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == wanted.s_addr) device = i->ifa_name;
  }
  freeifaddrs(all);
  return device;
}

// Whether a TCP connection to host:port opens within `timeout`: a host that is cut off answers
// nothing, and a plain connect would wait for the kernel's retries (minutes).
bool opens_within(const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) return false;
  bool opened = false;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    if (connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
      opened = true;
    } else if (errno == EINPROGRESS) {
      pollfd wait{fd, POLLOUT, 0};
      int error = 0;
      socklen_t length = sizeof error;
      opened = poll(&wait, 1, static_cast<int>(timeout.count())) == 1 &&
               getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
    }
    ::close(fd);
  }
  freeaddrinfo(found);
  return opened;
}

}  // namespace

std::optional<JobConfig> job_config_from_environment() {
  const char* rank = std::getenv("TESSEL_RANK");
  if (rank == nullptr) return std::nullopt;
  JobConfig config;
  const auto integer = [](const char* name, double low, double high, int fallback) {
    const char* text = std::getenv(name);
    return text == nullptr ? fallback : static_cast<int>(number_from(name, text, low, high));
  };
  config.world_size = integer("TESSEL_WORLD_SIZE", 1, 1 << 20, 1);
  config.rank = integer("TESSEL_RANK", 0, config.world_size - 1, 0);
  config.local_rank = integer("TESSEL_LOCAL_RANK", 0, 1 << 20, 0);
  config.master_port = static_cast<uint16_t>(integer("TESSEL_MASTER_PORT", 1, 65535, config.master_port));
  if (const char* addr = std::getenv("TESSEL_MASTER_ADDR")) config.master_addr = addr;
  if (const char* token = std::getenv("TESSEL_JOB_TOKEN")) config.token = token;
  if (const char* deadline = std::getenv("TESSEL_HEARTBEAT_DEADLINE")) {
    config.heartbeat_deadline_seconds = number_from("TESSEL_HEARTBEAT_DEADLINE", deadline, 0.05, 3600);
    config.heartbeat_interval_seconds =
        std::min(config.heartbeat_interval_seconds, config.heartbeat_deadline_seconds / 4);
  }
  if (const char* timeout = std::getenv("TESSEL_JOIN_TIMEOUT")) {
    config.join_timeout_seconds = number_from("TESSEL_JOIN_TIMEOUT", timeout, 0.1, 86400);
  }
  config.node = integer("TESSEL_NODE_RANK", 0, 1 << 20, 0);
  const auto boolean = [](const char* name, bool fallback) {
    const char* text = std::getenv(name);
    if (text == nullptr) return fallback;
    if (std::strcmp(text, "0") != 0 && std::strcmp(text, "1") != 0)
      throw Error::InvalidArgument(concat("environment variable ", name, "='", text, "': expected 0 or 1"));
    return text[0] == '1';
  };
  config.recovery = boolean("TESSEL_RECOVERY", false);
  config.min_nodes = integer("TESSEL_MIN_NODES", 1, 1 << 20, 1);
  config.max_nodes = integer("TESSEL_MAX_NODES", 0, 1 << 20, 0);
  config.join = boolean("TESSEL_JOIN", false);
  if (config.token.empty()) throw Error::InvalidArgument("TESSEL_JOB_TOKEN is not set: a job needs its token");
  return config;
}

struct Job::State {
  JobConfig config;
  std::string net_device;  // the one UCX may use: where the job's other ranks reach this one
  std::unique_ptr<Coordinator> coordinator;      // rank 0
  std::vector<std::unique_ptr<Tunnel>> tunnels;  // to the coordinators reached; they outlive `system`
  caf::actor_system_config caf_config;
  caf::actor_system system{with_middleman(caf_config)};
  caf::actor remote;                                // the coordinator
  caf::actor presence;                              // monitored by the coordinator: it goes down with this process
  std::unique_ptr<Transport> transport;             // this epoch's
  std::vector<std::unique_ptr<Transport>> retired;  // earlier epochs', closed
  std::thread heartbeats;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::atomic<bool> finishing{false};
  bool finished = false;
  // Epochs: `epoch` is the one this rank runs in, `newest` the newest it heard of.
  std::atomic<int> rank{0}, world_size{1}, epoch{0}, newest{0};
  // The coordinator's election (recovery): every rank keeps a standby, announced as `control`;
  // the last roster says who would take over, in rank order.
  struct RosterMember {
    int member = 0, node = 0;
    std::string control;
  };
  std::unique_ptr<Coordinator> standby;
  std::string control;
  std::vector<RosterMember> roster;
  int coordinator_member = 0;  // whose process hosts the coordinator
  int next_member = 0;         // the name of the next member to join, as of the last roster
  std::mutex remote_mutex;     // `remote` changes when a coordinator takes over
  std::atomic<bool> coordinator_lost{false};
  std::mutex handler_mutex;
  std::function<void(const std::string&)> on_epoch_end;
  std::atomic<int64_t> steps_done{-1}, steps_target{-1};  // Job::progress(); -1: not known

  ~State() {
    if (presence) caf::anon_send_exit(presence, caf::exit_reason::user_shutdown);  // else `system` waits for it
  }

  [[noreturn]] void fail(const std::string& reason) {
    std::fprintf(stderr, "tessel rank %d: the job failed: %s\n", rank.load(), reason.c_str());
    std::fflush(stderr);
    std::_Exit(3);
  }

  // Runs the handler under its mutex: on_epoch_end({}) waits for a call under way, so the
  // handler's owner may go once it returned.
  void tell_epoch_end(const std::string& why) {
    std::lock_guard<std::mutex> lock(handler_mutex);
    if (on_epoch_end) on_epoch_end(why);
  }

  // The coordinator began epoch `heard` (or later): tell the handler once per epoch.
  void heard_of(int heard, const std::string& why) {
    int known = newest.load();
    while (heard > known && !newest.compare_exchange_weak(known, heard)) {
    }
    if (heard <= known) return;
    LOG(WARNING) << "rank " << rank.load() << " (member " << config.rank << "): epoch " << epoch.load()
                 << " ended: " << why;
    tell_epoch_end(why);
  }

  // A request to the coordinator; its string answer, or Error on no answer in time.
  template <typename... Args>
  std::string ask(std::chrono::milliseconds timeout, Args... args) {
    caf::actor coordinator;
    {
      std::lock_guard<std::mutex> lock(remote_mutex);
      coordinator = remote;
    }
    caf::scoped_actor self{system};
    std::string answer;
    std::optional<std::string> error;
    self->request(coordinator, timeout, args...)
        .receive([&](const std::string& text) { answer = text; }, [&](caf::error& e) { error = system.render(e); });
    if (error) {
      throw Error::FailedPrecondition(
          concat("the coordinator at ", config.master_addr, ":", config.master_port, " did not answer: ", *error));
    }
    return answer;
  }

  // A coordinator at host:port, through a tunnel to its gate (comm/gate.h). Error::FailedPrecondition
  // when its gate refused this rank's token (no use trying again).
  caf::expected<caf::actor> reach(const std::string& host, uint16_t port) {
    auto tunnel = std::make_unique<Tunnel>(config.token, host, port);
    auto found = system.middleman().remote_actor("127.0.0.1", tunnel->local_port());
    if (found) {
      tunnels.push_back(std::move(tunnel));  // it carries the connection from now on
      return found;
    }
    const std::string refusal = tunnel->refusal();
    if (refusal.rfind("wrong job token", 0) == 0) {
      throw Error::FailedPrecondition(
          concat("the coordinator at ", host, ":", port, " refused rank ", config.rank, ": ", refusal));
    }
    return found;
  }

  void connect_to_coordinator() {
    const auto deadline = Clock::now() + millis(config.join_timeout_seconds);
    std::string last_error;
    while (Clock::now() < deadline) {
      auto found = reach(config.master_addr, config.master_port);
      if (found) {
        remote = *found;
        return;
      }
      last_error = system.render(found.error());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw Error::FailedPrecondition(concat("rank ", config.rank, " could not reach the coordinator at ",
                                           config.master_addr, ":", config.master_port, " within ",
                                           config.join_timeout_seconds, " s: ", last_error));
  }

  // A transport whose broken peers fail the job, or with recovery are reported to the coordinator.
  std::unique_ptr<Transport> new_transport() {
    auto made = std::make_unique<Transport>(net_device);
    const int its_epoch = newest.load();
    made->on_failure([this, its_epoch](int peer, const std::string& reason) {
      if (finishing) return;  // peers close their endpoints as the job ends
      if (!config.recovery) fail(concat("the data plane to rank ", peer, " broke: ", reason));
      if (its_epoch < newest.load() || peer < 0) return;  // that epoch is over already
      caf::anon_send(remote, report_atom::value, config.rank, its_epoch, peer, reason);
    });
    return made;
  }

  // The coordinator's process or connection is gone. Without recovery the job fails; with it,
  // the epoch ends and reform() elects the next coordinator.
  void lose_coordinator(const std::string& why) {
    if (finishing) return;  // the coordinator goes away as the job ends
    if ((coordinator && coordinator_member == config.rank) || (standby && standby->active())) {
      // It runs in this process, which is alive: a slow answer (a loaded machine) is no loss.
      LOG(WARNING) << "member " << config.rank << ": the coordinator in this process was slow to answer: " << why;
      return;
    }
    if (!config.recovery) fail(concat("lost the coordinator (rank 0): ", why));
    if (coordinator_lost.exchange(true)) return;
    const std::string reason = concat("lost the coordinator (member ", coordinator_member, "): ", why);
    LOG(WARNING) << "rank " << rank.load() << " (member " << config.rank << "): " << reason;
    tell_epoch_end(reason);
  }

  // The first member of the last roster, past the lost coordinator's, that answers: this rank's
  // own standby takes over when it is that member.
  void elect(int next_epoch) {
    std::vector<RosterMember> candidates;
    std::vector<TakeoverMember> remaining;
    for (const RosterMember& member : roster) {
      if (member.member == coordinator_member) continue;
      candidates.push_back(member);
      remaining.push_back({member.member, member.node, member.control});
    }
    const auto deadline = Clock::now() + millis(config.join_timeout_seconds);
    for (const RosterMember& candidate : candidates) {
      if (candidate.member == config.rank) {
        standby->take_over(next_epoch, remaining, next_member);
        // Where replacements look for the job (a rank restarted on this machine, say).
        standby->listen_also(config.master_port);
      }
      const size_t colon = candidate.control.rfind(':');
      if (colon == std::string::npos) continue;
      const std::string host = candidate.control.substr(0, colon);
      const auto port = static_cast<uint16_t>(std::atoi(candidate.control.c_str() + colon + 1));
      // A candidate that is alive answers at once; a dead one refuses at once, and one whose node
      // is cut off answers nothing: it is passed over after a heartbeat interval's wait or two.
      const auto patience = std::max(std::chrono::milliseconds(200), 2 * millis(config.heartbeat_interval_seconds));
      for (int attempt = 0; attempt < 3 && Clock::now() < deadline; ++attempt) {
        if (candidate.member != config.rank && !opens_within(host, port, patience)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        caf::expected<caf::actor> found = caf::make_error(caf::sec::cannot_connect_to_node);
        try {
          found = reach(host, port);
        } catch (const Error& error) {  // a gate that refuses this job's token is another job's
          LOG(WARNING) << "member " << config.rank << ": " << error.what();
        }
        if (!found) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(remote_mutex);
          remote = *found;
        }
        caf::anon_send(presence, watch_atom::value, *found);
        coordinator_member = candidate.member;
        coordinator_lost = false;
        LOG(WARNING) << "member " << config.rank << ": member " << candidate.member << " is the coordinator now, at "
                     << candidate.control;
        return;
      }
    }
    fail("lost the coordinator, and no member of the last roster could take over");
  }

  void beat() {
    const auto interval = millis(config.heartbeat_interval_seconds);
    const auto deadline = millis(config.heartbeat_deadline_seconds);
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      lock.unlock();
      std::string answer;
      try {
        if (!coordinator_lost)
          answer = ask(deadline, heartbeat_atom::value, config.rank, steps_done.load(), steps_target.load());
      } catch (const Error& error) {
        lock.lock();
        if (stopping) return;
        lock.unlock();
        lose_coordinator(error.what());
      }
      if (answer.rfind("failed: ", 0) == 0) fail(answer.substr(8));
      if (answer.rfind("removed: ", 0) == 0) {
        std::fprintf(stderr, "tessel rank %d: removed from the job: %s\n", rank.load(), answer.substr(9).c_str());
        std::fflush(stderr);
        std::_Exit(4);  // the launcher counts it lost, not failed
      }
      if (answer.rfind("ok ", 0) == 0) heard_of(std::atoi(answer.c_str() + 3), "the coordinator began a new epoch");
      lock.lock();
      wake.wait_for(lock, interval, [&] { return stopping; });
    }
  }

  // Gives this epoch's transport address for epoch `target` (or a later one, when another member
  // is lost or joins meanwhile) and waits until every member has: then the roster is this rank's.
  void form(int target, std::string address) {
    const auto deadline = Clock::now() + millis(config.join_timeout_seconds);
    while (Clock::now() < deadline) {
      std::string answer;
      try {
        answer = ask(millis(config.join_timeout_seconds), reform_atom::value, config.rank, target, address, presence);
      } catch (const Error& error) {  // the coordinator went while the job re-formed
        lose_coordinator(error.what());
      }
      if (coordinator_lost) {
        elect(target);
        continue;
      }
      if (answer == "standby") {  // elected, but it has not heard yet that its predecessor is gone
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      if (answer.rfind("roster ", 0) == 0) {
        try {
          take_roster(answer);
        } catch (const Error& error) {
          // A member that already moved on to a later epoch (one more joined or was lost) closed
          // this epoch's worker: connecting to it fails. Form the next epoch, on a fresh transport;
          // the coordinator answers with the epoch it is at.
          LOG(WARNING) << "member " << config.rank << ": epoch " << target << "'s roster did not connect ("
                       << error.what() << "); forming the next";
          transport->close();
          retired.push_back(std::move(transport));
          transport = new_transport();
          const std::vector<uint8_t> bytes = transport->address();
          address.assign(bytes.begin(), bytes.end());
          target = std::max(newest.load(), target + 1);
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        LOG(INFO) << "member " << config.rank << " is rank " << rank.load() << " of " << world_size.load()
                  << " in epoch " << epoch.load();
        return;
      }
      if (answer.rfind("epoch ", 0) == 0) {  // another loss or join meanwhile: form the epoch after
        target = std::atoi(answer.c_str() + 6);
        heard_of(target, "the membership changed again while the job re-formed");
        continue;
      }
      if (answer.rfind("finished: ", 0) == 0) {  // a joining member the job no longer needs
        std::fprintf(stderr, "tessel member %d: %s\n", config.rank, answer.substr(10).c_str());
        std::fflush(stderr);
        std::_Exit(0);
      }
      const bool removed = answer.rfind("removed: ", 0) == 0;
      throw Error::FailedPrecondition(
          concat(removed ? "" : "the job failed while it re-formed: ", answer.substr(answer.find(": ") + 2)));
    }
    throw Error::FailedPrecondition(
        concat("the job did not re-form within ", config.join_timeout_seconds, " s (epoch ", target, ")"));
  }

  // "roster EPOCH MEMBER@NODE,... HOST:PORT,... ADDRESSES NEXT": connects this epoch's transport to
  // the members in rank order.
  void take_roster(const std::string& answer) {
    std::istringstream words(answer.substr(7));
    int formed = -1;
    std::string members_text, controls_text, addresses_text;
    int next = 0;
    words >> formed >> members_text >> controls_text >> addresses_text >> next;
    const auto split = [](const std::string& text) {
      std::vector<std::string> parts;
      for (size_t at = 0; at <= text.size();) {
        const size_t comma = std::min(text.find(',', at), text.size());
        parts.push_back(text.substr(at, comma - at));
        at = comma + 1;
      }
      return parts;
    };
    const std::vector<std::string> members = split(members_text), controls = split(controls_text);
    std::vector<std::vector<uint8_t>> addresses;
    for (const std::string& text : decode_addresses(addresses_text)) addresses.emplace_back(text.begin(), text.end());
    if (formed < 0 || addresses.size() != members.size() || controls.size() != members.size())
      throw Error::FailedPrecondition(
          concat("epoch ", formed, "'s roster does not hold together: ", answer.substr(0, 80)));
    std::vector<RosterMember> next_roster;
    int mine = -1;
    for (size_t r = 0; r < members.size(); ++r) {
      const size_t at = members[r].find('@');
      next_roster.push_back({std::atoi(members[r].c_str()),
                             at == std::string::npos ? 0 : std::atoi(members[r].c_str() + at + 1),
                             controls[r] == "-" ? std::string() : controls[r]});
      if (next_roster.back().member == config.rank) mine = static_cast<int>(r);
    }
    if (mine < 0) throw Error::FailedPrecondition(concat("epoch ", formed, " formed without this rank"));
    roster = std::move(next_roster);
    next_member = next;
    rank = mine;
    world_size = static_cast<int>(members.size());
    epoch = formed;
    // The roster is the coordinator's word: an epoch heard of from a coordinator since lost is
    // over. One that begins after this, the coordinator announces again (its heartbeat answers too).
    newest = formed;
    transport->connect(addresses, rank);
  }
};

Job::Job(JobConfig config) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.config = std::move(config);
  const JobConfig& c = s.config;
  if (!c.join && (c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size)) {
    throw Error::InvalidArgument(concat("rank ", c.rank, " is outside a job of ", c.world_size, " ranks"));
  }
  if (c.token.empty()) throw Error::InvalidArgument("a job needs a token");
  if (c.join && !c.recovery) {
    throw Error::InvalidArgument(
        "a rank joins a running job only with recovery on (TESSEL_RECOVERY=1; tessel-launch --join sets it)");
  }
  s.rank = c.rank;
  s.world_size = c.world_size;
  // The coordinators listen where the ranks reach them: on loopback when the job's address is
  // loopback (every rank is on this machine), else on the interface that leads to it (on the
  // master's host, the master address itself). A host name that resolves to loopback here (Debian
  // maps its own name to 127.0.1.1) may name this host's outside address elsewhere: then every
  // interface, as before. UCX's tcp transport listens on the same device.
  const std::string towards = local_address_towards(c.master_addr, c.master_port);
  const bool loopback_job = c.master_addr == "127.0.0.1" || c.master_addr == "localhost";
  const std::string here = loopback_job ? "127.0.0.1" : towards.rfind("127.", 0) == 0 ? "0.0.0.0" : towards;
  s.net_device = here == "0.0.0.0" ? "" : device_with_address(here);
  s.transport = s.new_transport();
  if (c.rank == 0 && !c.join) {
    s.coordinator = std::make_unique<Coordinator>(
        c.token, c.world_size, here, c.master_port, c.heartbeat_deadline_seconds, c.join_timeout_seconds,
        CoordinatorOptions{.recovery = c.recovery, .min_nodes = c.min_nodes, .max_nodes = c.max_nodes});
  }
  if (c.recovery && !s.coordinator) {  // a standby, should the coordinator be lost
    s.standby = std::make_unique<Coordinator>(
        c.token, c.world_size, here, 0, c.heartbeat_deadline_seconds, c.join_timeout_seconds,
        CoordinatorOptions{.recovery = true, .min_nodes = c.min_nodes, .max_nodes = c.max_nodes, .standby = true});
    s.control = concat(towards, ":", s.standby->port());
  } else if (c.recovery) {
    s.control = concat(towards, ":", s.coordinator->port());
  }
  s.connect_to_coordinator();
  // The presence actor also watches the coordinator: a closed control connection (rank 0's
  // process killed, or its node gone) fails this rank at once, not at the heartbeat deadline.
  // With recovery, it hears from the coordinator when an epoch ends.
  s.presence = s.system.spawn([&s](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(s.remote);
    self->set_down_handler([&s](caf::down_msg& down) {
      {
        std::lock_guard<std::mutex> lock(s.remote_mutex);
        if (down.source != s.remote.address()) return;  // a coordinator lost before
      }
      s.lose_coordinator(concat("its control connection closed (", s.system.render(down.reason), ")"));
    });
    return {[](int) {}, [&s](epoch_atom, int epoch, const std::string& why) { s.heard_of(epoch, why); },
            [self](watch_atom, const caf::actor& next) { self->monitor(next); }};
  });
  const std::vector<uint8_t> bytes = s.transport->address();
  const std::string address(bytes.begin(), bytes.end());
  const std::string joined = s.ask(millis(c.join_timeout_seconds), join_atom::value, c.token, c.join ? -1 : c.rank,
                                   c.join ? 0 : c.world_size, address, s.presence, c.node, s.control);
  if (c.join && joined.rfind("joined ", 0) == 0) {  // a new member of the running job: form the next epoch
    std::istringstream words(joined.substr(7));
    int target = 0;
    words >> s.config.rank >> target;
    s.newest = target;
    s.heartbeats = std::thread([&s] { s.beat(); });  // from now on a member: silence counts
    try {
      s.form(target, address);
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(s.mutex);
        s.stopping = true;
      }
      s.wake.notify_all();
      s.heartbeats.join();
      throw;
    }
    LOG(INFO) << "member " << c.rank << " joined the running job at " << c.master_addr << ":" << c.master_port
              << " as rank " << s.rank.load() << " of " << s.world_size.load() << " in epoch " << s.epoch.load();
    return;
  }
  if (joined != "accepted") {
    throw Error::FailedPrecondition(concat("the coordinator at ", c.master_addr, ":", c.master_port, " refused ",
                                           c.join ? std::string("a new rank") : concat("rank ", c.rank), ": ",
                                           joined.rfind("refused: ", 0) == 0 ? joined.substr(9) : joined));
  }
  std::string roster;
  try {
    // A little longer than the coordinator's own join timeout, whose answer names the missing ranks.
    roster = s.ask(millis(c.join_timeout_seconds + 2 * c.heartbeat_deadline_seconds + 1), roster_atom::value, c.rank);
  } catch (const Error& error) {
    throw Error::FailedPrecondition(concat("not every one of the ", c.world_size, " ranks joined within ",
                                           c.join_timeout_seconds, " s: ", error.what()));
  }
  if (roster.rfind("roster ", 0) != 0) {
    throw Error::FailedPrecondition(concat("the job failed while its ranks gathered: ", roster));
  }
  s.take_roster(roster);
  s.heartbeats = std::thread([&s] { s.beat(); });
  LOG(INFO) << "rank " << c.rank << " of " << c.world_size << " joined the job at " << c.master_addr << ":"
            << c.master_port << (c.recovery ? " (recovery on)" : "");
}

Job::~Job() {
  try {
    finish();
  } catch (const Error& error) {
    LOG(ERROR) << "rank " << state_->rank.load() << ": " << error.what();
  }
}

int Job::rank() const { return state_->rank.load(); }
int Job::world_size() const { return state_->world_size.load(); }
Transport& Job::transport() { return *state_->transport; }
int Job::node() const { return state_->config.node; }
int Job::member() const { return state_->config.rank; }
bool Job::joined_running() const { return state_->config.join; }
bool Job::recovery() const { return state_->config.recovery; }
double Job::heartbeat_deadline_seconds() const { return state_->config.heartbeat_deadline_seconds; }
int Job::epoch() const { return state_->epoch.load(); }
bool Job::epoch_ended() const {
  return state_->coordinator_lost.load() || state_->newest.load() > state_->epoch.load();
}

void Job::progress(int64_t done, int64_t target) {
  state_->steps_done = done;
  state_->steps_target = target;
}

void Job::on_epoch_end(std::function<void(const std::string& why)> handler) {
  std::lock_guard<std::mutex> lock(state_->handler_mutex);
  state_->on_epoch_end = std::move(handler);
}

void Job::reform() {
  State& s = *state_;
  if (!s.config.recovery) throw Error::FailedPrecondition("reform(): this job runs without recovery");
  s.transport->close();
  s.retired.push_back(std::move(s.transport));
  s.transport = s.new_transport();
  const std::vector<uint8_t> bytes = s.transport->address();
  const std::string address(bytes.begin(), bytes.end());
  int target = std::max(s.newest.load(), s.epoch.load() + 1);
  if (s.coordinator_lost) s.elect(target);
  s.form(target, address);
}

void Job::finish() {
  State& s = *state_;
  if (s.finished) return;
  s.finished = true;
  s.finishing = true;
  std::string answer;
  std::optional<Error> unanswered;
  try {
    answer = s.ask(millis(s.config.join_timeout_seconds), leave_atom::value, s.config.rank, s.steps_done.load());
  } catch (const Error& error) {
    unanswered = error;
  }
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stopping = true;
  }
  s.wake.notify_all();
  if (s.heartbeats.joinable()) s.heartbeats.join();
  if (unanswered) throw *unanswered;
  if (answer != "done") s.fail(answer.rfind("failed: ", 0) == 0 ? answer.substr(8) : answer);
  // Rank 0's coordinator answers the other ranks' leave; give those answers time to go out.
  if (s.coordinator || (s.standby && s.standby->active())) std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

}  // namespace tessel::comm
