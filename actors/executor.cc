#include "actors/executor.h"

#include <glog/logging.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "actors/plan_actor.h"
#include "actors/trace.h"
#include "comm/communicator.h"
#include "comm/tags.h"
#include "comm/transport.h"
#include "devices/arena.h"
#include "graph/compile.h"
#include "graph/feeds.h"
#include "graph/proto_conversion.h"

namespace tessel {
namespace {

using namespace hosting;

// Thread and step counts within reason, checked before CAF starts a thread: a million workers
// would be a million threads.
constexpr int kMaxThreads = 1024;

void check_counts(const ExecutorOptions& options) {
  const auto within = [](const char* name, int value, const char* what) {
    if (value < 1 || value > kMaxThreads) {
      throw Error::InvalidArgument(
          concat("ExecutorOptions::", name, " is ", value, ", expected 1 to ", kMaxThreads, " (", what, ")"));
    }
  };
  within("worker_threads", options.worker_threads, "threads per device that run actors at once");
  within("kernel_threads_per_device", options.kernel_threads_per_device, "each device's kernel threads");
  within("steps_in_flight", options.steps_in_flight, "steps fed ahead of the oldest unfinished one");
}

caf::actor_system_config& configured(caf::actor_system_config& config, const ExecutorOptions& options, int devices) {
  check_counts(options);
  config.set("scheduler.max-threads", static_cast<size_t>(std::max(1, options.worker_threads) * std::max(1, devices)));
  return config;
}

}  // namespace

struct Executor::Impl {
  Impl(const proto::Plan& plan, int rank, const std::vector<std::byte*>& variables, const ExecutorOptions& options)
      : options(options),
        share(share_of(plan, rank)),
        system(configured(config, options, share.devices_size())),
        self(system) {
    if (static_cast<int>(variables.size()) != share.devices_size()) {
      throw Error::InvalidArgument(concat("rank ", rank, " has ", share.devices_size(), " devices in the plan but ",
                                          variables.size(), " variable arenas were given"));
    }
    shared = std::make_shared<Shared>();
    shared->training = plan.training();
    shared->transport = options.transport;
    shared->tag_space = options.tag_space;
    if (options.transport != nullptr) shared->transport_group = comm::Transport::new_group();
    if (options.tag_space < 0 || options.tag_space > 63)
      throw Error::InvalidArgument(concat("tag_space is ", options.tag_space, ", expected 0 to 63"));
    const int rank_count = std::max(plan.rank_count(), plan.ranks_size());
    if (rank_count > 1 && options.transport == nullptr) {
      throw Error::InvalidArgument(concat("the plan spans ", rank_count, " ranks, so rank ", rank,
                                          " needs a transport to the others (ExecutorOptions::transport)"));
    }
    const char* profile = std::getenv("TESSEL_PROFILE");
    shared->profile = profile != nullptr && std::strcmp(profile, "0") != 0;
    hosting::RankLayout layout;
    layout.variables = variables;
    int total = 0;  // actors over the rank
    for (const proto::DevicePlan& device : share.devices()) {
      layout.first_actor.push_back(total);
      total += device.actors_size();
      try {
        arenas.push_back(std::make_unique<HostArena>(device.arena_bytes(), kPoison));
      } catch (const Error& error) {
        throw error.with_context(concat("the registers of ", device.device()));
      }
      layout.arenas.push_back(arenas.back()->data());
      if (share.devices_size() > 1) {
        devices.push_back(std::make_unique<CpuDevice>(options.kernel_threads_per_device));
        shared->devices.push_back(devices.back().get());
      } else {
        shared->devices.push_back(nullptr);
      }
    }
    shared->nanoseconds.assign(total, 0);
    trace::start_from_environment();
    stopped.assign(total, false);
    steps_finished.assign(total, 0);
    for (int d = 0; d < share.devices_size(); ++d) {
      for (int id = 0; id < share.devices(d).actors_size(); ++id) {
        shared->specs.push_back(spec_of(share, d, id, layout));
        const int index = static_cast<int>(shared->specs.size()) - 1;
        const proto::ActorDef& actor = share.devices(d).actors(id);
        if (actor.driven()) sources.push_back(index);
        const bool transfer = actor.kind() == proto::SEND || actor.kind() == proto::RECV;
        if (transfer && (actor.channel() < 0 || actor.channel() >= comm::kTagChannels)) {
          throw Error::InvalidArgument(concat(shared->specs.back().description, " uses channel ", actor.channel(),
                                              ", expected 0 to ", comm::kTagChannels - 1,
                                              " (a tag holds 15 bits of channel)"));
        }
        if (actor.kind() == proto::INPUT) inputs[actor.feed()].push_back(index);
        if (shared->specs.back().terminal) ++terminals;
      }
    }
    for (const proto::FeedDef& feed : plan.feeds()) {
      feeds.push_back({feed.name(), tensor_type_from_proto(feed.type()), feed.location(), feed.needed()});
    }
    fetch_count = plan.fetches_size();
    if (terminals == 0) {
      throw Error::InvalidArgument("the plan fetches nothing and updates nothing, so a step would do no work");
    }
    if (trace::Recorder* recorder = trace::active()) {
      std::vector<trace::ActorInfo> infos;
      for (int d = 0; d < share.devices_size(); ++d) {
        for (const proto::ActorDef& actor : share.devices(d).actors()) {
          const hosting::ActorSpec& spec = shared->specs[infos.size()];
          std::string kind = proto::ActorKind_Name(actor.kind());
          std::transform(kind.begin(), kind.end(), kind.begin(), [](unsigned char c) { return std::tolower(c); });
          int64_t bytes = 0;
          for (const TensorType& type : spec.output_types) {
            bytes += type.shape.numel() * static_cast<int64_t>(size_of(type.dtype));
          }
          infos.push_back({.device = share.devices(d).device(),
                           .name = concat(actor.op().empty() ? kind : actor.op(), " ", actor.name()),
                           .kind = kind,
                           .bytes = bytes});
        }
      }
      shared->trace = recorder;
      shared->trace_base = recorder->add_actors(infos);
    }
    make_communicators(rank, share.devices_size());
    shared->executor = caf::actor_cast<caf::actor>(self);
    for (int id = 0; id < total; ++id) {
      shared->actors.push_back(spawn_plan_actor(system, shared, id));
      self->monitor(shared->actors.back());  // an actor that dies unexpectedly ends the run with an Error
    }
    for (int id = 0; id < total; ++id) {
      const proto::ActorKind kind = shared->specs[id].kind;
      if (kind == proto::SEND || kind == proto::RECV) self->send(shared->actors[id], start_atom::value);
    }
  }

  // One communicator per group of the rank's COLLECTIVE actors; every member the group has on
  // this rank must be one of its actors, once.
  void make_communicators(int rank, int devices) {
    std::map<int, std::vector<int>> members_here;  // group -> its members' actors on this rank
    std::map<int, std::string> signatures;         // group -> what its members agree on
    for (size_t id = 0; id < shared->specs.size(); ++id) {
      ActorSpec& spec = shared->specs[id];
      if (spec.kind != proto::COLLECTIVE) continue;
      if (!workers) workers = std::make_unique<comm::CollectiveWorkers>(devices);
      std::shared_ptr<comm::Communicator>& communicator = communicators[spec.group];
      if (!communicator) {
        communicator = std::make_shared<comm::CpuCommunicator>(
            comm::CommunicatorOptions{.group = spec.group,
                                      .member_ranks = spec.member_ranks,
                                      .rank = rank,
                                      .transport = options.transport,
                                      .tag_space = options.tag_space,
                                      .transport_group = shared->transport_group,
                                      .workers = workers.get()});
        members_here[spec.group].assign(spec.member_ranks.size(), -1);
        signatures[spec.group] = spec.group_signature;
      }
      std::vector<int>& here = members_here[spec.group];
      if (signatures[spec.group] != spec.group_signature) {
        throw Error::InvalidArgument(concat("invalid plan: ", spec.description, " is ", spec.group_signature,
                                            ", but another member of collective group ", spec.group, " is ",
                                            signatures[spec.group]));
      }
      if (here.size() != spec.member_ranks.size() || spec.member_ranks[spec.member] != rank ||
          here[spec.member] != -1) {
        throw Error::InvalidArgument(concat("invalid plan: ", spec.description, " is member ", spec.member,
                                            " of collective group ", spec.group,
                                            ", which disagrees with the group's other actors on rank ", rank));
      }
      here[spec.member] = static_cast<int>(id);
      spec.communicator = communicator;
    }
    for (const auto& [group, here] : members_here) {
      const std::vector<int>& ranks = shared->specs[*std::max_element(here.begin(), here.end())].member_ranks;
      for (size_t m = 0; m < here.size(); ++m) {
        if (ranks[m] == rank && here[m] < 0) {
          throw Error::InvalidArgument(concat("invalid plan: collective group ", group, " has member ", m, " on rank ",
                                              rank, " but no actor for it"));
        }
      }
    }
  }

  std::vector<HostTensor> take_results(int64_t step) {
    std::lock_guard<std::mutex> lock(shared->mutex);
    std::vector<HostTensor> values;
    auto it = shared->results.find(step);
    if (it != shared->results.end()) {
      values = std::move(it->second);
      shared->results.erase(it);
    }
    values.resize(fetch_count);
    return values;
  }

  void abort_all(const std::string& reason) {
    for (const caf::actor& actor : shared->actors) self->send(actor, abort_atom::value);
    // Collectives in flight stop too: nothing reads or writes the freed registers any more.
    for (const auto& [group, communicator] : communicators) communicator->abort(reason);
    broken_reason = reason;
  }

  void print_profile() const {
    std::vector<std::pair<int64_t, int>> order;
    int64_t total = 0;
    for (size_t id = 0; id < shared->nanoseconds.size(); ++id) {
      order.emplace_back(shared->nanoseconds[id], static_cast<int>(id));
      total += shared->nanoseconds[id];
    }
    std::sort(order.rbegin(), order.rend());
    std::string report = concat("time in activations over ", completed, " steps (TESSEL_PROFILE):\n");
    for (const auto& [nanoseconds, id] : order) {
      if (nanoseconds == 0) break;
      char line[256];
      std::snprintf(line, sizeof line, "  %10.3f ms/step %5.1f%%  %s\n",
                    1e-6 * static_cast<double>(nanoseconds) / static_cast<double>(std::max<int64_t>(1, completed)),
                    100.0 * static_cast<double>(nanoseconds) / static_cast<double>(std::max<int64_t>(1, total)),
                    shared->specs[id].description.c_str());
      report += line;
    }
    std::fputs(report.c_str(), stderr);
  }

  ExecutorOptions options;
  const proto::RankPlan& share;  // read while constructing only: the plan need not outlive the executor
  caf::actor_system_config config;
  caf::actor_system system;
  caf::scoped_actor self;
  std::vector<std::unique_ptr<HostArena>> arenas;   // per device
  std::vector<std::unique_ptr<CpuDevice>> devices;  // per device, when there are several
  std::shared_ptr<Shared> shared;
  std::unique_ptr<comm::CollectiveWorkers> workers;                  // when the rank has collectives
  std::map<int, std::shared_ptr<comm::Communicator>> communicators;  // by group
  std::vector<int> sources;
  std::map<std::string, std::vector<int>> inputs;  // feed name -> its INPUT actors (one per shard)
  std::vector<FeedSpec> feeds;
  int terminals = 0;
  int fetch_count = 0;
  int64_t fed = 0;        // steps handed to the sources
  int64_t completed = 0;  // steps every terminal actor finished
  std::map<int64_t, int> finished_terminals;
  // Per actor: it reported stopped (a RECV, and what only it feeds, may do so during a run),
  // and the steps it finished (terminal actors report them).
  std::vector<bool> stopped;
  std::vector<int64_t> steps_finished;
  std::string broken_reason;  // set when an error aborted the actors: the executor cannot run again
};

Executor::Executor(const proto::Plan& plan, int rank, std::vector<std::byte*> variables, ExecutorOptions options)
    : impl_(std::make_unique<Impl>(plan, rank, variables, options)) {}

Executor::~Executor() {
  Impl& impl = *impl_;
  std::vector<bool>& stopped = impl.stopped;
  int running = static_cast<int>(std::count(stopped.begin(), stopped.end(), false));
  if (impl.broken_reason.empty()) {
    for (int id : impl.sources) {
      impl.self->send(impl.shared->actors[id], end_atom::value, impl.shared->specs[id].driver_input);
    }
    bool waiting = true;
    while (waiting && running > 0) {
      impl.self->receive(
          [&](stopped_atom, int32_t id) {
            if (!stopped[id]) --running;
            stopped[id] = true;
          },
          [&](const caf::down_msg&) {}, [&](done_atom, int32_t, int64_t) {},
          [&](failed_atom, int32_t, const std::string& message) { LOG(ERROR) << "while draining: " << message; },
          caf::after(std::chrono::seconds(30)) >> [&] { waiting = false; });
    }
    if (running > 0) {
      std::string names;
      for (size_t id = 0; id < stopped.size() && names.size() < 2000; ++id) {
        if (!stopped[id]) names += "\n  " + impl.shared->specs[id].description;
      }
      LOG(ERROR) << running << " actors did not drain within 30 s; stopping them:" << names;
    }
  }
  for (const caf::actor& actor : impl.shared->actors) impl.self->send_exit(actor, caf::exit_reason::kill);
  // An actor still in a handler may message its peers through shared->actors: clear it only once
  // every actor is gone (none waits on anything, so each ends when its handler returns).
  impl.self->wait_for(impl.shared->actors);
  impl.shared->actors.clear();
  // The transport's callbacks hold actors of this system: let them go before it does.
  // Nothing may copy into the arenas once the executor is gone: the communicators stop first
  // (so that no phase starts new transfers), then the transport drops the executor's transfers.
  for (const auto& [group, communicator] : impl.communicators) communicator->abort("the executor stopped");
  if (impl.shared->transport != nullptr) impl.shared->transport->forget_group(impl.shared->transport_group);
  impl.workers.reset();
  if (impl.shared->profile) impl.print_profile();
  impl.shared->executor = nullptr;
}

std::vector<std::vector<HostTensor>> Executor::run(int64_t steps, const FeedFn& feed, const StepFn& on_step) {
  Impl& impl = *impl_;
  if (!impl.broken_reason.empty())
    throw Error::FailedPrecondition(concat("the executor was aborted by an earlier error: ", impl.broken_reason));
  std::vector<std::vector<HostTensor>> outputs;
  int64_t last = impl.completed + steps;  // exclusive; lowered when the feed runs out
  const auto stall = std::chrono::duration<double>(impl.options.stall_timeout_seconds);
  std::exception_ptr feed_error;
  while (impl.completed < last) {
    while (impl.fed < last && impl.fed - impl.completed < std::max(1, impl.options.steps_in_flight)) {
      std::optional<Feeds> values;
      try {
        values = feed(impl.fed + impl.shared->step_offset);
        if (values) check_feeds(*values, impl.feeds);
      } catch (...) {
        // Steps already fed finish (their updates stand) before the error reaches the caller.
        feed_error = std::current_exception();
        values.reset();
      }
      if (!values) {
        last = impl.fed;
        break;
      }
      {
        std::lock_guard<std::mutex> lock(impl.shared->mutex);
        for (auto& [name, value] : *values) {
          auto it = impl.inputs.find(name);
          if (it == impl.inputs.end()) continue;
          // A copy: the caller may reuse its buffers before the step's input actors read them.
          // Shards of one input share it (each copies its box out).
          const HostTensor copy = value.clone();
          for (int actor : it->second) impl.shared->feeds[{actor, impl.fed}] = copy;
        }
      }
      for (int id : impl.sources) {
        impl.self->send(impl.shared->actors[id], ready_atom::value, impl.shared->specs[id].driver_input, 0, impl.fed);
      }
      ++impl.fed;
    }
    if (impl.completed >= last) break;
    std::optional<Error> error;
    impl.self->receive(
        [&](done_atom, int32_t id, int64_t step) {
          impl.steps_finished[id] = std::max(impl.steps_finished[id], step + 1);
          ++impl.finished_terminals[step];
          // Steps complete in order; a later one may have finished first.
          for (auto it = impl.finished_terminals.find(impl.completed);
               it != impl.finished_terminals.end() && it->second == impl.terminals;
               it = impl.finished_terminals.find(impl.completed)) {
            impl.finished_terminals.erase(it);
            outputs.push_back(impl.take_results(impl.completed));
            if (impl.shared->trace != nullptr) impl.shared->trace->step_done(impl.completed + impl.shared->step_offset);
            ++impl.completed;
            if (on_step) on_step(impl.completed - 1 + impl.shared->step_offset, outputs.back());
          }
        },
        [&](failed_atom, int32_t code, const std::string& message) {
          error = Error(static_cast<ErrorCode>(code), message);
        },
        [&](stopped_atom, int32_t id) {
          // An actor stops once the streams into it ended, which during a run only a RECV's do:
          // its SEND's rank finished first. The RECV, and the actors only it feeds, stop after
          // the steps they were sent; a terminal one that still owes a step of this run is stuck.
          impl.stopped[id] = true;
          if (impl.shared->specs[id].terminal && impl.steps_finished[id] < last) {
            error = Error::FailedPrecondition(
                concat(impl.shared->specs[id].description, " stopped in the middle of a run"));
          }
        },
        [&](const caf::down_msg& down) {
          if (!down.reason) return;  // a normal exit follows its stopped message, handled above
          error = Error::FailedPrecondition(
              concat("an actor went down in the middle of a run: ", caf::to_string(down.reason)));
        },
        caf::after(std::chrono::duration_cast<std::chrono::milliseconds>(stall)) >>
            [&] {
              error = Error::FailedPrecondition(concat("no step completed for ", impl.options.stall_timeout_seconds,
                                                       " s (step ", impl.completed, " of ", last, " pending)"));
            });
    if (error) {
      impl.abort_all(error->what());
      throw *error;
    }
  }
  if (feed_error) std::rethrow_exception(feed_error);
  return outputs;
}

void Executor::interrupt(const std::string& why) {
  caf::anon_send(caf::actor_cast<caf::actor>(impl_->self), failed_atom::value,
                 static_cast<int32_t>(ErrorCode::kAborted), why);
}

void Executor::abandon(const std::string& why) {
  if (impl_->broken_reason.empty()) impl_->abort_all(why);
}

int64_t Executor::steps_done() const { return impl_->completed + impl_->shared->step_offset; }

void Executor::set_steps_done(int64_t steps) {
  if (steps < 0) throw Error::InvalidArgument(concat("set_steps_done(", steps, "): expected at least 0 steps"));
  impl_->shared->step_offset = steps - impl_->completed;
}
int64_t Executor::activations() const { return impl_->shared->activations.load(); }
int Executor::actor_count() const { return static_cast<int>(impl_->shared->specs.size()); }

}  // namespace tessel
