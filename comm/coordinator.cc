#include "comm/coordinator.h"

#include <glog/logging.h>

#include <algorithm>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <mutex>
#include <set>

#include "core/error.h"

namespace tessel {
namespace {

using join_atom = caf::atom_constant<caf::atom("join")>;

struct Membership {
  std::mutex mutex;
  std::set<int> members;
  int refused = 0;
};

caf::actor_system_config& with_middleman(caf::actor_system_config& config) {
  config.load<caf::io::middleman>();
  return config;
}

// Replies "accepted" or "refused: <reason>".
caf::behavior coordinator_behavior(caf::event_based_actor*, std::string token, int world_size,
                                   std::shared_ptr<Membership> membership) {
  return {[=](join_atom, const std::string& presented, int rank) -> std::string {
    std::lock_guard<std::mutex> lock(membership->mutex);
    std::string reason;
    if (presented != token)
      reason = "wrong job token";
    else if (rank < 0 || rank >= world_size)
      reason = concat("rank ", rank, " is outside [0, ", world_size, ")");
    else if (membership->members.count(rank))
      reason = concat("rank ", rank, " has already joined");
    if (!reason.empty()) {
      ++membership->refused;
      LOG(WARNING) << "coordinator: refused a join as rank " << rank << ": " << reason;
      return "refused: " + reason;
    }
    membership->members.insert(rank);
    LOG(INFO) << "coordinator: rank " << rank << " joined (" << membership->members.size() << "/" << world_size << ")";
    return "accepted";
  }};
}

}  // namespace

struct Coordinator::State {
  caf::actor_system_config config;
  caf::actor_system system{with_middleman(config)};
  std::shared_ptr<Membership> membership = std::make_shared<Membership>();
  caf::actor actor;
  uint16_t port = 0;
  int world_size = 0;
};

Coordinator::Coordinator(std::string token, int world_size, const std::string& host, uint16_t port)
    : state_(std::make_unique<State>()) {
  if (token.empty()) throw Error::InvalidArgument("the job token must not be empty");
  if (world_size < 1) throw Error::InvalidArgument(concat("world size must be at least 1, got ", world_size));
  state_->world_size = world_size;
  state_->actor = state_->system.spawn(coordinator_behavior, std::move(token), world_size, state_->membership);
  auto published = state_->system.middleman().publish(state_->actor, port, host.c_str(), /*reuse_addr=*/true);
  if (!published) {
    caf::anon_send_exit(state_->actor, caf::exit_reason::user_shutdown);
    throw Error::FailedPrecondition(
        concat("coordinator: cannot listen on ", host, ":", port, ": ", state_->system.render(published.error())));
  }
  state_->port = *published;
}

Coordinator::~Coordinator() { caf::anon_send_exit(state_->actor, caf::exit_reason::user_shutdown); }

uint16_t Coordinator::port() const { return state_->port; }

std::vector<int> Coordinator::members() const {
  std::lock_guard<std::mutex> lock(state_->membership->mutex);
  return {state_->membership->members.begin(), state_->membership->members.end()};
}

int Coordinator::refused() const {
  std::lock_guard<std::mutex> lock(state_->membership->mutex);
  return state_->membership->refused;
}

bool Coordinator::complete() const { return static_cast<int>(members().size()) == state_->world_size; }

JoinReply join_coordinator(const std::string& host, uint16_t port, const std::string& token, int rank,
                           int timeout_seconds) {
  caf::actor_system_config config;
  caf::actor_system system{with_middleman(config)};
  auto coordinator = system.middleman().remote_actor(host, port);
  if (!coordinator) {
    throw Error::FailedPrecondition(
        concat("cannot reach the coordinator at ", host, ":", port, ": ", system.render(coordinator.error())));
  }
  JoinReply reply;
  caf::scoped_actor self{system};
  self->request(*coordinator, std::chrono::seconds(timeout_seconds), join_atom::value, token, rank)
      .receive(
          [&](const std::string& answer) {
            reply.accepted = answer == "accepted";
            reply.message = answer;
          },
          [&](caf::error& error) {
            throw Error::FailedPrecondition(
                concat("the coordinator at ", host, ":", port, " did not answer: ", system.render(error)));
          });
  return reply;
}

}  // namespace tessel
