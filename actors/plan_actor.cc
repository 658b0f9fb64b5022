#include "actors/plan_actor.h"

#include <glog/logging.h>

#include <chrono>
#include <cstring>

#include "graph/proto_conversion.h"

namespace tessel::hosting {
namespace {

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
      const auto started =
          shared_->profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
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
        for (const Endpoint& consumer : consumers)
          send(shared_->actors[consumer.actor], end_atom::value, consumer.port);
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
        std::byte* target = spec_.output_registers[0][a.output_registers[0]];
        if (spec_.feed_starts.empty()) {
          std::memcpy(target, value.raw(), value.nbytes());
        } else {  // this device's shard of the fed tensor
          const Shape& shard = spec_.output_types[0].shape;
          copy_block(static_cast<const std::byte*>(value.raw()), value.shape(), spec_.feed_starts, target, shard,
                     std::vector<int64_t>(shard.rank(), 0), shard.dims(), size_of(value.dtype()));
        }
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
    CpuDevice::Scope device(shared_->devices[spec_.device]);
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

}  // namespace

ActorSpec spec_of(const proto::RankPlan& rank, int device, int id, const RankLayout& layout) {
  const proto::ActorDef& actor = rank.devices(device).actors(id);
  ActorSpec spec;
  spec.kind = actor.kind();
  spec.description = describe(actor);
  spec.attrs = attributes_from_proto(actor.attrs());
  spec.fetch_index = actor.fetch_index();
  spec.device = device;
  spec.feed_starts.assign(actor.feed_starts().begin(), actor.feed_starts().end());
  spec.terminal = actor.kind() == proto::FETCH || actor.kind() == proto::UPDATE;
  const auto registers_of = [&](int on_device, const proto::ActorDef& owner, const proto::OutputDef& output) {
    std::byte* base = owner.kind() == proto::VARIABLE ? layout.variables[on_device] : layout.arenas[on_device];
    std::vector<std::byte*> addresses;
    for (int64_t offset : output.offsets()) addresses.push_back(base + offset);
    return addresses;
  };
  for (const proto::InputDef& input : actor.inputs()) {
    const proto::Endpoint& from = input.producer();
    const proto::ActorDef& producer = rank.devices(from.device()).actors(from.actor());
    const proto::OutputDef& output = producer.outputs(from.port());
    spec.producers.push_back({layout.first_actor[from.device()] + from.actor(), from.port()});
    spec.inputs.push_back({.initial_tokens = input.initial_tokens()});
    if (input.control()) continue;
    spec.input_types.push_back(tensor_type_from_proto(output.type()));
    spec.input_registers.push_back(registers_of(from.device(), producer, output));
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
    for (const proto::Endpoint& c : output.consumers()) {
      consumers.push_back({layout.first_actor[c.device()] + c.actor(), c.port()});
    }
    spec.consumers.push_back(std::move(consumers));
    if (output.control()) continue;
    spec.output_types.push_back(tensor_type_from_proto(output.type()));
    spec.output_registers.push_back(registers_of(device, actor, output));
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

caf::actor spawn_plan_actor(caf::actor_system& system, std::shared_ptr<Shared> shared, int id) {
  return system.spawn<PlanActor>(std::move(shared), id);
}

}  // namespace tessel::hosting
