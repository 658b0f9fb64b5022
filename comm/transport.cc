#include "comm/transport.h"

#include <glog/logging.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"

namespace tessel::comm {
namespace {

void check(ucs_status_t status, const char* what) {
  if (status != UCS_OK) throw Error::FailedPrecondition(concat(what, " failed: ", ucs_status_string(status)));
}

// What two processes must share for UCX's shared-memory transports to reach each other: one
// kernel (its boot id), one mount namespace (/dev/shm) and one network namespace (so two
// "nodes" in separate namespaces of one machine stay two nodes, as tcp sees them).
std::string machine_identity() {
  std::string identity;
  char buffer[128] = {};
  if (FILE* boot = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    if (std::fgets(buffer, sizeof buffer, boot) != nullptr) identity = buffer;
    std::fclose(boot);
  }
  for (const char* ns : {"/proc/self/ns/mnt", "/proc/self/ns/net"}) {
    const ssize_t n = readlink(ns, buffer, sizeof buffer - 1);
    identity += n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string("?");
  }
  return identity;
}

// A rank's published address: a byte with the identity's length, the identity, then UCX's
// worker address.
std::vector<uint8_t> published_address(const std::string& identity, const uint8_t* ucx, size_t length) {
  std::vector<uint8_t> address{static_cast<uint8_t>(identity.size())};
  address.insert(address.end(), identity.begin(), identity.end());
  address.insert(address.end(), ucx, ucx + length);
  return address;
}

}  // namespace

struct Transport::State {
  // One transfer in flight; owned by the progress thread from the call until its callback.
  struct Pending {
    struct State* state = nullptr;
    Done done;
    uint64_t id = 0;  // receives: the id cancel() names
    int peer = -1;    // sends: the rank it goes to
    uint64_t group = 0;
    uint64_t value = 0;  // send_value's bytes
    void* request = nullptr;
  };

  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  std::string identity;                       // machine_identity()
  std::vector<uint8_t> address;               // published_address()
  std::vector<ucp_ep_h> endpoints;            // per rank; nullptr for this rank
  std::vector<bool> same_machine;             // per rank
  std::vector<std::pair<State*, int>> peers;  // the error handlers' arguments
  int self = -1;
  int epoll = -1, wake = -1;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::mutex mutex;
  bool closed = false;                              // under `mutex`: close() began
  std::deque<std::function<void()>> commands;       // run on the progress thread
  std::unordered_map<uint64_t, Pending*> receives;  // progress thread only
  std::unordered_set<Pending*> sends;               // progress thread only: sends in flight
  std::atomic<uint64_t> next_id{1};
  std::mutex failure_mutex;
  std::function<void(int, const std::string&)> failure;
  std::atomic<uint64_t> sent{0}, received{0};

  // Commands posted once the transport closed are dropped (false).
  bool post(std::function<void()> command) {
    std::lock_guard<std::mutex> lock(mutex);
    if (closed) return false;
    commands.push_back(std::move(command));
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t written = ::write(wake, &one, sizeof one);
    return true;
  }

  // Runs `command` on the progress thread and waits for it (errors come back here). Once the
  // transport closed: Result{}, and `command` does not run.
  template <typename Result>
  Result call(std::function<Result()> command) {
    auto task = std::make_shared<std::packaged_task<Result()>>(std::move(command));
    std::future<Result> result = task->get_future();
    if (!post([task] { (*task)(); })) return Result{};
    task.reset();  // the command holds it: dropped unrun, it breaks the promise
    try {
      return result.get();
    } catch (const std::future_error&) {  // dropped: the transport closed
      return Result{};
    }
  }

  void fail(int peer, const std::string& reason) {
    std::function<void(int, const std::string&)> handler;
    {
      std::lock_guard<std::mutex> lock(failure_mutex);
      handler = failure;
    }
    if (handler) {
      handler(peer, reason);
    } else {
      LOG(ERROR) << "transport: rank " << peer << ": " << reason;
    }
  }

  bool run_commands() {
    std::deque<std::function<void()>> batch;
    {
      std::lock_guard<std::mutex> lock(mutex);
      batch.swap(commands);
    }
    for (auto& command : batch) command();
    return !batch.empty();
  }

  void loop() {
    while (!stopping.load()) {
      bool busy = run_commands();
      while (ucp_worker_progress(worker) != 0) busy = true;
      if (busy) continue;
      const ucs_status_t armed = ucp_worker_arm(worker);
      if (armed == UCS_ERR_BUSY) continue;
      epoll_event events[2];
      const int ready = epoll_wait(epoll, events, 2, 100);
      for (int i = 0; i < ready; ++i) {
        if (events[i].data.fd != wake) continue;
        uint64_t count = 0;
        [[maybe_unused]] const ssize_t read = ::read(wake, &count, sizeof count);
      }
    }
  }

  static void on_send(void* request, ucs_status_t status, void* user_data) {
    auto* pending = static_cast<Pending*>(user_data);
    pending->state->sends.erase(pending);
    finish(request, status, pending, nullptr);
  }
  static void on_receive(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data) {
    auto* pending = static_cast<Pending*>(user_data);
    pending->state->receives.erase(pending->id);
    finish(request, status, pending, info);
  }
  static void finish(void* request, ucs_status_t status, Pending* pending, const ucp_tag_recv_info_t* info) {
    State* state = pending->state;
    if (status == UCS_ERR_CANCELED) {
      ucp_request_free(request);
      delete pending;
      return;
    }
    Completion completion;
    completion.ok = status == UCS_OK;
    if (!completion.ok) {
      completion.error = ucs_status_string(status);
    } else if (info != nullptr) {
      completion.tag = info->sender_tag;
      completion.bytes = info->length;
      state->received += info->length;
    }
    ucp_request_free(request);  // `info` lies in the request
    if (pending->done) pending->done(completion);
    if (!completion.ok) {
      state->fail(pending->peer,
                  concat(info != nullptr || pending->peer < 0 ? "a receive" : "a send", " failed: ", completion.error));
    }
    delete pending;
  }
  static void on_endpoint_error(void* argument, ucp_ep_h, ucs_status_t status) {
    auto* peer = static_cast<std::pair<State*, int>*>(argument);
    peer->first->fail(peer->second, concat("its UCX endpoint failed: ", ucs_status_string(status)));
  }

  // Cancels the posted receives that `which` picks and progresses until their callbacks ran
  // (bounded): their `done` may hold things that must go before the caller's next step.
  template <typename Which>
  void cancel_receives(Which which) {
    std::vector<void*> requests;
    for (auto& [id, pending] : receives) {
      if (which(*pending)) requests.push_back(pending->request);
    }
    for (void* request : requests) ucp_request_cancel(worker, request);
    const auto left = [&] {
      return std::any_of(receives.begin(), receives.end(), [&](const auto& r) { return which(*r.second); });
    };
    for (int spin = 0; spin < 100000 && left(); ++spin) ucp_worker_progress(worker);
  }

  void start_send(int peer, uint64_t tag, const void* data, size_t bytes, Pending* pending) {
    if (peer < 0 || peer >= static_cast<int>(endpoints.size()) || endpoints[peer] == nullptr) {
      Completion failed{.ok = false, .error = concat("no endpoint to rank ", peer)};
      if (pending->done) pending->done(failed);
      delete pending;
      return;
    }
    ucp_request_param_t params{};
    params.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    params.cb.send = &State::on_send;
    params.user_data = pending;
    sends.insert(pending);
    void* request = ucp_tag_send_nbx(endpoints[peer], data, bytes, tag, &params);
    sent += bytes;
    if (request == nullptr) {  // done already
      sends.erase(pending);
      if (pending->done) pending->done(Completion{});
      delete pending;
    } else if (UCS_PTR_IS_ERR(request)) {
      sends.erase(pending);
      Completion failed{.ok = false, .error = ucs_status_string(UCS_PTR_STATUS(request))};
      if (pending->done) pending->done(failed);
      fail(peer, concat("a send failed: ", failed.error));
      delete pending;
    }
  }
};

Transport::Transport(const std::string& net_device) : state_(std::make_unique<State>()) {
  State& s = *state_;
  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
  if (!net_device.empty() && std::getenv("UCX_NET_DEVICES") == nullptr) {
    const ucs_status_t named = ucp_config_modify(config, "NET_DEVICES", net_device.c_str());
    if (named != UCS_OK) ucp_config_release(config);
    check(named, concat("ucp_config_modify(NET_DEVICES=", net_device, ")").c_str());
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
  const ucs_status_t status = ucp_init(&params, config, &s.context);
  ucp_config_release(config);
  check(status, "ucp_init");
  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  check(ucp_worker_create(s.context, &worker_params, &s.worker), "ucp_worker_create");
  ucp_address_t* address = nullptr;
  size_t length = 0;
  check(ucp_worker_get_address(s.worker, &address, &length), "ucp_worker_get_address");
  s.identity = machine_identity().substr(0, 255);
  s.address = published_address(s.identity, reinterpret_cast<const uint8_t*>(address), length);
  ucp_worker_release_address(s.worker, address);
  int worker_fd = -1;
  check(ucp_worker_get_efd(s.worker, &worker_fd), "ucp_worker_get_efd");
  s.wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  s.epoll = epoll_create1(EPOLL_CLOEXEC);
  if (s.wake < 0 || s.epoll < 0) throw Error::FailedPrecondition("transport: cannot create its eventfd or epoll");
  for (int fd : {worker_fd, s.wake}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    epoll_ctl(s.epoll, EPOLL_CTL_ADD, fd, &event);
  }
  s.thread = std::thread([&s] { s.loop(); });
}

Transport::~Transport() { close(); }

void Transport::close() {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.closed || s.stopping) return;
  }
  s.call<int>([&s] {
    s.cancel_receives([](const State::Pending&) { return true; });
    return 0;
  });
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.closed = true;
    s.stopping = true;
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t written = ::write(s.wake, &one, sizeof one);
  }
  s.thread.join();
  s.commands.clear();  // posted before the close but not run: their waiters get Result{}
  // The endpoints close here, on this thread, now that the progress thread is gone. A peer that
  // died may never answer: the wait is bounded.
  std::vector<void*> closing;
  for (ucp_ep_h endpoint : s.endpoints) {
    if (endpoint == nullptr) continue;
    ucp_request_param_t params{};
    params.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    params.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* request = ucp_ep_close_nbx(endpoint, &params);
    if (UCS_PTR_IS_PTR(request)) closing.push_back(request);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (void* request : closing) {
    while (ucp_request_check_status(request) == UCS_INPROGRESS && std::chrono::steady_clock::now() < deadline) {
      ucp_worker_progress(s.worker);
    }
    if (ucp_request_check_status(request) != UCS_INPROGRESS) ucp_request_free(request);
  }
  s.endpoints.clear();
  ucp_worker_destroy(s.worker);
  ucp_cleanup(s.context);
  ::close(s.epoll);
  ::close(s.wake);
}

bool Transport::same_machine(int peer) const {
  const State& s = *state_;
  return peer >= 0 && peer < static_cast<int>(s.same_machine.size()) && s.same_machine[peer];
}

std::vector<uint8_t> Transport::address() const { return state_->address; }

void Transport::connect(const std::vector<std::vector<uint8_t>>& addresses, int self) {
  State& s = *state_;
  if (self < 0 || self >= static_cast<int>(addresses.size())) {
    throw Error::InvalidArgument(concat("transport: rank ", self, " is outside a job of ", addresses.size()));
  }
  s.peers.clear();
  s.same_machine.assign(addresses.size(), false);
  for (size_t r = 0; r < addresses.size(); ++r) {
    s.peers.emplace_back(&s, static_cast<int>(r));
    const std::vector<uint8_t>& a = addresses[r];
    if (static_cast<int>(r) != self && (a.empty() || a.size() <= size_t{1} + a[0])) {
      throw Error::InvalidArgument(concat("transport: the address of rank ", r, " has ", a.size(),
                                          " bytes, expected one made by Transport::address()"));
    }
    if (!a.empty()) s.same_machine[r] = std::string(a.begin() + 1, a.begin() + 1 + a[0]) == s.identity;
  }
  s.call<int>([&] {
    s.self = self;
    s.endpoints.assign(addresses.size(), nullptr);
    for (size_t r = 0; r < addresses.size(); ++r) {
      if (static_cast<int>(r) == self) continue;
      ucp_ep_params_t params{};
      params.field_mask =
          UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
      params.address = reinterpret_cast<const ucp_address_t*>(addresses[r].data() + 1 + addresses[r][0]);
      // UCX 1.13's shared-memory transports cannot report a failed peer, and with peer error
      // handling on, UCX leaves them out. Within one machine the job takes shared memory, and
      // the control plane notices a dead peer instead (comm/job.h: its connection to the
      // coordinator closes, or its heartbeats stop).
      params.err_mode = s.same_machine[r] ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER;
      params.err_handler.cb = &State::on_endpoint_error;
      params.err_handler.arg = &s.peers[r];
      check(ucp_ep_create(s.worker, &params, &s.endpoints[r]), concat("ucp_ep_create to rank ", r).c_str());
    }
    return 0;
  });
}

void Transport::send(int peer, uint64_t tag, const void* data, size_t bytes, Done done, uint64_t group) {
  State& s = *state_;
  auto* pending = new State::Pending{.state = &s, .done = std::move(done), .peer = peer, .group = group};
  s.post([&s, peer, tag, data, bytes, pending] { s.start_send(peer, tag, data, bytes, pending); });
}

void Transport::send_value(int peer, uint64_t tag, uint64_t value, Done done) {
  State& s = *state_;
  auto* pending = new State::Pending{.state = &s, .done = std::move(done), .peer = peer, .value = value};
  s.post([&s, peer, tag, pending] { s.start_send(peer, tag, &pending->value, sizeof pending->value, pending); });
}

uint64_t Transport::receive(uint64_t tag, uint64_t mask, void* data, size_t bytes, Done done, uint64_t group) {
  State& s = *state_;
  auto* pending = new State::Pending{.state = &s, .done = std::move(done), .id = s.next_id++, .group = group};
  const uint64_t id = pending->id;
  s.post([&s, tag, mask, data, bytes, pending] {
    ucp_request_param_t params{};
    // Always through the callback, which gets the sender's tag even for a message that was
    // already there (UCX 1.13 left recv_info unset in that case now and then).
    params.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    params.cb.recv = &State::on_receive;
    params.user_data = pending;
    const uint64_t id = pending->id;
    s.receives[id] = pending;  // before the call: its callback may run inside it, and erases it
    void* request = ucp_tag_recv_nbx(s.worker, data, bytes, tag, mask, &params);
    if (UCS_PTR_IS_ERR(request)) {
      Completion failed{.ok = false, .error = ucs_status_string(UCS_PTR_STATUS(request))};
      if (pending->done) pending->done(failed);
      s.fail(-1, concat("posting a receive failed: ", failed.error));
      s.receives.erase(id);
      delete pending;
      return;
    }
    auto it = s.receives.find(id);
    if (it != s.receives.end()) it->second->request = request;
  });
  return id;
}

void Transport::cancel(uint64_t receive_id) {
  State& s = *state_;
  s.post([&s, receive_id] {
    auto it = s.receives.find(receive_id);
    if (it != s.receives.end()) ucp_request_cancel(s.worker, it->second->request);
  });
}

void Transport::forget_group(uint64_t group) {
  State& s = *state_;
  s.call<int>([&s, group] {
    s.cancel_receives([group](const State::Pending& pending) { return pending.group == group; });
    for (State::Pending* pending : s.sends) {
      if (pending->group == group) pending->done = nullptr;
    }
    return 0;
  });
}

uint64_t Transport::new_group() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

void Transport::on_failure(std::function<void(int, const std::string&)> handler) {
  std::lock_guard<std::mutex> lock(state_->failure_mutex);
  state_->failure = std::move(handler);
}

std::string Transport::describe() const {
  State& s = *state_;
  return s.call<std::string>([&s] {
    char* text = nullptr;
    size_t size = 0;
    FILE* stream = open_memstream(&text, &size);
    for (size_t r = 0; r < s.endpoints.size(); ++r) {
      if (s.endpoints[r] == nullptr) continue;
      std::fprintf(stream, "# endpoint to rank %zu\n", r);
      ucp_ep_print_info(s.endpoints[r], stream);
    }
    std::fclose(stream);
    std::string info(text, size);
    std::free(text);
    return info;
  });
}

uint64_t Transport::bytes_sent() const { return state_->sent.load(); }
uint64_t Transport::bytes_received() const { return state_->received.load(); }

}  // namespace tessel::comm
