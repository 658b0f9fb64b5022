#include "comm/job.h"

#include <glog/logging.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "comm/control_messages.h"
#include "comm/coordinator.h"
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
  if (config.token.empty()) throw Error::InvalidArgument("TESSEL_JOB_TOKEN is not set: a job needs its token");
  return config;
}

struct Job::State {
  JobConfig config;
  std::unique_ptr<Coordinator> coordinator;  // rank 0
  caf::actor_system_config caf_config;
  caf::actor_system system{with_middleman(caf_config)};
  caf::actor remote;    // the coordinator
  caf::actor presence;  // monitored by the coordinator: it goes down with this process
  std::unique_ptr<Transport> transport;
  std::thread heartbeats;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::atomic<bool> finishing{false};
  bool finished = false;

  ~State() {
    if (presence) caf::anon_send_exit(presence, caf::exit_reason::user_shutdown);  // else `system` waits for it
  }

  [[noreturn]] void fail(const std::string& reason) {
    std::fprintf(stderr, "tessel rank %d: the job failed: %s\n", config.rank, reason.c_str());
    std::fflush(stderr);
    std::_Exit(3);
  }

  // A request to the coordinator; its string answer, or Error on no answer in time.
  template <typename... Args>
  std::string ask(std::chrono::milliseconds timeout, Args... args) {
    caf::scoped_actor self{system};
    std::string answer;
    std::optional<std::string> error;
    self->request(remote, timeout, args...)
        .receive([&](const std::string& text) { answer = text; }, [&](caf::error& e) { error = system.render(e); });
    if (error) {
      throw Error::FailedPrecondition(
          concat("the coordinator at ", config.master_addr, ":", config.master_port, " did not answer: ", *error));
    }
    return answer;
  }

  void connect_to_coordinator() {
    const auto deadline = Clock::now() + millis(config.join_timeout_seconds);
    std::string last_error;
    while (Clock::now() < deadline) {
      auto found = system.middleman().remote_actor(config.master_addr, config.master_port);
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

  void beat() {
    const auto interval = millis(config.heartbeat_interval_seconds);
    const auto deadline = millis(config.heartbeat_deadline_seconds);
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      lock.unlock();
      std::string answer;
      try {
        answer = ask(deadline, heartbeat_atom::value, config.rank);
      } catch (const Error& error) {
        lock.lock();
        if (stopping) return;
        fail(concat("lost the coordinator (rank 0): ", error.what()));
      }
      if (answer.rfind("failed: ", 0) == 0) fail(answer.substr(8));
      lock.lock();
      wake.wait_for(lock, interval, [&] { return stopping; });
    }
  }
};

Job::Job(JobConfig config) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.config = std::move(config);
  const JobConfig& c = s.config;
  if (c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size) {
    throw Error::InvalidArgument(concat("rank ", c.rank, " is outside a job of ", c.world_size, " ranks"));
  }
  if (c.token.empty()) throw Error::InvalidArgument("a job needs a token");
  s.transport = std::make_unique<Transport>();
  if (c.rank == 0) {
    s.coordinator = std::make_unique<Coordinator>(c.token, c.world_size, "0.0.0.0", c.master_port,
                                                  c.heartbeat_deadline_seconds, c.join_timeout_seconds);
  }
  s.connect_to_coordinator();
  // The presence actor also watches the coordinator: a closed control connection (rank 0's
  // process killed, or its node gone) fails this rank at once, not at the heartbeat deadline.
  s.presence = s.system.spawn([&s](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(s.remote);
    self->set_down_handler([&s](caf::down_msg& down) {
      if (s.finishing) return;  // the coordinator goes away as the job ends
      s.fail(
          concat("lost the coordinator (rank 0): its control connection closed (", s.system.render(down.reason), ")"));
    });
    return {[](int) {}};
  });
  const std::vector<uint8_t> address = s.transport->address();
  const std::string joined = s.ask(millis(c.join_timeout_seconds), join_atom::value, c.token, c.rank,
                                   std::string(address.begin(), address.end()), s.presence);
  if (joined != "accepted") {
    throw Error::FailedPrecondition(
        concat("the coordinator at ", c.master_addr, ":", c.master_port, " refused rank ", c.rank, ": ", joined));
  }
  std::string roster;
  try {
    // A little longer than the coordinator's own join timeout, whose answer names the missing ranks.
    roster = s.ask(millis(c.join_timeout_seconds + 2 * c.heartbeat_deadline_seconds + 1), roster_atom::value, c.rank);
  } catch (const Error& error) {
    throw Error::FailedPrecondition(concat("not every one of the ", c.world_size, " ranks joined within ",
                                           c.join_timeout_seconds, " s: ", error.what()));
  }
  if (roster.rfind("accepted ", 0) != 0) {
    throw Error::FailedPrecondition(concat("the job failed while its ranks gathered: ", roster));
  }
  std::vector<std::vector<uint8_t>> addresses;
  for (const std::string& text : decode_addresses(roster.substr(9))) addresses.emplace_back(text.begin(), text.end());
  s.transport->on_failure([&s](int peer, const std::string& reason) {
    if (s.finishing) return;  // peers close their endpoints as the job ends
    s.fail(concat("the data plane to rank ", peer, " broke: ", reason));
  });
  s.transport->connect(addresses, c.rank);
  s.heartbeats = std::thread([&s] { s.beat(); });
  LOG(INFO) << "rank " << c.rank << " of " << c.world_size << " joined the job at " << c.master_addr << ":"
            << c.master_port;
}

Job::~Job() {
  try {
    finish();
  } catch (const Error& error) {
    LOG(ERROR) << "rank " << state_->config.rank << ": " << error.what();
  }
}

int Job::rank() const { return state_->config.rank; }
int Job::world_size() const { return state_->config.world_size; }
Transport& Job::transport() { return *state_->transport; }

void Job::finish() {
  State& s = *state_;
  if (s.finished) return;
  s.finished = true;
  s.finishing = true;
  std::string answer;
  std::optional<Error> unanswered;
  try {
    answer = s.ask(millis(s.config.join_timeout_seconds), leave_atom::value, s.config.rank);
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
  if (s.coordinator) std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

}  // namespace tessel::comm
