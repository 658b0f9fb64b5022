// Private to actors/: the CAF actor that hosts one plan actor, and what it shares with the
// executor. Includes CAF, so only actors/*.cc include it.
#pragma once

#include <atomic>
#include <caf/all.hpp>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "actors/actor_state.h"
#include "core/tensor.h"
#include "devices/cpu_device.h"
#include "ops/registry.h"
#include "proto/plan.pb.h"

namespace tessel::comm {
class Communicator;
class Transport;
}  // namespace tessel::comm

namespace tessel::trace {
class Recorder;
}

namespace tessel::hosting {

class CollectiveLayout;

// Messages between actors.
using ready_atom = caf::atom_constant<caf::atom("ready")>;  // (input, register, step)
using ack_atom = caf::atom_constant<caf::atom("ack")>;      // (output, register)
using end_atom = caf::atom_constant<caf::atom("end")>;      // (input): end of stream
using abort_atom = caf::atom_constant<caf::atom("abort")>;  // stop now, free every register
using start_atom = caf::atom_constant<caf::atom("start")>;  // every actor of the rank exists: SEND and RECV may listen
// Messages from actors to the executor.
using done_atom = caf::atom_constant<caf::atom("done")>;        // (actor, step): a terminal actor finished a step
using failed_atom = caf::atom_constant<caf::atom("failed")>;    // (error code, message)
using stopped_atom = caf::atom_constant<caf::atom("stopped")>;  // (actor): drained and gone
// Messages from the transport's progress thread to SEND and RECV actors.
using sent_atom = caf::atom_constant<caf::atom("sent")>;        // (ok, error): the SEND's transfer finished
using credit_atom = caf::atom_constant<caf::atom("credit")>;    // (register): the RECV freed it
using arrived_atom = caf::atom_constant<caf::atom("arrived")>;  // (register, step): bytes are in it
using ended_atom = caf::atom_constant<caf::atom("ended")>;      // (steps): the SEND sent that many and ended
using closed_atom = caf::atom_constant<caf::atom("closed")>;    // the RECV took its last bytes and sent its last credit
// From a communicator's worker to a COLLECTIVE actor.
using collected_atom = caf::atom_constant<caf::atom("collected")>;  // (error): the collective is over, "" if it worked

// `actor` is the actor's index over the whole rank (its devices' actors one after another).
struct Endpoint {
  int actor = 0, port = 0;
};

// What an actor needs from the plan, resolved once: kernels, addresses, peers.
struct ActorSpec {
  proto::ActorKind kind = proto::KERNEL;
  std::string description;  // "matmul 'fc1' (created at mlp.cc:12)"
  KernelFn kernel = nullptr;
  Attributes attrs;
  std::vector<TensorType> input_types, output_types;      // data ports only
  std::vector<std::vector<std::byte*>> input_registers;   // per data input, per producer register
  std::vector<std::vector<std::byte*>> output_registers;  // per data output, per register
  std::vector<ActorState::InputSpec> inputs;              // every input, the driver last
  std::vector<ActorState::OutputSpec> outputs;
  std::vector<Endpoint> producers;               // per plan input
  std::vector<std::vector<Endpoint>> consumers;  // per output
  int driver_input = -1;                         // the executor's input of a source
  bool terminal = false;                         // reports each finished step to the executor
  int fetch_index = -1;
  int device = 0;                    // index in the rank's devices
  std::vector<int64_t> feed_starts;  // INPUT: where its shard starts in the feed (empty: all of it)
  int channel = -1, peer_rank = -1;  // SEND and RECV
  // COLLECTIVE: its group (a communicator of the executor), its place in it, the ranks of the
  // members, and how its shards map onto the communicator's buffers.
  int group = -1, member = -1;
  std::vector<int> member_ranks;
  std::string group_signature;  // what every member of the group must agree on: op, layout, members
  bool reduce_max = false;
  std::shared_ptr<CollectiveLayout> collective;
  std::shared_ptr<comm::Communicator> communicator;  // set by the executor
};

// State every actor shares with the executor. Feeds and results cross between the executor's
// thread and the actors under a mutex; everything else is written before any actor starts.
struct Shared {
  std::vector<ActorSpec> specs;  // by index over the rank
  std::vector<caf::actor> actors;
  std::vector<CpuDevice*> devices;  // per device of the rank: its kernel threads (nullptr: the process's)
  caf::actor executor;
  comm::Transport* transport = nullptr;  // SEND and RECV move bytes through it
  int tag_space = 0;                     // keeps the channels of plans sharing a transport apart
  uint64_t transport_group = 0;          // this executor's transfers (Transport::forget_group)
  bool training = true;
  std::mutex mutex;
  std::map<std::pair<int, int64_t>, HostTensor> feeds;  // (actor, step) -> value
  std::map<int64_t, std::vector<HostTensor>> results;   // step -> fetched values
  std::atomic<int64_t> activations{0};
  // Added to the executor's own step count to give the step kernels see (Executor::set_steps_done):
  // steps stay numbered from 0 between actors, and a restored run's optimizer and dropout go on
  // from the restored step.
  std::atomic<int64_t> step_offset{0};
  // TESSEL_PROFILE=1: time spent in each actor's activations, printed when the executor stops.
  bool profile = false;
  std::vector<int64_t> nanoseconds;  // per actor, written only by that actor
  // Tracing (actors/trace.h): null when off, the one branch an activation pays; the actors'
  // ids in the recorder start at trace_base.
  trace::Recorder* trace = nullptr;
  int trace_base = 0;
};

// Where the actors, arenas and variable arenas of each device of a rank are.
struct RankLayout {
  std::vector<int> first_actor;       // per device: the rank-wide index of its actor 0
  std::vector<std::byte*> arenas;     // per device
  std::vector<std::byte*> variables;  // per device
};

// What actor `id` of device `device` of `rank` needs, resolved once: its kernel, register
// addresses in the arenas (a VARIABLE actor's storage in the variable arena), and its peers
// by rank-wide index. Error for an op without a CPU kernel for its dtype, naming the actor.
ActorSpec spec_of(const proto::RankPlan& rank, int device, int id, const RankLayout& layout);

// Spawns the CAF actor for plan actor `id`; it acts on ready, ack, end and abort messages and
// reports to shared->executor.
caf::actor spawn_plan_actor(caf::actor_system& system, std::shared_ptr<Shared> shared, int id);

}  // namespace tessel::hosting
