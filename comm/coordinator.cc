#include "comm/coordinator.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <map>
#include <mutex>
#include <set>

#include "comm/control_messages.h"
#include "comm/gate.h"
#include "core/error.h"

namespace tessel {
namespace comm {

std::string encode_addresses(const std::vector<std::string>& addresses) {
  static const char* digits = "0123456789abcdef";
  std::string text;
  for (size_t r = 0; r < addresses.size(); ++r) {
    if (r > 0) text += ',';
    for (unsigned char c : addresses[r]) text += {digits[c >> 4], digits[c & 15]};
  }
  return text;
}

std::vector<std::string> decode_addresses(const std::string& text) {
  std::vector<std::string> addresses(1);
  const auto value = [&](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error::DataLoss(concat("an address list holds '", c, "', expected hex digits and ','"));
  };
  for (size_t i = 0; i < text.size();) {
    if (text[i] == ',') {
      addresses.emplace_back();
      ++i;
      continue;
    }
    if (i + 1 >= text.size()) throw Error::DataLoss("an address list ends in half a byte");
    addresses.back() += static_cast<char>(value(text[i]) << 4 | value(text[i + 1]));
    i += 2;
  }
  return addresses;
}

}  // namespace comm

namespace {

using namespace comm;
using Clock = std::chrono::steady_clock;

struct Membership {
  std::mutex mutex;
  CoordinatorOptions options;
  std::map<int, std::string> members;  // member (its rank at the first epoch) -> UCX address
  std::map<int, int> nodes;            // member -> its node
  std::map<int, Clock::time_point> last_heard;
  std::set<int> left;
  std::map<caf::actor_addr, int> presences;  // each joined member's presence actor -> member
  std::map<int, caf::actor> presence_of;     // member -> its presence actor
  std::map<int, std::string> removed;        // members lost, and why
  std::map<int, std::string> controls;       // member -> "host:port" of its standby coordinator
  bool active = true;                        // false: a standby until take_over()
  int refused = 0;
  std::string failure;
  std::vector<caf::response_promise> rosters, leaves;
  Clock::time_point first_join{};  // the join timeout counts from here
  bool complete = false;           // every rank of the first epoch joined
  // Epochs (recovery): each loss starts the next one; its members give new UCX addresses.
  int epoch = 0;
  std::vector<int> roster;              // the members of the last epoch that formed, in rank order
  std::map<int, std::string> reformed;  // members that gave their address for `epoch`
  struct Reform {
    int member, epoch;  // who asked, for which epoch
    caf::response_promise answer;
  };
  std::vector<Reform> reforms;
  // Growing (recovery): a member that joined the running job gets the next name; until an epoch
  // formed with it, it is `joining`.
  int next_member = 0;
  std::set<int> joining;
  // Steps: each member's last (done, the step its run goes to), and where the members that left
  // stood. A member that runs past a step where another left waits for it forever.
  std::map<int, std::pair<int64_t, int64_t>> progress;
  std::map<int, int64_t> left_at;
};

// Why the job cannot end well: a member left after fewer steps than another one runs to. Empty
// when none did (or the steps are not known).
std::string uneven_steps(const Membership& m) {
  for (const auto& [gone, steps] : m.left_at) {
    if (steps < 0) continue;
    for (const auto& [member, progress] : m.progress) {
      if (m.left.count(member) || !m.members.count(member) || progress.second <= steps) continue;
      return concat("rank ", gone, " finished after ", steps, " steps, but rank ", member, " runs to step ",
                    progress.second, ": every rank must run the same steps, or the others wait for it forever");
    }
  }
  return "";
}

// "roster EPOCH MEMBER@NODE,... HOST:PORT,... ADDRESSES NEXT": an epoch's members in rank order,
// each one's node and standby coordinator, their UCX addresses, and the name the next member to
// join would get (comm/control_messages.h).
std::string roster_text(const Membership& m, const std::vector<std::pair<int, std::string>>& formed) {
  std::string members, controls;
  std::vector<std::string> addresses;
  for (const auto& [member, address] : formed) {
    members += concat(members.empty() ? "" : ",", member, "@", m.nodes.count(member) ? m.nodes.at(member) : 0);
    const auto control = m.controls.find(member);
    controls += concat(controls.empty() ? "" : ",",
                       control == m.controls.end() || control->second.empty() ? std::string("-") : control->second);
    addresses.push_back(address);
  }
  return concat("roster ", m.epoch, " ", members, " ", controls, " ", encode_addresses(addresses), " ", m.next_member);
}

caf::behavior coordinator_behavior(caf::event_based_actor* self, std::string token, int world_size,
                                   std::chrono::milliseconds deadline, std::chrono::milliseconds join_timeout,
                                   std::shared_ptr<Membership> m) {
  const auto interval = std::max(std::chrono::milliseconds(20), deadline / 5);
  self->delayed_send(self, interval, check_atom::value);
  // Answers every waiting roster, reform or leave once it can; called with the mutex held.
  const auto settle = [=] {
    if (!m->failure.empty()) {
      for (auto& promise : m->rosters) promise.deliver(std::string("failed: ") + m->failure);
      for (auto& promise : m->leaves) promise.deliver(std::string("failed: ") + m->failure);
      for (auto& reform : m->reforms) reform.answer.deliver(std::string("failed: ") + m->failure);
      m->rosters.clear();
      m->leaves.clear();
      m->reforms.clear();
      return;
    }
    if (m->complete && !m->rosters.empty()) {
      std::vector<std::pair<int, std::string>> formed(m->members.begin(), m->members.end());
      const std::string roster = roster_text(*m, formed);
      for (auto& promise : m->rosters) promise.deliver(roster);
      m->rosters.clear();
    }
    // A reform for an epoch that ended is told the current one; the current one forms once every
    // member gave its address.
    for (auto it = m->reforms.begin(); it != m->reforms.end();) {
      if (it->epoch < m->epoch) {
        it->answer.deliver(concat("epoch ", m->epoch));
        it = m->reforms.erase(it);
      } else {
        ++it;
      }
    }
    if (!m->reforms.empty() && m->reformed.size() == m->members.size()) {
      m->roster.clear();
      std::vector<std::pair<int, std::string>> formed(m->reformed.begin(), m->reformed.end());
      for (const auto& [member, address] : formed) {
        m->roster.push_back(member);
        m->members[member] = address;
      }
      const std::string roster = roster_text(*m, formed);
      for (auto& reform : m->reforms) reform.answer.deliver(roster);
      m->reforms.clear();
      m->joining.clear();
      LOG(INFO) << "coordinator: epoch " << m->epoch << " formed with " << m->roster.size() << " ranks";
    }
    bool everyone_left = m->complete;
    for (const auto& [member, address] : m->members) everyone_left &= m->left.count(member) > 0;
    if (everyone_left) {
      for (auto& promise : m->leaves) promise.deliver(std::string("done"));
      m->leaves.clear();
    }
  };
  // The next epoch begins (with the members there are now): every member re-forms into it.
  const auto begin_epoch = [=](const std::string& why) {
    ++m->epoch;
    m->reformed.clear();
    LOG(WARNING) << "coordinator: epoch " << m->epoch << " begins: " << why << "; " << m->members.size()
                 << " rank(s) now";
    for (const auto& [other, presence] : m->presence_of) {
      if (!m->joining.count(other)) self->send(presence, epoch_atom::value, m->epoch, why);
    }
    const auto now = Clock::now();
    for (auto& [other, heard] : m->last_heard) heard = now;  // re-forming is not silence
    settle();
  };
  // A member that joined the running job (join as rank -1) gets the next name and starts the next
  // epoch, which forms once it and every other member gave their addresses.
  const auto grow = [=](const std::string& address, const caf::actor& presence, int node,
                        const std::string& control) -> std::string {
    std::set<int> nodes{node};
    for (const auto& [other, its_node] : m->nodes) nodes.insert(its_node);
    std::string reason;
    if (!m->options.recovery)
      reason = "this job runs without recovery, so it takes no new ranks";
    else if (!m->complete)
      reason = "the job has not formed yet: a rank joins a running job only";
    else if (!m->failure.empty())
      reason = "the job failed: " + m->failure;
    else if (!m->left.empty())
      reason = "the job is finishing";
    else if (m->options.max_nodes > 0 && static_cast<int>(nodes.size()) > m->options.max_nodes)
      reason = concat("node ", node, " would be the job's node number ", nodes.size(), ", and it runs on at most ",
                      m->options.max_nodes, " (tessel-launch --nnodes MIN:MAX)");
    if (!reason.empty()) {
      ++m->refused;
      LOG(WARNING) << "coordinator: refused a new rank from node " << node << ": " << reason;
      return "refused: " + reason;
    }
    const int member = m->next_member++;
    m->members[member] = address;
    m->nodes[member] = node;
    m->controls[member] = control;
    m->joining.insert(member);
    m->last_heard[member] = Clock::now();
    if (presence) {
      m->presences[presence.address()] = member;
      m->presence_of[member] = presence;
      self->monitor(presence);
    }
    begin_epoch(concat("member ", member, " joined from node ", node));
    return concat("joined ", member, " ", m->epoch);
  };
  // A member is gone. Without recovery, or before the first roster formed, the job fails. With
  // recovery the next epoch starts among the others, as long as enough nodes remain.
  const auto lose = [=](int member, const std::string& why) {
    if (!m->failure.empty() || !m->members.count(member) || m->left.count(member)) return;
    if (!m->options.recovery || !m->complete) {
      m->failure = why;
      LOG(ERROR) << "coordinator: " << m->failure;
      settle();
      return;
    }
    m->members.erase(member);
    m->joining.erase(member);
    m->reformed.erase(member);
    m->nodes.erase(member);
    m->last_heard.erase(member);
    m->presence_of.erase(member);
    for (auto it = m->presences.begin(); it != m->presences.end(); ++it) {
      if (it->second == member) {
        m->presences.erase(it);
        break;
      }
    }
    m->removed[member] = why;
    if (!m->left.empty()) {  // the others are finishing: the steps are done
      LOG(WARNING) << "coordinator: " << why << " (as the job finished)";
      settle();
      return;
    }
    std::set<int> nodes;
    for (const auto& [other, node] : m->nodes) nodes.insert(node);
    if (m->members.empty() || static_cast<int>(nodes.size()) < m->options.min_nodes) {
      m->failure = concat(why, "; ", m->members.size(), " rank(s) on ", nodes.size(),
                          " node(s) remain, and the job needs ", m->options.min_nodes, " node(s)");
      LOG(ERROR) << "coordinator: " << m->failure;
      settle();
      return;
    }
    begin_epoch(why);
  };
  // A member's presence actor lives as long as its process: when it goes down before the member
  // left, its process (or its connection) ended. A killed rank is noticed at once; the heartbeat
  // deadline remains for ranks that are alive but stuck.
  self->set_down_handler([=](caf::down_msg& down) {
    std::lock_guard<std::mutex> lock(m->mutex);
    auto it = m->presences.find(down.source);
    if (it == m->presences.end()) return;
    const int member = it->second;
    lose(member, concat("rank ", member, "'s control connection closed before it finished (",
                        self->system().render(down.reason), "): its process ended or its node is unreachable"));
  });
  return {
      [=](join_atom, const std::string& presented, int rank, int ranks, const std::string& address,
          const caf::actor& presence, int node, const std::string& control) -> std::string {
        std::lock_guard<std::mutex> lock(m->mutex);
        std::string reason;
        if (!m->active)
          reason = "this is a standby coordinator";
        else if (presented.empty())
          reason = "no job token: pass the job's --token, or set TESSEL_JOB_TOKEN";
        else if (presented != token)
          reason =
              "wrong job token: every rank presents the token its job started with (--token or TESSEL_JOB_TOKEN; "
              "a launcher that starts every rank makes up its own)";
        else if (rank == -1)
          return grow(address, presence, node, control);
        else if (ranks > 0 && ranks != world_size)
          reason = concat("this job has ", world_size, " ranks, and the joining rank's has ", ranks,
                          ": another job with this token on this port?");
        else if (rank < 0 || rank >= world_size)
          reason = concat("rank ", rank, " is outside [0, ", world_size, ")");
        else if (m->members.count(rank) || m->removed.count(rank))
          reason = concat("rank ", rank, " has already joined");
        if (!reason.empty()) {
          ++m->refused;
          LOG(WARNING) << "coordinator: refused a join as "
                       << (rank == -1 ? std::string("a new rank") : concat("rank ", rank)) << ": " << reason;
          return "refused: " + reason;
        }
        m->members[rank] = address;
        m->nodes[rank] = node;
        m->controls[rank] = control;
        if (presence) {
          m->presences[presence.address()] = rank;
          m->presence_of[rank] = presence;
          self->monitor(presence);
        }
        const auto now = Clock::now();
        if (m->members.size() == 1) m->first_join = now;
        m->last_heard[rank] = now;
        // Ranks wait for the roster without heartbeats: their deadlines start when it is whole.
        if (static_cast<int>(m->members.size()) == world_size) {
          m->complete = true;
          m->next_member = world_size;
          for (const auto& [member, ignored] : m->members) m->roster.push_back(member);
          for (auto& [member, heard] : m->last_heard) heard = now;
        }
        LOG(INFO) << "coordinator: rank " << rank << " joined (" << m->members.size() << "/" << world_size << ")";
        return "accepted";
      },
      [=](roster_atom, int) -> caf::result<std::string> {
        std::lock_guard<std::mutex> lock(m->mutex);
        if (!m->active) return "standby";
        auto promise = self->make_response_promise<std::string>();
        m->rosters.push_back(promise);
        settle();
        return promise;
      },
      [=](heartbeat_atom, int member, int64_t done, int64_t target) -> std::string {
        std::lock_guard<std::mutex> lock(m->mutex);
        if (!m->active) return "standby";
        if (m->members.count(member) && target >= 0) {
          m->progress[member] = {done, target};
          if (m->failure.empty() && !m->left_at.empty()) {
            m->failure = uneven_steps(*m);
            if (!m->failure.empty()) {
              LOG(ERROR) << "coordinator: " << m->failure;
              settle();
            }
          }
        }
        if (!m->failure.empty()) return "failed: " + m->failure;
        if (auto removed = m->removed.find(member); removed != m->removed.end()) {
          return "removed: the job went on without this rank: " + removed->second;
        }
        if (m->members.count(member)) m->last_heard[member] = Clock::now();
        return concat("ok ", m->epoch);
      },
      [=](reform_atom, int member, int epoch, const std::string& address,
          const caf::actor& presence) -> caf::result<std::string> {
        std::lock_guard<std::mutex> lock(m->mutex);
        if (!m->active) return "standby";
        if (!m->failure.empty()) return "failed: " + m->failure;
        if (auto removed = m->removed.find(member); removed != m->removed.end()) {
          return "removed: the job went on without this rank: " + removed->second;
        }
        if (!m->members.count(member)) return concat("failed: rank ", member, " is not a member of this job");
        if (epoch != m->epoch) return concat("epoch ", m->epoch);
        if (presence && !m->presence_of.count(member)) {  // a coordinator that took over meets it here
          m->presences[presence.address()] = member;
          m->presence_of[member] = presence;
          self->monitor(presence);
        }
        m->reformed[member] = address;
        auto promise = self->make_response_promise<std::string>();
        m->reforms.push_back({member, epoch, promise});
        settle();
        return promise;
      },
      [=](report_atom, int member, int epoch, int peer, const std::string& why) {
        std::lock_guard<std::mutex> lock(m->mutex);
        if (!m->active) return;
        // The peer is a rank of `epoch`; a report about an epoch that ended is stale.
        if (epoch != m->epoch || peer < 0 || peer >= static_cast<int>(m->roster.size())) return;
        const int lost = m->roster[peer];
        if (lost == member) return;
        lose(lost, concat("rank ", member, " lost its data plane to rank ", lost, ": ", why));
      },
      [=](leave_atom, int rank, int64_t steps) -> caf::result<std::string> {
        std::lock_guard<std::mutex> lock(m->mutex);
        if (!m->active) return "standby";
        m->left.insert(rank);
        m->left_at[rank] = steps;
        if (m->failure.empty()) {
          m->failure = uneven_steps(*m);
          if (!m->failure.empty()) LOG(ERROR) << "coordinator: " << m->failure;
        }
        // The steps are done: a member still joining has nothing left to join.
        for (int member : m->joining) {
          for (auto it = m->reforms.begin(); it != m->reforms.end();) {
            if (it->member != member) {
              ++it;
              continue;
            }
            it->answer.deliver(concat("finished: the job finished before member ", member, " could join it"));
            it = m->reforms.erase(it);
          }
          m->members.erase(member);
          m->reformed.erase(member);
          m->last_heard.erase(member);
          m->presence_of.erase(member);
          m->nodes.erase(member);
          LOG(WARNING) << "coordinator: member " << member << " joined as the job finished; it is let go";
        }
        for (auto it = m->presences.begin(); it != m->presences.end();) {
          it = m->joining.count(it->second) ? m->presences.erase(it) : std::next(it);
        }
        m->joining.clear();
        auto promise = self->make_response_promise<std::string>();
        m->leaves.push_back(promise);
        settle();
        return promise;
      },
      [=](check_atom) {
        std::lock_guard<std::mutex> lock(m->mutex);
        const auto now = Clock::now();
        if (!m->active) {
          self->delayed_send(self, interval, check_atom::value);
          return;
        }
        if (!m->complete) {  // still gathering: only the join timeout counts
          if (m->failure.empty() && !m->members.empty() && now - m->first_join > join_timeout) {
            std::string missing;
            for (int r = 0; r < world_size; ++r) {
              if (!m->members.count(r)) missing += concat(missing.empty() ? "" : ", ", r);
            }
            m->failure = concat("rank(s) ", missing, " did not join within ",
                                std::chrono::duration<double>(join_timeout).count(), " s of the first join");
            LOG(ERROR) << "coordinator: " << m->failure;
          }
          settle();
          self->delayed_send(self, interval, check_atom::value);
          return;
        }
        std::vector<std::pair<int, double>> silent;
        for (const auto& [member, heard] : m->last_heard) {
          if (m->left.count(member)) continue;
          const double seconds = std::chrono::duration<double>(now - heard).count();
          if (seconds > std::chrono::duration<double>(deadline).count()) silent.emplace_back(member, seconds);
        }
        for (const auto& [member, seconds] : silent) {
          lose(member, concat("rank ", member, " sent no heartbeat for ", seconds, " s (the deadline is ",
                              std::chrono::duration<double>(deadline).count(), " s)"));
        }
        settle();
        self->delayed_send(self, interval, check_atom::value);
      },
  };
}

}  // namespace

struct Coordinator::State {
  caf::actor_system_config config;
  caf::actor_system system{with_middleman(config)};
  std::shared_ptr<Membership> membership = std::make_shared<Membership>();
  caf::actor actor;
  uint16_t port = 0;
  int world_size = 0;
  std::string host;  // the interface it listens on
  std::string token;
  uint16_t inner = 0;                        // CAF's own port, on loopback
  std::vector<std::unique_ptr<Gate>> gates;  // where ranks reach it
};

Coordinator::Coordinator(std::string token, int world_size, const std::string& host, uint16_t port,
                         double heartbeat_deadline_seconds, double join_timeout_seconds, CoordinatorOptions options)
    : state_(std::make_unique<State>()) {
  state_->membership->options = options;
  state_->membership->active = !options.standby;
  if (token.empty()) throw Error::InvalidArgument("the job token must not be empty");
  if (world_size < 1) throw Error::InvalidArgument(concat("world size must be at least 1, got ", world_size));
  if (!(heartbeat_deadline_seconds > 0)) {
    throw Error::InvalidArgument(concat("the heartbeat deadline must be positive, got ", heartbeat_deadline_seconds));
  }
  state_->world_size = world_size;
  state_->host = host;
  state_->token = token;
  if (!(join_timeout_seconds > 0)) {
    throw Error::InvalidArgument(concat("the join timeout must be positive, got ", join_timeout_seconds));
  }
  const auto deadline = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_deadline_seconds * 1000));
  const auto join_timeout = std::chrono::milliseconds(static_cast<int64_t>(join_timeout_seconds * 1000));
  state_->actor = state_->system.spawn(coordinator_behavior, std::move(token), world_size, deadline, join_timeout,
                                       state_->membership);
  // CAF listens on loopback only, behind the gate (comm/gate.h): nothing reaches its parser
  // before its peer proved the token.
  auto published = state_->system.middleman().publish(state_->actor, 0, "127.0.0.1", /*reuse_addr=*/true);
  if (!published) {
    caf::anon_send_exit(state_->actor, caf::exit_reason::user_shutdown);
    throw Error::FailedPrecondition(
        concat("coordinator: cannot listen on loopback: ", state_->system.render(published.error())));
  }
  state_->inner = *published;
  try {
    state_->gates.push_back(std::make_unique<Gate>(state_->token, host, port, state_->inner));
  } catch (const Error& error) {
    caf::anon_send_exit(state_->actor, caf::exit_reason::user_shutdown);
    throw Error::FailedPrecondition(concat("coordinator: ", error.what(), " (is another job using the port?)"));
  }
  state_->port = state_->gates.front()->port();
}

Coordinator::~Coordinator() { caf::anon_send_exit(state_->actor, caf::exit_reason::user_shutdown); }

uint16_t Coordinator::port() const { return state_->port; }

std::vector<int> Coordinator::members() const {
  std::lock_guard<std::mutex> lock(state_->membership->mutex);
  std::vector<int> ranks;
  for (const auto& [rank, address] : state_->membership->members) ranks.push_back(rank);
  return ranks;
}

int Coordinator::refused() const {
  std::lock_guard<std::mutex> lock(state_->membership->mutex);
  int64_t refused = state_->membership->refused;  // joins, and below connections the gates turned away
  for (const auto& gate : state_->gates) refused += gate->refused();
  return static_cast<int>(refused);
}

bool Coordinator::complete() const {
  std::lock_guard<std::mutex> lock(state_->membership->mutex);
  return state_->membership->complete;
}

void Coordinator::take_over(int epoch, const std::vector<TakeoverMember>& members, int next_member) {
  Membership& m = *state_->membership;
  std::lock_guard<std::mutex> lock(m.mutex);
  if (m.active) return;
  m.active = true;
  m.complete = true;
  m.epoch = epoch;
  m.next_member = next_member;
  const auto now = Clock::now();
  for (const TakeoverMember& member : members) {
    m.next_member = std::max(m.next_member, member.member + 1);
    m.members[member.member] = "";
    m.nodes[member.member] = member.node;
    m.controls[member.member] = member.control;
    m.last_heard[member.member] = now;
    m.roster.push_back(member.member);
  }
  LOG(WARNING) << "coordinator: took over the job at epoch " << epoch << " with " << members.size() << " members";
}

bool Coordinator::listen_also(uint16_t port) {
  try {
    state_->gates.push_back(std::make_unique<Gate>(state_->token, state_->host, port, state_->inner));
  } catch (const Error& error) {
    LOG(WARNING) << "coordinator: cannot also listen on port " << port << ": " << error.what();
    return false;
  }
  return true;
}

bool Coordinator::active() const {
  std::lock_guard<std::mutex> lock(state_->membership->mutex);
  return state_->membership->active;
}

int Coordinator::epoch() const {
  std::lock_guard<std::mutex> lock(state_->membership->mutex);
  return state_->membership->epoch;
}

std::string Coordinator::failure() const {
  std::lock_guard<std::mutex> lock(state_->membership->mutex);
  return state_->membership->failure;
}

JoinReply join_coordinator(const std::string& host, uint16_t port, const std::string& token, int rank,
                           int timeout_seconds, int node) {
  caf::actor_system_config config;
  caf::actor_system system{with_middleman(config)};
  Tunnel tunnel(token.empty() ? std::string("-") : token, host, port);
  auto coordinator = system.middleman().remote_actor("127.0.0.1", tunnel.local_port());
  if (!coordinator) {
    const std::string refusal = tunnel.refusal();
    if (!refusal.empty()) return {.accepted = false, .message = "refused: " + refusal};
    throw Error::FailedPrecondition(
        concat("cannot reach the coordinator at ", host, ":", port, ": ", system.render(coordinator.error())));
  }
  JoinReply reply;
  caf::scoped_actor self{system};
  self->request(*coordinator, std::chrono::seconds(timeout_seconds), join_atom::value, token, rank, 0, std::string(),
                caf::actor{}, node, std::string())
      .receive(
          [&](const std::string& answer) {
            reply.accepted = answer == "accepted" || answer.rfind("joined ", 0) == 0;
            reply.message = answer;
          },
          [&](caf::error& error) {
            throw Error::FailedPrecondition(
                concat("the coordinator at ", host, ":", port, " did not answer: ", system.render(error)));
          });
  return reply;
}

}  // namespace tessel
