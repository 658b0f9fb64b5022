#include "actors/actor_state.h"

#include <glog/logging.h>

#include <algorithm>

namespace tessel {

RegisterSlots::RegisterSlots(int register_count, int consumer_count, int initial_tokens)
    : consumer_count_(consumer_count), pending_(register_count, 0) {
  CHECK_GE(register_count, 1) << "an output needs at least one register";
  CHECK(initial_tokens >= 0 && initial_tokens <= register_count) << "initial tokens exceed the registers";
  for (int i = 0; i < register_count; ++i) free_.push_back(i);
  for (int i = 0; i < initial_tokens; ++i) publish(acquire());
}

int RegisterSlots::acquire() {
  CHECK(has_free()) << "no free register";
  const int index = free_.front();
  free_.pop_front();
  pending_[index] = -1;
  return index;
}

void RegisterSlots::publish(int register_index) {
  CHECK_EQ(pending_[register_index], -1) << "register " << register_index << " published twice";
  pending_[register_index] = consumer_count_;
  if (consumer_count_ == 0) free_.push_back(register_index);
}

void RegisterSlots::ack(int register_index) {
  CHECK_GT(pending_[register_index], 0) << "ack of register " << register_index << " that no consumer holds";
  if (--pending_[register_index] == 0) free_.push_back(register_index);
}

void RegisterSlots::reset() {
  free_.clear();
  for (int i = 0; i < register_count(); ++i) pending_[i] = 0, free_.push_back(i);
}

ActorState::ActorState(int input_count, std::vector<OutputSpec> outputs)
    : ActorState(std::vector<InputSpec>(input_count), std::move(outputs)) {}

ActorState::ActorState(std::vector<InputSpec> inputs, std::vector<OutputSpec> outputs)
    : ready_(inputs.size()), input_ended_(inputs.size(), false) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int tokens = inputs[i].initial_tokens;
    initial_tokens_.push_back(tokens);
    for (int t = 0; t < tokens; ++t) ready_[i].push_back({t, t - tokens});
  }
  for (const OutputSpec& spec : outputs) {
    outputs_.emplace_back(spec.register_count, spec.consumer_count, spec.initial_tokens);
  }
}

void ActorState::on_ready(int input, int register_index, int64_t step) {
  if (phase_ == Phase::aborted) return;
  if (phase_ == Phase::done && initial_tokens_[input] > 0) return;  // the token after the last step
  CHECK(!input_ended_[input]) << "ready after end-of-stream on input " << input;
  CHECK(ready_[input].empty() || ready_[input].back().step < step) << "steps out of order on input " << input;
  ready_[input].push_back({register_index, step});
}

void ActorState::on_ack(int output, int register_index) {
  if (phase_ == Phase::aborted) return;
  outputs_[output].ack(register_index);
}

void ActorState::on_end_of_stream(int input) {
  if (phase_ == Phase::aborted) return;
  if (input >= 0) input_ended_[input] = true;
  if (phase_ == Phase::running) phase_ = Phase::draining;
  update_phase();
}

void ActorState::on_abort() {
  phase_ = Phase::aborted;
  for (auto& queue : ready_) queue.clear();
  for (RegisterSlots& slots : outputs_) slots.reset();
}

bool ActorState::can_act() const {
  if (phase_ == Phase::aborted || phase_ == Phase::done) return false;
  if (ready_.empty() && phase_ != Phase::running) return false;  // a source stops at end-of-stream
  for (const auto& queue : ready_) {
    if (queue.empty()) return false;
  }
  return std::all_of(outputs_.begin(), outputs_.end(), [](const RegisterSlots& s) { return s.has_free(); });
}

ActorState::Activation ActorState::begin() {
  CHECK(can_act()) << "begin() while the actor cannot act";
  Activation activation;
  activation.step = ready_.empty() ? next_step_ : ready_[0].front().step + initial_tokens_[0];
  for (size_t i = 0; i < ready_.size(); ++i) {
    auto& queue = ready_[i];
    CHECK_EQ(queue.front().step + initial_tokens_[i], activation.step) << "inputs disagree on the step";
    activation.input_registers.push_back(queue.front().register_index);
    queue.pop_front();
  }
  for (RegisterSlots& slots : outputs_) activation.output_registers.push_back(slots.acquire());
  next_step_ = activation.step + 1;
  ++acting_;
  return activation;
}

ActorState::Messages ActorState::finish(const Activation& activation) {
  Messages messages;
  --acting_;
  if (phase_ == Phase::aborted) return messages;
  for (size_t i = 0; i < activation.input_registers.size(); ++i) {
    messages.acks.push_back({static_cast<int>(i), activation.input_registers[i]});
  }
  for (size_t o = 0; o < outputs_.size(); ++o) {
    outputs_[o].publish(activation.output_registers[o]);
    messages.ready.push_back({static_cast<int>(o), activation.output_registers[o], activation.step});
  }
  ++steps_done_;
  update_phase();
  return messages;
}

bool ActorState::take_end_of_stream() {
  if (phase_ != Phase::done || sent_end_of_stream_) return false;
  sent_end_of_stream_ = true;
  return true;
}

void ActorState::update_phase() {
  if (phase_ != Phase::draining || acting_ > 0) return;
  // Drained once every input has ended and nothing queued is left to process.
  for (size_t i = 0; i < ready_.size(); ++i) {
    if (initial_tokens_[i] > 0) continue;
    if (!input_ended_[i] || !ready_[i].empty()) return;
  }
  phase_ = Phase::done;
}

}  // namespace tessel
