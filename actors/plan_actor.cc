#include "actors/plan_actor.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>

#include "actors/collective_layout.h"
#include "actors/trace.h"
#include "comm/communicator.h"
#include "comm/tags.h"
#include "comm/transport.h"
#include "graph/proto_conversion.h"

namespace tessel::hosting {
namespace {

// Tags of the messages between a SEND and its RECV (comm/tags.h): kind, the plan's tag space,
// the channel, then the register (8 bits) and the step (32, modulo).
//
// The end of a channel is a handshake, so that nothing of it is left when the next plan on this
// transport uses the same tags: the SEND sends `end` (its step count) after its last data; the
// RECV, once it passed on that many steps and its consumers freed every register, has cancelled
// its receives and sent its last credits, and then sends `closed`. The SEND stops on `closed`
// with every register credited back; nothing of the channel is in flight any more.
using Message = comm::TagKind;
uint64_t tag_of(Message kind, int space, int channel, int register_index = 0, int64_t step = 0) {
  return comm::tag_prefix(kind, space, channel) | static_cast<uint64_t>(register_index & 0xff) << 32 |
         static_cast<uint64_t>(step & 0xffffffff);
}
constexpr uint64_t kChannelMask = comm::kTagPrefixMask;  // kind, space and channel
constexpr uint64_t kRegisterMask = ~uint64_t{0} << 32;
int register_of(uint64_t tag) { return static_cast<int>(tag >> 32 & 0xff); }
uint32_t step_of(uint64_t tag) { return static_cast<uint32_t>(tag); }

size_t bytes_of(const TensorType& type) { return static_cast<size_t>(type.shape.numel()) * size_of(type.dtype); }

// A little buffer that outlives the actor if a receive into it is still posted.
struct Word {
  uint64_t value = 0;
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
        // Bytes may arrive as soon as a receive is posted, and a RECV then messages its
        // consumers: so it posts none before the executor has spawned every actor.
        [this](start_atom) {
          if (spec_.kind == proto::SEND) post_credit_receive();
          if (spec_.kind == proto::RECV) start_receiving();
        },
        [this](ready_atom, int32_t input, int32_t index, int64_t step) {
          state_.on_ready(input, index, step);
          advance();
        },
        [this](ack_atom, int32_t output, int32_t index) {
          if (spec_.kind == proto::RECV) return on_recv_ack(index);
          state_.on_ack(output, index);
          advance();
        },
        [this](sent_atom, bool ok, const std::string& error) {
          if (!ok)
            return fail(ErrorCode::kFailedPrecondition,
                        concat(spec_.description, ": sending to rank ", spec_.peer_rank, " failed: ", error));
          sending_ = false;
          complete(sending_activation_);
          if (early_credit_) {
            early_credit_ = false;
            state_.on_ack(0, sending_activation_.output_registers[0]);
          }
          advance();
        },
        [this](credit_atom, int32_t index) {
          post_credit_receive();
          // The RECV may free a register before this SEND heard that its bytes left.
          if (sending_ && sending_activation_.output_registers[0] == index) {
            early_credit_ = true;
            return;
          }
          state_.on_ack(0, index);
          if (send_ended_) return maybe_stop_send();
          advance();
        },
        [this](closed_atom) {
          peer_closed_ = true;
          maybe_stop_send();
        },
        [this](arrived_atom, int32_t index, int64_t step) { on_arrived(index, step); },
        [this](collected_atom, const std::string& error) {
          if (!error.empty()) return fail(ErrorCode::kFailedPrecondition, concat(spec_.description, ": ", error));
          collecting_ = false;
          complete(collecting_activation_);
          advance();
        },
        [this](ended_atom, int64_t steps) {
          end_after_ = steps;
          maybe_end_recv();
        },
        [this](end_atom, int32_t input) {
          state_.on_end_of_stream(input);
          advance();
        },
        [this](abort_atom) {
          state_.on_abort();
          cancel_receives();
          quit();
        },
    };
  }

 private:
  // Acts as long as the protocol allows, then passes end of stream on once drained.
  void advance() {
    while (!sending_ && !collecting_ && state_.can_act()) {
      const ActorState::Activation activation = state_.begin();
      if (shared_->trace != nullptr) trace_begin_ = trace::now_us();
      if (spec_.kind == proto::SEND) {
        start_send(activation);
        return;  // one transfer at a time; its sent message continues
      }
      if (spec_.kind == proto::COLLECTIVE) {
        start_collective(activation);
        return;  // one collective at a time; its collected message continues
      }
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
      complete(activation);
    }
    if (state_.take_end_of_stream()) {
      for (const auto& consumers : spec_.consumers) {
        for (const Endpoint& consumer : consumers)
          send(shared_->actors[consumer.actor], end_atom::value, consumer.port);
      }
      if (spec_.kind == proto::SEND) {
        post_closed_receive();
        shared_->transport->send_value(spec_.peer_rank, tag_of(Message::end, shared_->tag_space, spec_.channel),
                                       static_cast<uint64_t>(state_.steps_done()));
        send_ended_ = true;
        return maybe_stop_send();
      }
      send(shared_->executor, stopped_atom::value, id_);
      quit();
    }
  }

  // A SEND stops once the RECV closed the channel and every credit is in: nothing is left on its
  // way, where the next plan on these tags would take it for its own.
  void maybe_stop_send() {
    if (!peer_closed_ || state_.output(0).in_use() > 0) return;
    cancel_receives();
    send(shared_->executor, stopped_atom::value, id_);
    quit();
  }

  // The activation's work is done: tell consumers, producers and the executor.
  void complete(const ActorState::Activation& activation) {
    shared_->activations.fetch_add(1, std::memory_order_relaxed);
    if (shared_->trace != nullptr) {
      shared_->trace->span(shared_->trace_base + id_, activation.step + shared_->step_offset, trace_begin_);
    }
    const ActorState::Messages messages = state_.finish(activation);
    for (const ActorState::Ready& ready : messages.ready) {
      if (spec_.kind == proto::SEND && ready.output == 0) continue;  // the bytes themselves told the RECV
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

  // SEND: its input register's bytes go into the RECV's register the activation names, which
  // the RECV freed (its credit) before this SEND could take it.
  void start_send(const ActorState::Activation& activation) {
    sending_ = true;
    sending_activation_ = activation;
    const int out = activation.output_registers[0];
    caf::actor_addr self = caf::actor_cast<caf::actor_addr>(this);  // weak: it may be gone
    shared_->transport->send(
        spec_.peer_rank, tag_of(Message::data, shared_->tag_space, spec_.channel, out, activation.step),
        spec_.input_registers[0][activation.input_registers[0]], bytes_of(spec_.input_types[0]),
        [self](const comm::Completion& done) {
          caf::anon_send(caf::actor_cast<caf::actor>(self), sent_atom::value, done.ok, done.error);
        },
        shared_->transport_group);
  }

  // COLLECTIVE: issued on the communicator, which reads the input register and writes the output
  // register until its worker posts `collected`.
  void start_collective(const ActorState::Activation& activation) {
    collecting_ = true;
    collecting_activation_ = activation;
    caf::actor_addr self = caf::actor_cast<caf::actor_addr>(this);  // weak: it may be gone
    spec_.collective->issue(*spec_.communicator, spec_.reduce_max ? comm::ReduceOp::max : comm::ReduceOp::sum,
                            spec_.input_registers[0][activation.input_registers[0]],
                            spec_.output_registers[0][activation.output_registers[0]],
                            [self](const std::string& error) {
                              caf::anon_send(caf::actor_cast<caf::actor>(self), collected_atom::value, error);
                            });
  }

  void post_closed_receive() {
    caf::actor_addr self = caf::actor_cast<caf::actor_addr>(this);  // weak: it may be gone
    auto word = std::make_shared<Word>();
    receives_[kClosedSlot] = shared_->transport->receive(
        tag_of(Message::closed, shared_->tag_space, spec_.channel), kChannelMask, &word->value, sizeof word->value,
        [self, word](const comm::Completion& done) {
          if (done.ok) caf::anon_send(caf::actor_cast<caf::actor>(self), closed_atom::value);
        },
        shared_->transport_group);
  }

  void post_credit_receive() {
    caf::actor_addr self = caf::actor_cast<caf::actor_addr>(this);  // weak: it may be gone
    auto word = std::make_shared<Word>();
    receives_[kCreditSlot] = (shared_->transport->receive(
        tag_of(Message::credit, shared_->tag_space, spec_.channel), kChannelMask, &word->value, sizeof word->value,
        [self, word](const comm::Completion& done) {
          if (done.ok)
            caf::anon_send(caf::actor_cast<caf::actor>(self), credit_atom::value,
                           static_cast<int32_t>(register_of(done.tag)));
        },
        shared_->transport_group));
  }

  // RECV: a receive is posted into every free register, and one for the SEND's end.
  void start_receiving() {
    outstanding_.assign(spec_.output_registers[0].size(), 0);
    posted_us_.assign(spec_.output_registers[0].size(), 0);
    for (size_t r = 0; r < outstanding_.size(); ++r) post_data_receive(static_cast<int>(r));
    caf::actor_addr self = caf::actor_cast<caf::actor_addr>(this);  // weak: it may be gone
    auto word = std::make_shared<Word>();
    receives_[kEndSlot] = (shared_->transport->receive(
        tag_of(Message::end, shared_->tag_space, spec_.channel), kChannelMask, &word->value, sizeof word->value,
        [self, word](const comm::Completion& done) {
          if (done.ok)
            caf::anon_send(caf::actor_cast<caf::actor>(self), ended_atom::value, static_cast<int64_t>(word->value));
        },
        shared_->transport_group));
  }

  void post_data_receive(int index) {
    caf::actor_addr self = caf::actor_cast<caf::actor_addr>(this);  // weak: it may be gone
    const size_t bytes = bytes_of(spec_.output_types[0]);
    if (shared_->trace != nullptr) posted_us_[index] = trace::now_us();
    receives_[index] = (shared_->transport->receive(
        tag_of(Message::data, shared_->tag_space, spec_.channel, index), kRegisterMask,
        spec_.output_registers[0][index], bytes,
        [self, index, bytes](const comm::Completion& done) {
          if (!done.ok) return;
          if (done.bytes != bytes) LOG(FATAL) << "a transfer brought " << done.bytes << " bytes, not " << bytes;
          caf::anon_send(caf::actor_cast<caf::actor>(self), arrived_atom::value, static_cast<int32_t>(index),
                         static_cast<int64_t>(step_of(done.tag)));
        },
        shared_->transport_group));
  }

  // Registers reach the consumers in step order, whatever order their bytes completed in.
  void on_arrived(int index, int64_t step32) {
    // The tag carries the step modulo 2^32; steps arrive within a few of the next one.
    const int64_t step = next_step_ + static_cast<int64_t>(static_cast<uint32_t>(step32 - next_step_));
    arrived_[step] = index;
    for (auto it = arrived_.find(next_step_); it != arrived_.end(); it = arrived_.find(next_step_)) {
      const int r = it->second;
      arrived_.erase(it);
      outstanding_[r] = static_cast<int>(spec_.consumers[0].size());
      for (const Endpoint& consumer : spec_.consumers[0]) {
        send(shared_->actors[consumer.actor], ready_atom::value, consumer.port, r, next_step_);
      }
      shared_->activations.fetch_add(1, std::memory_order_relaxed);
      if (shared_->trace != nullptr) {
        shared_->trace->span(shared_->trace_base + id_, next_step_ + shared_->step_offset, posted_us_[r]);
      }
      ++next_step_;
      if (outstanding_[r] == 0) free_register(r);
    }
    maybe_end_recv();
  }

  void on_recv_ack(int index) {
    CHECK_GT(outstanding_[index], 0) << spec_.description << ": an ack of a register no consumer holds";
    if (--outstanding_[index] == 0) free_register(index);
    if (ended_) maybe_stop_recv();
  }

  // Every consumer is done with register `index`: the SEND may use it again (after the end it
  // waits for exactly these credits), and it may receive again.
  void free_register(int index) {
    shared_->transport->send_value(spec_.peer_rank, tag_of(Message::credit, shared_->tag_space, spec_.channel, index),
                                   0);
    if (!ended_) post_data_receive(index);
  }

  // After the SEND's last step: end of stream to the consumers at once, and the RECV stops once
  // they freed every register (so that their credits went out).
  void maybe_end_recv() {
    if (ended_ || end_after_ < 0 || next_step_ < end_after_) return;
    ended_ = true;
    cancel_receives();
    for (const Endpoint& consumer : spec_.consumers[0])
      send(shared_->actors[consumer.actor], end_atom::value, consumer.port);
    maybe_stop_recv();
  }

  void maybe_stop_recv() {
    if (std::any_of(outstanding_.begin(), outstanding_.end(), [](int readers) { return readers > 0; })) return;
    // After the cancels and the credits on the transport's queue, so the SEND hears it last.
    shared_->transport->send_value(spec_.peer_rank, tag_of(Message::closed, shared_->tag_space, spec_.channel), 0);
    send(shared_->executor, stopped_atom::value, id_);
    quit();
  }

  void cancel_receives() {
    if (shared_->transport == nullptr) return;
    for (const auto& [slot, id] : receives_) shared_->transport->cancel(id);
    receives_.clear();
  }

  void fail(ErrorCode code, const std::string& message) {
    state_.on_abort();
    cancel_receives();
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
    spec_.kernel(KernelContext{inputs, outputs, spec_.attrs,
                               a.step + shared_->step_offset.load(std::memory_order_relaxed), shared_->training});
  }

  std::shared_ptr<Shared> shared_;
  int id_;
  const ActorSpec& spec_;
  ActorState state_;
  int64_t trace_begin_ = 0;  // tracing: when the activation under way began
  // SEND
  bool sending_ = false;
  bool early_credit_ = false;  // the RECV freed the register being sent before `sent` came
  bool send_ended_ = false;    // END went out; waiting for `closed` and the last credits
  bool peer_closed_ = false;
  ActorState::Activation sending_activation_;
  // COLLECTIVE
  bool collecting_ = false;
  ActorState::Activation collecting_activation_;
  // RECV
  std::vector<int64_t> posted_us_;  // tracing: when each register's receive was posted
  std::vector<int> outstanding_;    // per register: consumers still reading it
  std::map<int64_t, int> arrived_;  // step -> register, not yet handed on
  int64_t next_step_ = 0;
  int64_t end_after_ = -1;  // steps the SEND sent before it ended
  bool ended_ = false;
  // The receive last posted per slot: a register, kEndSlot or kCreditSlot (cancelling one that
  // completed does nothing).
  static constexpr int kEndSlot = -1, kCreditSlot = -2, kClosedSlot = -3;
  std::map<int, uint64_t> receives_;
};

std::string describe(const proto::ActorDef& actor) {
  const std::string what = actor.op().empty() ? proto::ActorKind_Name(actor.kind()) : actor.op();
  return concat(what, " '", actor.name(), "' (created at ", actor.location(), ")");
}

// A collective's attributes, checked: a plan's bytes may come from a file.
void set_collective(const proto::ActorDef& actor, ActorSpec& spec) {
  try {
    const std::optional<CollectiveKind> kind = parse_collective(actor.op());
    if (!kind) throw Error::InvalidArgument(concat("'", actor.op(), "' is not a collective"));
    if (spec.input_types.size() != 1 || spec.output_types.size() != 1)
      throw Error::InvalidArgument("a collective has one data input and one data output");
    const std::vector<int64_t>& ranks = spec.attrs.get_ints("member_ranks");
    const int64_t member = spec.attrs.get_int("member"), group = spec.attrs.get_int("group");
    if (spec.attrs.get_ints("members").size() != ranks.size())
      throw Error::InvalidArgument("members and member_ranks differ in length");
    if (group < 0 || group > std::numeric_limits<int>::max()) throw Error::InvalidArgument(concat("group ", group));
    spec.group = static_cast<int>(group);
    if (member < 0 || member >= static_cast<int64_t>(ranks.size()))
      throw Error::InvalidArgument(concat("member ", member, " of ", ranks.size()));
    spec.member = static_cast<int>(member);
    for (int64_t rank : ranks) {
      if (rank < 0 || rank > std::numeric_limits<int>::max())
        throw Error::InvalidArgument(concat("member rank ", rank));
      spec.member_ranks.push_back(static_cast<int>(rank));
    }
    const std::string& reduce = spec.attrs.get_string("reduce");
    const bool reduces = *kind == CollectiveKind::all_reduce || *kind == CollectiveKind::reduce_scatter;
    if (reduces ? reduce != "sum" && reduce != "max" : reduce != "none")
      throw Error::InvalidArgument(concat("reduce '", reduce, "' for ", actor.op()));
    spec.reduce_max = reduce == "max";
    spec.group_signature =
        concat(actor.op(), " reduce ", reduce, " box ", spec.attrs.get_shape("box"), " axes ",
               spec.attrs.get_int("from_axis"), " ", spec.attrs.get_int("to_axis"), " ", spec.output_types[0].dtype,
               " members ", spec.attrs.get_shape("members"), " on ranks ", spec.attrs.get_shape("member_ranks"));
    if (spec.input_types[0].dtype != spec.output_types[0].dtype)
      throw Error::InvalidArgument("its input and output dtypes differ");
    const auto small = [](int64_t value) { return static_cast<int>(std::clamp<int64_t>(value, -2, 1 << 20)); };
    spec.collective = std::make_shared<CollectiveLayout>(
        *kind, spec.attrs.get_shape("box"), small(spec.attrs.get_int("from_axis")),
        small(spec.attrs.get_int("to_axis")), static_cast<int>(ranks.size()), small(member), spec.output_types[0].dtype,
        spec.input_types[0].shape, spec.output_types[0].shape);
  } catch (const Error& error) {
    throw error.with_context(concat("invalid plan: ", spec.description));
  }
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
  spec.channel = actor.channel();
  spec.peer_rank = actor.peer_rank();
  // A step of this rank ends when its bytes left, and when its part of each collective is over.
  if (actor.kind() == proto::SEND || actor.kind() == proto::COLLECTIVE) spec.terminal = true;
  for (const proto::InputDef& input : actor.inputs()) {
    const proto::Endpoint& from = input.producer();
    if (from.rank() != rank.rank()) {  // a RECV's SEND, on another rank: the bytes arrive by themselves
      spec.producers.push_back({-1, from.port()});
      spec.inputs.push_back({});
      continue;
    }
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
      if (c.rank() != rank.rank()) continue;  // a SEND's RECV: reached through the transport
      consumers.push_back({layout.first_actor[c.device()] + c.actor(), c.port()});
    }
    spec.consumers.push_back(std::move(consumers));
    if (output.control()) continue;
    spec.output_types.push_back(tensor_type_from_proto(output.type()));
    spec.output_registers.push_back(registers_of(device, actor, output));
  }
  if (actor.kind() == proto::COLLECTIVE) set_collective(actor, spec);
  if (actor.kind() == proto::KERNEL || actor.kind() == proto::UPDATE) {
    const DType dispatch = dispatch_dtype(OpRegistry::global().find(actor.op()), spec.input_types, spec.output_types);
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
