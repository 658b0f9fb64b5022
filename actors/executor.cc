#include "actors/executor.h"

#include <glog/logging.h>

#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "actors/actor_state.h"
#include "devices/arena.h"
#include "graph/proto_conversion.h"

namespace tessel {
namespace {

// Messages between actors.
using ready_atom = caf::atom_constant<caf::atom("ready")>;    // (input, register, step)
using ack_atom = caf::atom_constant<caf::atom("ack")>;        // (output, register)
using end_atom = caf::atom_constant<caf::atom("end")>;        // (input): end of stream
using abort_atom = caf::atom_constant<caf::atom("abort")>;    // stop now, free every register
// Messages from actors to the executor.
using done_atom = caf::atom_constant<caf::atom("done")>;      // (actor, step): a terminal actor finished a step
using failed_atom = caf::atom_constant<caf::atom("failed")>;  // (error code, message)
using stopped_atom = caf::atom_constant<caf::atom("stopped")>;  // (actor): drained and gone

struct Endpoint {
  int actor = 0, port = 0;
};

// What an actor needs from the plan, resolved once: kernels, addresses, peers.
struct ActorSpec {
  proto::ActorKind kind = proto::KERNEL;
  std::string description;  // "matmul 'fc1' (created at mlp.cc:12)"
  KernelFn kernel = nullptr;
  Attributes attrs;
  std::vector<TensorType> input_types, output_types;     // data ports only
  std::vector<std::vector<std::byte*>> input_registers;   // per data input, per producer register
  std::vector<std::vector<std::byte*>> output_registers;  // per data output, per register
  std::vector<ActorState::InputSpec> inputs;              // every input, the driver last
  std::vector<ActorState::OutputSpec> outputs;
  std::vector<Endpoint> producers;               // per plan input
  std::vector<std::vector<Endpoint>> consumers;  // per output
  int driver_input = -1;                         // the executor's input of a source
  bool terminal = false;                         // reports each finished step to the executor
  int fetch_index = -1;
};

// State every actor shares with the executor. Feeds and results cross between the executor's
// thread and the actors under a mutex; everything else is written before any actor starts.
struct Shared {
  std::vector<ActorSpec> specs;
  std::vector<caf::actor> actors;
  caf::actor executor;
  bool training = true;
  std::mutex mutex;
  std::map<std::pair<int, int64_t>, HostTensor> feeds;     // (actor, step) -> value
  std::map<int64_t, std::vector<HostTensor>> results;      // step -> fetched values
  std::atomic<int64_t> activations{0};
  // TESSEL_PROFILE=1: time spent in each actor's activations, printed when the executor stops.
  bool profile = false;
  std::vector<int64_t> nanoseconds;  // per actor, written only by that actor
};

class PlanActor : public caf::event_based_actor {
 public:
  PlanActor(caf::actor_config& config, std::shared_ptr<Shared> shared, int id)
      : caf::event_based_actor(config),
        shared_(std::move(shared)),
        id_(id),
        spec_(shared_->specs[id]),
        state_(spec_.inputs, spec_.outputs) {}

  caf::behavior make_behavior() override {
    return {
        [this](ready_atom, int32_t input, int32_t index, int64_t step) {
          state_.on_ready(input, index, step);
          advance();
        },
        [this](ack_atom, int32_t output, int32_t index) {
          state_.on_ack(output, index);
          advance();
        },
        [this](end_atom, int32_t input) {
          state_.on_end_of_stream(input);
          advance();
        },
        [this](abort_atom) {
          state_.on_abort();
          quit();
        },
    };
  }

 private:
  // Acts as long as the protocol allows, then passes end of stream on once drained.
  void advance() {
    while (state_.can_act()) {
      const ActorState::Activation activation = state_.begin();
      const auto started = shared_->profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
      try {
        act(activation);
        if (shared_->profile) shared_->nanoseconds[id_] += (std::chrono::steady_clock::now() - started).count();
      } catch (const Error& error) {
        fail(error.code(), error.with_context(spec_.description).what());
        return;
      } catch (const std::exception& error) {
        fail(ErrorCode::kFailedPrecondition, concat(spec_.description, ": ", error.what()));
        return;
      }
      shared_->activations.fetch_add(1, std::memory_order_relaxed);
      const ActorState::Messages messages = state_.finish(activation);
      for (const ActorState::Ready& ready : messages.ready) {
        for (const Endpoint& consumer : spec_.consumers[ready.output]) {
          send(shared_->actors[consumer.actor], ready_atom::value, consumer.port, ready.register_index, ready.step);
        }
      }
      for (const ActorState::Ack& ack : messages.acks) {
        if (ack.input == spec_.driver_input) continue;
        const Endpoint& producer = spec_.producers[ack.input];
        send(shared_->actors[producer.actor], ack_atom::value, producer.port, ack.register_index);
      }
      if (spec_.terminal) send(shared_->executor, done_atom::value, id_, activation.step);
    }
    if (state_.take_end_of_stream()) {
      for (const auto& consumers : spec_.consumers) {
        for (const Endpoint& consumer : consumers) send(shared_->actors[consumer.actor], end_atom::value, consumer.port);
      }
      send(shared_->executor, stopped_atom::value, id_);
      quit();
    }
  }

  void fail(ErrorCode code, const std::string& message) {
    state_.on_abort();
    send(shared_->executor, failed_atom::value, static_cast<int32_t>(code), message);
    quit();
  }

  void act(const ActorState::Activation& a) {
    switch (spec_.kind) {
      case proto::VARIABLE:
        return;  // its register is the variable's storage
      case proto::INPUT: {
        HostTensor value;
        {
          std::lock_guard<std::mutex> lock(shared_->mutex);
          auto it = shared_->feeds.find({id_, a.step});
          CHECK(it != shared_->feeds.end()) << "no feed for step " << a.step;
          value = std::move(it->second);
          shared_->feeds.erase(it);
        }
        std::memcpy(spec_.output_registers[0][a.output_registers[0]], value.raw(), value.nbytes());
        return;
      }
      case proto::FETCH: {
        const TensorType& type = spec_.input_types[0];
        HostTensor value(type.shape, type.dtype);
        std::memcpy(value.raw(), spec_.input_registers[0][a.input_registers[0]], value.nbytes());
        std::lock_guard<std::mutex> lock(shared_->mutex);
        std::vector<HostTensor>& step = shared_->results[a.step];
        if (static_cast<int>(step.size()) <= spec_.fetch_index) step.resize(spec_.fetch_index + 1);
        step[spec_.fetch_index] = std::move(value);
        return;
      }
      default:
        break;
    }
    std::vector<TensorView> inputs, outputs;
    for (size_t i = 0; i < spec_.input_types.size(); ++i) {
      inputs.push_back({spec_.input_registers[i][a.input_registers[i]], spec_.input_types[i].shape,
                        spec_.input_types[i].dtype, DeviceType::cpu});
    }
    for (size_t o = 0; o < spec_.output_types.size(); ++o) {
      outputs.push_back({spec_.output_registers[o][a.output_registers[o]], spec_.output_types[o].shape,
                         spec_.output_types[o].dtype, DeviceType::cpu});
    }
    spec_.kernel(KernelContext{inputs, outputs, spec_.attrs, a.step, shared_->training});
  }

  std::shared_ptr<Shared> shared_;
  int id_;
  const ActorSpec& spec_;
  ActorState state_;
};

std::string describe(const proto::ActorDef& actor) {
  const std::string what = actor.op().empty() ? proto::ActorKind_Name(actor.kind()) : actor.op();
  return concat(what, " '", actor.name(), "' (created at ", actor.location(), ")");
}

ActorSpec spec_of(const proto::DevicePlan& device, int id, std::byte* arena, std::byte* variables) {
  const proto::ActorDef& actor = device.actors(id);
  ActorSpec spec;
  spec.kind = actor.kind();
  spec.description = describe(actor);
  spec.attrs = attributes_from_proto(actor.attrs());
  spec.fetch_index = actor.fetch_index();
  spec.terminal = actor.kind() == proto::FETCH || actor.kind() == proto::UPDATE;
  const auto registers_of = [&](const proto::ActorDef& owner, const proto::OutputDef& output) {
    std::byte* base = owner.kind() == proto::VARIABLE ? variables : arena;
    std::vector<std::byte*> addresses;
    for (int64_t offset : output.offsets()) addresses.push_back(base + offset);
    return addresses;
  };
  for (const proto::InputDef& input : actor.inputs()) {
    const proto::ActorDef& producer = device.actors(input.producer().actor());
    const proto::OutputDef& output = producer.outputs(input.producer().port());
    spec.producers.push_back({input.producer().actor(), input.producer().port()});
    spec.inputs.push_back({.initial_tokens = input.initial_tokens()});
    if (input.control()) continue;
    spec.input_types.push_back(tensor_type_from_proto(output.type()));
    spec.input_registers.push_back(registers_of(producer, output));
  }
  if (actor.driven()) {
    spec.driver_input = static_cast<int>(spec.inputs.size());
    spec.inputs.push_back({});
  }
  for (const proto::OutputDef& output : actor.outputs()) {
    spec.outputs.push_back({.register_count = output.register_count(),
                            .consumer_count = output.consumers_size(),
                            .initial_tokens = output.initial_tokens()});
    std::vector<Endpoint> consumers;
    for (const proto::Endpoint& c : output.consumers()) consumers.push_back({c.actor(), c.port()});
    spec.consumers.push_back(std::move(consumers));
    if (output.control()) continue;
    spec.output_types.push_back(tensor_type_from_proto(output.type()));
    spec.output_registers.push_back(registers_of(actor, output));
  }
  if (actor.kind() == proto::KERNEL || actor.kind() == proto::UPDATE) {
    const DType dispatch = spec.input_types.empty() ? spec.output_types[0].dtype : spec.input_types[0].dtype;
    try {
      spec.kernel = OpRegistry::global().kernel(actor.op(), DeviceType::cpu, dispatch);
    } catch (const Error& error) {
      throw error.with_context(spec.description);
    }
  }
  return spec;
}

caf::actor_system_config& configured(caf::actor_system_config& config, const ExecutorOptions& options) {
  config.set("scheduler.max-threads", static_cast<size_t>(std::max(1, options.worker_threads)));
  return config;
}

}  // namespace

struct Executor::Impl {
  Impl(const proto::Plan& plan, int rank, std::byte* variables, const ExecutorOptions& options)
      : options(options), system(configured(config, options)), self(system) {
    const proto::RankPlan* share = nullptr;
    for (const proto::RankPlan& candidate : plan.ranks()) {
      if (candidate.rank() == rank) share = &candidate;
    }
    if (share == nullptr) throw Error::NotFound(concat("the plan has no share for rank ", rank));
    if (share->devices_size() != 1) {
      throw Error::Unimplemented(concat("rank ", rank, " has ", share->devices_size(),
                                        " devices in the plan; this executor runs exactly one"));
    }
    const proto::DevicePlan& device = share->devices(0);
    arena = std::make_unique<HostArena>(device.arena_bytes(), kPoison);
    shared = std::make_shared<Shared>();
    shared->training = plan.training();
    const char* profile = std::getenv("TESSEL_PROFILE");
    shared->profile = profile != nullptr && std::strcmp(profile, "0") != 0;
    shared->nanoseconds.assign(device.actors_size(), 0);
    for (int id = 0; id < device.actors_size(); ++id) {
      shared->specs.push_back(spec_of(device, id, arena->data(), variables));
      const proto::ActorDef& actor = device.actors(id);
      if (actor.driven()) sources.push_back(id);
      if (actor.kind() == proto::INPUT) inputs[actor.feed()] = id;
      if (shared->specs.back().terminal) ++terminals;
    }
    for (const proto::FeedDef& feed : plan.feeds()) {
      feeds.push_back({feed.name(), tensor_type_from_proto(feed.type()), feed.location(), feed.needed()});
    }
    fetch_count = plan.fetches_size();
    if (terminals == 0) {
      throw Error::InvalidArgument("the plan fetches nothing and updates nothing, so a step would do no work");
    }
    shared->executor = caf::actor_cast<caf::actor>(self);
    for (int id = 0; id < device.actors_size(); ++id) {
      shared->actors.push_back(system.spawn<PlanActor>(shared, id));
      self->monitor(shared->actors.back());  // an actor that dies unexpectedly ends the run with an Error
    }
  }

  void check_feeds(const Feeds& given) const {
    for (const auto& [name, value] : given) {
      auto it = std::find_if(feeds.begin(), feeds.end(), [&](const FeedInfo& f) { return f.name == name; });
      if (it == feeds.end()) {
        std::string names;
        for (const FeedInfo& f : feeds) names += concat(names.empty() ? "" : ", ", f.name);
        throw Error::NotFound(concat("feed '", name, "' names no input of the plan (inputs: ", names, ")"));
      }
      if (value.shape() != it->type.shape || value.dtype() != it->type.dtype) {
        throw Error::ShapeMismatch(concat("feed '", name, "' is ", value.shape(), " ", value.dtype(), ", but input '",
                                          name, "' (created at ", it->location, ") expects ", it->type.shape, " ",
                                          it->type.dtype));
      }
    }
    for (const FeedInfo& f : feeds) {
      if (f.needed && given.count(f.name) == 0) {
        throw Error::FailedPrecondition(concat("input '", f.name, "' (", f.type.shape, " ", f.type.dtype,
                                               ", created at ", f.location, ") is needed by this step but was not fed"));
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

  void abort_all() {
    for (const caf::actor& actor : shared->actors) self->send(actor, abort_atom::value);
    broken = true;
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

  struct FeedInfo {
    std::string name;
    TensorType type;
    std::string location;
    bool needed = false;
  };

  ExecutorOptions options;
  caf::actor_system_config config;
  caf::actor_system system;
  caf::scoped_actor self;
  std::unique_ptr<HostArena> arena;
  std::shared_ptr<Shared> shared;
  std::vector<int> sources;
  std::map<std::string, int> inputs;  // feed name -> INPUT actor
  std::vector<FeedInfo> feeds;
  int terminals = 0;
  int fetch_count = 0;
  int64_t fed = 0;       // steps handed to the sources
  int64_t completed = 0; // steps every terminal actor finished
  std::map<int64_t, int> finished_terminals;
  bool broken = false;
  std::string broken_reason;
};

Executor::Executor(const proto::Plan& plan, int rank, std::byte* variables, ExecutorOptions options)
    : impl_(std::make_unique<Impl>(plan, rank, variables, options)) {}

Executor::~Executor() {
  Impl& impl = *impl_;
  int running = static_cast<int>(impl.shared->actors.size());
  if (!impl.broken) {
    for (int id : impl.sources) {
      impl.self->send(impl.shared->actors[id], end_atom::value, impl.shared->specs[id].driver_input);
    }
    bool waiting = true;
    while (waiting && running > 0) {
      impl.self->receive([&](stopped_atom, int32_t) { --running; },
                         [&](const caf::down_msg&) {},
                         [&](done_atom, int32_t, int64_t) {},
                         [&](failed_atom, int32_t, const std::string& message) {
                           LOG(ERROR) << "while draining: " << message;
                         },
                         caf::after(std::chrono::seconds(30)) >> [&] { waiting = false; });
    }
    if (running > 0) LOG(ERROR) << running << " actors did not drain within 30 s; stopping them";
  }
  for (const caf::actor& actor : impl.shared->actors) impl.self->send_exit(actor, caf::exit_reason::kill);
  impl.shared->actors.clear();
  if (impl.shared->profile) impl.print_profile();
  impl.shared->executor = nullptr;
}

std::vector<std::vector<HostTensor>> Executor::run(int64_t steps, const FeedFn& feed, const StepFn& on_step) {
  Impl& impl = *impl_;
  if (impl.broken) throw Error::FailedPrecondition(concat("the executor was aborted by an earlier error: ", impl.broken_reason));
  std::vector<std::vector<HostTensor>> outputs;
  int64_t last = impl.completed + steps;  // exclusive; lowered when the feed runs out
  const auto stall = std::chrono::duration<double>(impl.options.stall_timeout_seconds);
  std::exception_ptr feed_error;
  while (impl.completed < last) {
    while (impl.fed < last && impl.fed - impl.completed < std::max(1, impl.options.steps_in_flight)) {
      std::optional<Feeds> values;
      try {
        values = feed(impl.fed);
        if (values) impl.check_feeds(*values);
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
          // A copy: the caller may reuse its buffers before the step's input actor reads them.
          if (it != impl.inputs.end()) impl.shared->feeds[{it->second, impl.fed}] = value.clone();
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
        [&](done_atom, int32_t, int64_t step) {
          ++impl.finished_terminals[step];
          // Steps complete in order; a later one may have finished first.
          for (auto it = impl.finished_terminals.find(impl.completed);
               it != impl.finished_terminals.end() && it->second == impl.terminals;
               it = impl.finished_terminals.find(impl.completed)) {
            impl.finished_terminals.erase(it);
            outputs.push_back(impl.take_results(impl.completed));
            ++impl.completed;
            if (on_step) on_step(impl.completed - 1, outputs.back());
          }
        },
        [&](failed_atom, int32_t code, const std::string& message) {
          error = Error(static_cast<ErrorCode>(code), message);
        },
        [&](stopped_atom, int32_t id) {
          error = Error::FailedPrecondition(concat("actor ", id, " stopped in the middle of a run"));
        },
        [&](const caf::down_msg& down) {
          error = Error::FailedPrecondition(concat("an actor went down in the middle of a run: ",
                                                   caf::to_string(down.reason)));
        },
        caf::after(std::chrono::duration_cast<std::chrono::milliseconds>(stall)) >> [&] {
          error = Error::FailedPrecondition(concat("no step completed for ", impl.options.stall_timeout_seconds,
                                                   " s (step ", impl.completed, " of ", last, " pending)"));
        });
    if (error) {
      impl.abort_all();
      impl.broken_reason = error->what();
      throw *error;
    }
  }
  if (feed_error) std::rethrow_exception(feed_error);
  return outputs;
}

int64_t Executor::steps_done() const { return impl_->completed; }
int64_t Executor::activations() const { return impl_->shared->activations.load(); }
int Executor::actor_count() const { return static_cast<int>(impl_->shared->specs.size()); }

}  // namespace tessel
