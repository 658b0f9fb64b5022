// The actor protocol of DESIGN.md ("Actors and registers") as a plain state machine, with no
// threads and no CAF inside: a host delivers messages and runs kernels, and this class says
// when the actor may act and what it must send. Unit tests drive it message by message.
//
// An actor acts when every input has a ready register and every output has a free one. It
// then sends ready(register, step) to the consumers of each output and acks the input
// registers to their producers. A register is free again once every consumer acked it, so a
// producer runs at most `register_count` steps ahead of its slowest consumer.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

namespace tessel {

// The registers of one output: which are free, and how many consumers still read each.
class RegisterSlots {
 public:
  // `initial_tokens` registers start out published to every consumer, as if written by a step
  // before the first one: the producer side of an edge that orders step k after step k-1.
  RegisterSlots(int register_count, int consumer_count, int initial_tokens = 0);

  bool has_free() const { return !free_.empty(); }
  int acquire();                     // the oldest free register; CHECKs has_free()
  void publish(int register_index);  // hands it to every consumer (free at once if none)
  void ack(int register_index);      // one consumer is done; CHECKs the register was published
  void reset();                      // every register free (abort)
  int consumer_count() const { return consumer_count_; }
  int register_count() const { return static_cast<int>(pending_.size()); }
  int in_use() const { return register_count() - static_cast<int>(free_.size()); }

 private:
  int consumer_count_;
  std::vector<int> pending_;  // acks still missing per register; -1 while being written
  std::deque<int> free_;
};

class ActorState {
 public:
  struct InputSpec {
    // Registers queued before the first step (0 or more). Such an input carries step k-1 to
    // activation k: it orders this actor after another one's previous step, and it is not
    // waited on when draining (its last register is never consumed).
    int initial_tokens = 0;
  };
  struct OutputSpec {
    int register_count = 1;
    int consumer_count = 1;
    int initial_tokens = 0;  // matches InputSpec::initial_tokens of every consumer
  };
  enum class Phase { running, draining, done, aborted };

  ActorState(int input_count, std::vector<OutputSpec> outputs);
  ActorState(std::vector<InputSpec> inputs, std::vector<OutputSpec> outputs);

  // Messages in.
  void on_ready(int input, int register_index, int64_t step);
  void on_ack(int output, int register_index);
  void on_end_of_stream(int input);  // a source (no inputs) is stopped with input -1
  void on_abort();                   // stops at once: queued inputs are dropped and every register is freed

  bool can_act() const;

  struct Activation {
    int64_t step = 0;
    std::vector<int> input_registers;   // per input
    std::vector<int> output_registers;  // per output
  };
  // Takes a ready register of each input and a free one of each output; CHECKs can_act().
  Activation begin();

  struct Ready {
    int output, register_index;
    int64_t step;
  };
  struct Ack {
    int input, register_index;
  };
  struct Messages {
    std::vector<Ready> ready;  // to the consumers of each output
    std::vector<Ack> acks;     // to the producer of each input
  };
  // The kernel of `activation` ran: what to send. Nothing after an abort.
  Messages finish(const Activation& activation);

  // True exactly once, when the actor is done: the host then sends end-of-stream to its
  // consumers. Ask after every message and every finish().
  bool take_end_of_stream();

  Phase phase() const { return phase_; }
  int64_t steps_done() const { return steps_done_; }
  const RegisterSlots& output(int index) const { return outputs_[index]; }

 private:
  struct QueuedRegister {
    int register_index;
    int64_t step;
  };
  void update_phase();

  std::vector<std::deque<QueuedRegister>> ready_;  // per input
  std::vector<bool> input_ended_;
  std::vector<int> initial_tokens_;  // per input
  std::vector<RegisterSlots> outputs_;
  Phase phase_ = Phase::running;
  int64_t next_step_ = 0;
  int64_t steps_done_ = 0;
  int acting_ = 0;  // activations begun and not finished
  bool sent_end_of_stream_ = false;
};

}  // namespace tessel
