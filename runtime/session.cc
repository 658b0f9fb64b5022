#include "runtime/session.h"

#include <glog/logging.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "actors/executor.h"
#include "comm/job.h"
#include "devices/arena.h"
#include "graph/proto_conversion.h"
#include "graph/relayout.h"
#include "runtime/interpreter.h"
#include "runtime/recovery.h"

namespace tessel {
namespace {

// One device's shard of a variable, and where it lives in that device's variable arena.
struct VariableShard {
  int device = 0;
  TensorType type;
  int64_t offset = 0;
  std::vector<int64_t> starts;   // in the whole variable
  bool writes = false;           // this copy goes into checkpoints
  std::vector<int> slice_ranks;  // the ranks that hold this slice
};

struct VariableSlot {
  TensorType type;                    // the whole variable
  std::vector<VariableShard> shards;  // on this rank
  bool elsewhere = false;             // other ranks hold shards of it too
  std::string layout;
};

// "the largest is 'w' [1024, 4096] f32, 16777216 bytes": to name what a failed allocation holds.
std::string describe_largest(const proto::DevicePlan& device) {
  const proto::VariableDef* largest = nullptr;
  int64_t largest_bytes = -1;
  for (const proto::VariableDef& def : device.variables()) {
    const TensorType type = tensor_type_from_proto(def.type());
    const int64_t bytes = type.shape.numel() * static_cast<int64_t>(size_of(type.dtype));
    if (bytes > largest_bytes) largest = &def, largest_bytes = bytes;
  }
  if (largest == nullptr) return "no variables";
  const TensorType type = tensor_type_from_proto(largest->type());
  return concat("the largest is '", largest->name(), "' ", type.shape, " ", type.dtype, ", ", largest_bytes, " bytes");
}

// A job of several ranks: this rank compiles its own share only.
// Marks a session busy for one call: a second call while one runs (from another thread, or from
// a feed or step callback) would deadlock on the executor, so it is refused.
class OneCallAtATime {
 public:
  OneCallAtATime(std::atomic<bool>& busy, const char* call) : busy_(busy) {
    if (busy_.exchange(true)) {
      throw Error::FailedPrecondition(concat("Session::", call,
                                             " was called while another call of this session ran (on "
                                             "another thread, or from its feed or step callback); a session runs one "
                                             "call at a time"));
    }
  }
  ~OneCallAtATime() { busy_ = false; }
  OneCallAtATime(const OneCallAtATime&) = delete;
  OneCallAtATime& operator=(const OneCallAtATime&) = delete;

 private:
  std::atomic<bool>& busy_;
};

// The layout every member of a recovering job re-lays the graph from: its placements as the job's
// first members built it, over `devices` devices, `devices_per_rank` of them per rank.
struct FirstLayout {
  uint64_t fingerprint = 0;  // the graph's ops, edges and shapes, placements aside
  int devices = 1, devices_per_rank = 1;
  std::string placement;                            // where what nothing pins lives
  std::vector<std::pair<int, std::string>> pinned;  // node id -> its placement
};

// FNV-1a over what two ranks running one program agree on, whatever devices each counted.
uint64_t fingerprint(const Graph& graph) {
  uint64_t hash = 1469598103934665603ull;
  const auto mix = [&](int64_t value) {
    for (int i = 0; i < 8; ++i) hash = (hash ^ static_cast<uint8_t>(value >> (8 * i))) * 1099511628211ull;
  };
  for (const Node& node : graph.nodes()) {
    for (char c : node.op) mix(c);
    mix(node.attrs.has("placement"));
    for (const TensorRef& input : node.inputs) mix(input.node), mix(input.output);
    for (const TensorType& output : node.outputs) {
      mix(static_cast<int64_t>(output.dtype));
      for (int64_t extent : output.shape.dims()) mix(extent);
    }
  }
  return hash;
}

FirstLayout first_layout(const Graph& graph, const Placement& placement, int devices_per_rank) {
  FirstLayout layout{.fingerprint = fingerprint(graph),
                     .devices = devices_spanned(graph, placement),
                     .devices_per_rank = devices_per_rank,
                     .placement = placement.to_string(),
                     .pinned = {}};
  for (const Node& node : graph.nodes()) {
    if (node.attrs.has("placement")) layout.pinned.emplace_back(node.id, node.attrs.get_string("placement"));
  }
  return layout;
}

void put_text(std::vector<int64_t>& words, const std::string& text) {
  words.push_back(static_cast<int64_t>(text.size()));
  const size_t at = words.size();
  words.resize(at + (text.size() + 7) / 8, 0);
  std::memcpy(words.data() + at, text.data(), text.size());
}

std::vector<int64_t> encode(const FirstLayout& layout) {
  std::vector<int64_t> words = {static_cast<int64_t>(layout.fingerprint), layout.devices, layout.devices_per_rank};
  put_text(words, layout.placement);
  words.push_back(static_cast<int64_t>(layout.pinned.size()));
  for (const auto& [node, placement] : layout.pinned) {
    words.push_back(node);
    put_text(words, placement);
  }
  return words;
}

// What encode() wrote, on another rank: every count is checked against what is there.
FirstLayout decode(const std::vector<int64_t>& words, const Graph& graph) {
  size_t at = 0;
  const auto next = [&](int64_t low, int64_t high, const char* what) {
    if (at >= words.size() || words[at] < low || words[at] > high) {
      throw Error::DataLoss(concat("recovery: rank 0's layout is damaged at word ", at, " (", what, ")"));
    }
    return words[at++];
  };
  const auto text = [&] {
    const auto length = static_cast<size_t>(next(0, 1 << 16, "a text's length"));
    if ((words.size() - at) * 8 < length) throw Error::DataLoss("recovery: rank 0's layout is truncated");
    std::string result(length, '\0');
    std::memcpy(result.data(), words.data() + at, length);
    at += (length + 7) / 8;
    return result;
  };
  FirstLayout layout;
  if (words.empty()) throw Error::DataLoss("recovery: rank 0 sent no layout");
  layout.fingerprint = static_cast<uint64_t>(words[at++]);
  layout.devices = static_cast<int>(next(1, 1 << 20, "devices"));
  layout.devices_per_rank = static_cast<int>(next(1, layout.devices, "devices per rank"));
  layout.placement = text();
  const int64_t pinned = next(0, graph.num_nodes(), "pinned nodes");
  for (int64_t i = 0; i < pinned; ++i) {
    const int node = static_cast<int>(next(0, graph.num_nodes() - 1, "a node"));
    layout.pinned.emplace_back(node, text());
  }
  return layout;
}

PlanOptions with_ranks(PlanOptions options, const SessionOptions& session) {
  if (options.ranks == 1) options.ranks = session.ranks;
  if (options.ranks > 1 && options.rank < 0) options.rank = session.rank;
  return options;
}

}  // namespace

struct Session::Impl {
  Impl(Graph& graph, const PlanOptions& plan_options, const SessionOptions& given)
      : graph(graph),
        options(with_job(given)),
        fetches(plan_options.fetches),
        plan_options(with_ranks(plan_options, options)) {
    if (options.use_interpreter) {
      interpreter = std::make_unique<Interpreter>(graph);
      return;
    }
    const bool joining = recovering() && options.job->joined_running();
    if (!joining) build(/*initialize=*/true);
    if (!recovering()) return;
    if (options.snapshot_every < 0) {
      throw Error::InvalidArgument(concat("SessionOptions::snapshot_every is ", options.snapshot_every,
                                          ", expected 0 (as often as costs under 5% of the steps) or more"));
    }
    const int devices = devices_spanned(graph, this->plan_options.placement);
    if (devices % this->plan_options.ranks != 0 && !joining) {
      throw Error::InvalidArgument(concat("recovery keeps each rank's devices, but the graph's ", devices,
                                          " devices do not divide evenly over ", this->plan_options.ranks, " ranks"));
    }
    // A member that joined takes the first members' layout (agree_on_layout) and its state from them.
    origin = first_layout(graph, this->plan_options.placement, std::max(1, devices / this->plan_options.ranks));
    options.job->on_epoch_end([this](const std::string& why) { interrupt(why); });
    if (joining) {
      {
        std::lock_guard<std::mutex> lock(interrupt_mutex);
        heard_at = std::chrono::system_clock::now();
        heard_steady = std::chrono::steady_clock::now();
        heard_why = concat("member ", options.job->member(), " (this one) joined the running job");
      }
      joined = recover();  // told to on_membership_change as the first run() begins
      joined->joined = true;
      return;
    }
    memory.begin_epoch(share(), recovery_channel());
    snapshot(executor->steps_done());
  }

  ~Impl() {
    if (options.job != nullptr) options.job->on_epoch_end({});
  }

  static SessionOptions with_job(SessionOptions options) {
    if (options.job == nullptr) return options;
    options.ranks = options.job->world_size();
    options.rank = options.job->rank();
    options.transport = &options.job->transport();
    return options;
  }

  bool recovering() const { return options.job != nullptr && options.job->recovery() && !interpreter; }

  // Compiles this rank's share of the plan for the current ranks, lays out its variables and
  // makes its executor; with `initialize`, the variables take their initial values.
  void build(bool initialize) {
    slots.clear();
    evaluation.clear();
    executor.reset();
    variables.clear();
    plan = compile_plan(graph, plan_options);
    const proto::RankPlan& rank = share_of(plan, options.rank);
    std::map<std::string, Attributes> attrs;  // each variable's node attributes (its initializer)
    for (int d = 0; d < rank.devices_size(); ++d) {
      const proto::DevicePlan& device = rank.devices(d);
      try {
        variables.push_back(std::make_unique<HostArena>(device.variable_arena_bytes()));
      } catch (const Error& error) {
        throw error.with_context(concat("the variables of ", device.device(), " (", describe_largest(device), ")"));
      }
      for (const proto::VariableDef& def : device.variables()) {
        const TensorType shard = tensor_type_from_proto(def.type());
        VariableSlot& slot = slots[def.name()];
        slot.type = def.has_logical_type() ? tensor_type_from_proto(def.logical_type()) : shard;
        std::vector<int64_t> starts(def.starts().begin(), def.starts().end());
        starts.resize(shard.shape.rank(), 0);
        std::vector<int> slice_ranks(def.slice_ranks().begin(), def.slice_ranks().end());
        if (slice_ranks.empty()) slice_ranks.push_back(options.rank);
        slot.shards.push_back({d, shard, def.offset(), std::move(starts), def.writes_checkpoint(), slice_ranks});
        slot.elsewhere |= def.elsewhere();
        slot.layout = def.layout();
        if (slot.shards.size() == 1) attrs[def.name()] = attributes_from_proto(def.attrs());
      }
    }
    for (const Node& node : graph.nodes()) {  // variables that live on other ranks only
      if (node.op != "variable") continue;
      VariableSlot& slot = slots[node.attrs.get_string("name")];
      if (!slot.shards.empty()) continue;
      slot.type = node.outputs[0];
      slot.elsewhere = true;
    }
    for (const auto& [name, slot] : slots) {
      if (slot.shards.empty() || !initialize) continue;
      Node node{.op = "variable", .name = name, .attrs = attrs.at(name), .outputs = {slot.type}};
      write_shards(slot, initial_value(node, graph.seed()));
    }
    executor = make_executor(plan, 0);
  }

  // This rank's slices of every variable, for recovery's memory.
  recovery::Share share() const {
    recovery::Share result{
        .epoch = options.job->epoch(), .rank = options.rank, .ranks = plan_options.ranks, .node = options.job->node()};
    const std::vector<checkpoint::LocalVariable> all = checkpoint::variables_of(graph);
    for (size_t v = 0; v < all.size(); ++v) {
      result.names.push_back(all[v].name);
      result.whole_shapes.push_back(all[v].shape);
      result.element_bytes.push_back(size_of(all[v].dtype));
      const VariableSlot& found = slot(all[v].name);
      std::map<std::vector<int64_t>, size_t> by_starts;  // each slice once, with every device's copy
      for (const VariableShard& shard : found.shards) {
        std::byte* bytes = variables[shard.device]->data() + shard.offset;
        auto [it, fresh] = by_starts.emplace(shard.starts, result.slices.size());
        if (fresh) {
          result.slices.push_back({.variable = static_cast<int>(v),
                                   .starts = shard.starts,
                                   .shape = shard.type.shape,
                                   .copies = {bytes},
                                   .ranks = shard.slice_ranks});
        } else {
          result.slices[it->second].copies.push_back(bytes);
        }
      }
    }
    return result;
  }

  // Recovery's channel of this epoch. Made after the epoch ended (the handler found nothing to
  // abort), it is born aborted.
  checkpoint::RankChannel& recovery_channel() {
    if (!recovery) {
      std::lock_guard<std::mutex> lock(interrupt_mutex);
      recovery = std::make_unique<checkpoint::RankChannel>(plan_options.ranks, options.rank, options.transport, 1);
      if (options.job->epoch_ended()) recovery->abort("the job's membership changed");
    }
    return *recovery;
  }

  // On a job thread, when the job's epoch ended: stop what waits on the old membership.
  void interrupt(const std::string& why) {
    std::lock_guard<std::mutex> lock(interrupt_mutex);
    if (heard_steady <= recovered_at) {  // the first loss since the last recovery: its phases count from here
      heard_at = std::chrono::system_clock::now();
      heard_steady = std::chrono::steady_clock::now();
      heard_why = why;
    } else if (heard_why.find(why) == std::string::npos) {  // another change before the job re-formed
      heard_why += "; then " + why;
    }
    if (executor) executor->interrupt(why);
    if (recovery) recovery->abort(why);
    if (channel) channel->abort(why);
  }

  // After the job's epoch ended: abort, re-form, re-plan on the devices that remain, restore and
  // go on. Returns the step the state was restored to. Another loss on the way starts it again.
  MembershipChange recover() {
    comm::Job& job = *options.job;
    MembershipChange change;
    for (int attempt = 0;; ++attempt) {
      const auto since = [&] {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - heard_steady).count();
      };
      if (attempt == 0) {
        std::lock_guard<std::mutex> lock(interrupt_mutex);
        if (heard_steady <= recovered_at) {  // the epoch ended before the handler ran
          heard_steady = std::chrono::steady_clock::now();
          heard_at = std::chrono::system_clock::now();
        }
        change.why = heard_why;
        change.heard_at_unix_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(heard_at.time_since_epoch()).count();
      }
      // Abort: every actor, the channels, a save in flight (abandoned).
      {
        std::lock_guard<std::mutex> lock(interrupt_mutex);
        if (executor) executor->abandon("the job's membership changed");
        for (auto& [fetch_list, evaluated] : evaluation) evaluated.executor->abandon("the job's membership changed");
        if (recovery) recovery->abort("the job's membership changed");
        if (channel) channel->abort("the job's membership changed");
      }
      if (pending.valid()) {
        try {
          pending.get();
        } catch (const std::exception& error) {
          LOG(WARNING) << "the checkpoint in flight was abandoned: " << error.what();
        }
      }
      change.abort_ms = since();
      // Closes the old transport: nothing the old actors sent can land any more. (A member that
      // just joined formed its first epoch already.)
      if (job.epoch_ended()) job.reform();
      change.reform_ms = since();
      {
        std::lock_guard<std::mutex> lock(interrupt_mutex);
        executor.reset();
        evaluation.clear();
        recovery.reset();
        channel.reset();
        last_snapshot.reset();
      }
      options.ranks = plan_options.ranks = job.world_size();
      options.rank = plan_options.rank = job.rank();
      options.transport = &job.transport();
      int devices = 0;
      try {
        devices = lay_out();
        {
          std::lock_guard<std::mutex> lock(interrupt_mutex);
          build(/*initialize=*/false);
          // The epoch may have ended before this executor existed: the handler could not stop it.
          if (job.epoch_ended()) executor->interrupt("the job's membership changed");
        }
        change.replan_ms = since();
        std::string missing;
        int64_t step = memory.restore(share(), recovery_channel(), &missing);
        change.source = "memory";
        if (step < 0) {
          if (options.checkpoint_dir.empty() || checkpoint::list(options.checkpoint_dir).empty()) {
            throw Error::FailedPrecondition(
                concat("recovery cannot restore the variables: ", missing,
                       ", and there is no checkpoint to fall back on (set checkpoint_dir)"));
          }
          LOG(WARNING) << "recovery: " << missing << "; restoring the newest checkpoint instead";
          std::vector<HostTensor> copies;
          const CheckpointInfo info =
              checkpoint::restore(options.checkpoint_dir, local_variables(copies), graph, rank_channel());
          step = info.step;
          change.source = info.path;
        }
        executor->set_steps_done(step);
        change.resumed_at = step;
        memory.begin_epoch(share(), recovery_channel());
        snapshot(step);
      } catch (const Error& error) {
        // A peer that moved on to the next epoch closed its transport: a send to it may fail
        // before this rank hears of that epoch.
        if (!lost_a_member(error)) throw;
        LOG(WARNING) << "recovery: the membership changed again while restoring (" << error.what() << "); again";
        continue;
      }
      change.restore_ms = since();
      {
        std::lock_guard<std::mutex> lock(interrupt_mutex);
        change.why = heard_why;  // with the changes heard while re-forming
      }
      change.epoch = job.epoch();
      change.ranks = plan_options.ranks;
      change.rank = options.rank;
      change.devices = devices;
      recovered_at = std::chrono::steady_clock::now();
      return change;
    }
  }

  // Every member together, in a new epoch: all take rank 0's first layout (the same as their own,
  // but for a member that joined, whose program counted other devices), and re-lay the graph
  // from it over the devices the ranks have now. Re-laying from the first layout, not from the
  // last, brings a job that lost ranks and got them back to the plan it began with. Returns the
  // devices the plan spans.
  int lay_out() {
    const std::vector<std::vector<int64_t>> layouts =
        recovery_channel().all_gather(encode(origin), "agree on the job's first layout");
    FirstLayout agreed = decode(layouts.at(0), graph);
    if (agreed.fingerprint != fingerprint(graph)) {
      throw Error::FailedPrecondition(
          "this rank's graph differs from the job's (other ops or shapes than rank 0's): a rank that joins a "
          "running job must build the same model");
    }
    origin = std::move(agreed);
    const int to = origin.devices_per_rank * plan_options.ranks;
    for (const auto& [node, placement] : origin.pinned) {
      graph.mutable_node(node).attrs.set("placement",
                                         relaid_placement(Placement::parse(placement), origin.devices, to).to_string());
    }
    plan_options.placement = relaid_placement(Placement::parse(origin.placement), origin.devices, to);
    return to;
  }

  std::unique_ptr<Executor> make_executor(const proto::Plan& for_plan, int tag_space) const {
    std::vector<std::byte*> arenas;
    for (const auto& arena : variables) arenas.push_back(arena->data());
    return std::make_unique<Executor>(for_plan, options.rank, std::move(arenas),
                                      ExecutorOptions{.worker_threads = options.worker_threads,
                                                      .kernel_threads_per_device = options.kernel_threads_per_device,
                                                      .steps_in_flight = options.steps_in_flight,
                                                      .transport = options.transport,
                                                      .tag_space = tag_space});
  }

  // Each shard takes its box of `value` (a whole variable).
  void write_shards(const VariableSlot& slot, const HostTensor& value) const {
    for (const VariableShard& shard : slot.shards) {
      copy_block(static_cast<const std::byte*>(value.raw()), value.shape(), shard.starts,
                 variables[shard.device]->data() + shard.offset, shard.type.shape,
                 std::vector<int64_t>(shard.type.shape.rank(), 0), shard.type.shape.dims(), size_of(value.dtype()));
    }
  }

  // The whole variable from its shards (a broadcast variable's copies are equal).
  HostTensor read_shards(const VariableSlot& slot) const {
    HostTensor value(slot.type.shape, slot.type.dtype);
    for (const VariableShard& shard : slot.shards) {
      copy_block(variables[shard.device]->data() + shard.offset, shard.type.shape,
                 std::vector<int64_t>(shard.type.shape.rank(), 0), static_cast<std::byte*>(value.raw()), value.shape(),
                 shard.starts, shard.type.shape.dims(), size_of(value.dtype()));
    }
    return value;
  }

  const VariableSlot& slot(const std::string& name) const {
    auto it = slots.find(name);
    if (it == slots.end()) throw Error::NotFound(concat("the graph has no variable named '", name, "'"));
    return it->second;
  }

  // A slot whose every shard is on this rank.
  const VariableSlot& whole_slot(const std::string& name) const {
    const VariableSlot& found = slot(name);
    if (found.elsewhere || found.shards.empty()) {
      throw Error::FailedPrecondition(concat("variable '", name, "' has shards on other ranks, not only on rank ",
                                             options.rank, "; read this rank's part with local_shards()"));
    }
    return found;
  }

  // The graph's variables with this rank's shards, for a checkpoint. With the interpreter, each
  // is one whole shard whose bytes are a copy in `copies` (written back by the caller).
  std::vector<checkpoint::LocalVariable> local_variables(std::vector<HostTensor>& copies) const {
    std::vector<checkpoint::LocalVariable> result = checkpoint::variables_of(graph);
    copies.reserve(result.size());
    const proto::RankPlan* share = interpreter ? nullptr : &share_of(plan, options.rank);
    for (checkpoint::LocalVariable& variable : result) {
      if (interpreter) {
        copies.push_back(interpreter->variable(variable.name));
        variable.layout = "B on cpu:0";
        variable.shards.push_back({.device = "cpu:0",
                                   .starts = std::vector<int64_t>(variable.shape.rank(), 0),
                                   .shape = variable.shape,
                                   .writes = true,
                                   .data = static_cast<std::byte*>(copies.back().raw())});
        continue;
      }
      const VariableSlot& found = slot(variable.name);
      variable.layout = found.layout;
      for (const VariableShard& shard : found.shards) {
        variable.shards.push_back({.device = share->devices(shard.device).device(),
                                   .starts = shard.starts,
                                   .shape = shard.type.shape,
                                   .writes = shard.writes,
                                   .data = variables[shard.device]->data() + shard.offset});
      }
    }
    return result;
  }

  checkpoint::RankChannel& rank_channel() {
    if (!channel) {
      std::lock_guard<std::mutex> lock(interrupt_mutex);
      channel = std::make_unique<checkpoint::RankChannel>(plan_options.ranks, options.rank, options.transport);
      if (options.job != nullptr && options.job->epoch_ended()) channel->abort("the job's membership changed");
    }
    return *channel;
  }

  // Copies the shards and hands the writing to a background thread (after the save before it).
  void save(const std::string& root, std::map<std::string, int64_t> data) {
    if (root.empty()) throw Error::InvalidArgument("save(): expected a checkpoint directory, got an empty path");
    if (pending.valid()) pending.get();  // at most one save in flight; its error surfaces here
    std::vector<HostTensor> copies;
    const int64_t step = interpreter ? interpreter->step() : executor->steps_done();
    auto snapshot = std::make_shared<checkpoint::Snapshot>(
        checkpoint::take_snapshot(local_variables(copies), step, std::move(data), last_snapshot.get()));
    last_snapshot = snapshot;  // the save before is over: the next one copies into these buffers
    checkpoint::RankChannel& ranks = rank_channel();
    pending = std::async(std::launch::async, [this, root, snapshot, &ranks] {
      // The writer runs at the lowest priority: in the gaps of training's threads, not in place of them.
      ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
      return checkpoint::write(root, *snapshot, graph, ranks, options.keep_checkpoints);
    });
  }

  void save_now() {
    save(options.checkpoint_dir, options.data_position ? options.data_position() : std::map<std::string, int64_t>{});
  }

  // run() with recovery: steps go in chunks to each snapshot (and checkpoint) boundary; a lost
  // member sends it through recover() and on from the restored step, to the same last step.
  std::vector<std::vector<HostTensor>> run_recovering(int64_t steps, const FeedFn& feed, const StepFn& on_step) {
    const int64_t first = executor->steps_done(), last = first + steps;
    std::map<int64_t, std::vector<HostTensor>> outputs;  // by step: a step run again replaces its values
    bool ran_out = false;
    std::optional<MembershipChange> reported;  // a recovery whose first step is not done yet
    if (joined) {                              // this member joined the running job, and its state came from the others
      reported = std::exchange(joined, std::nullopt);
      if (options.on_membership_change) options.on_membership_change(*reported);
    }
    const StepFn record = [&](int64_t step, const std::vector<HostTensor>& values) {
      if (step >= first) outputs[step] = values;
      if (reported) {
        reported->first_step_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - heard_steady).count();
        LOG(WARNING) << reported->to_string();
        reported.reset();
      }
      if (on_step) on_step(step, values);
    };
    const int64_t saves = options.checkpoint_dir.empty() ? 0 : options.checkpoint_every;
    while (!ran_out && executor->steps_done() < last) {
      try {
        if (options.job->epoch_ended()) throw Error::Aborted("the job's membership changed between steps");
        const int64_t done = executor->steps_done();
        int64_t count = std::min(last - done, std::max<int64_t>(1, last_memory_snapshot + snapshot_interval - done));
        if (saves > 0) count = std::min(count, saves - done % saves);
        const auto started = std::chrono::steady_clock::now();
        const size_t ran = executor->run(count, feed, record).size();
        ran_out = static_cast<int64_t>(ran) < count;
        const int64_t now = executor->steps_done();
        if (ran > 0) {
          step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() /
                         static_cast<double>(ran);
        }
        if (ran > 0 && now >= last_memory_snapshot + snapshot_interval) snapshot(now);
        if (ran > 0 && saves > 0 && now % saves == 0) save_now();
      } catch (const Error& error) {
        if (!lost_a_member(error)) throw;
        reported = recover();
        // Values of steps after the restored one come again.
        outputs.erase(outputs.lower_bound(reported->resumed_at), outputs.end());
        if (options.on_membership_change) options.on_membership_change(*reported);
        ran_out = false;
      }
    }
    if (reported) LOG(WARNING) << reported->to_string();  // no step after it
    std::vector<std::vector<HostTensor>> result;
    for (auto& [step, values] : outputs) result.push_back(std::move(values));
    return result;
  }

  // A snapshot in memory at `step`, and the steps until the next one: SessionOptions::snapshot_every,
  // or with 0 as many as keep a snapshot's cost under 5% of the steps between two (the ranks take
  // the largest of their estimates).
  void snapshot(int64_t step) {
    const auto started = std::chrono::steady_clock::now();
    const int64_t proposal = options.snapshot_every > 0 ? options.snapshot_every : snapshot_proposal;
    snapshot_interval = memory.snapshot(step, recovery_channel(), proposal);
    last_memory_snapshot = step;  // the same on every rank: snapshots are taken together
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (options.snapshot_every == 0 && step_seconds > 0) {
      snapshot_proposal = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(seconds / (0.05 * step_seconds))), 1,
                                              kMaxSnapshotInterval);
    }
  }

  // Whether `error` came of a lost member: the job's epoch ended, now or within a heartbeat
  // deadline (a transfer to a dead peer may fail before the coordinator has said so). Errors in
  // the caller's own input are never that.
  bool lost_a_member(const Error& error) const {
    const ErrorCode code = error.code();
    if (code == ErrorCode::kInvalidArgument || code == ErrorCode::kShapeMismatch || code == ErrorCode::kNotFound ||
        code == ErrorCode::kOutOfRange)
      return false;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration<double>(2 * options.job->heartbeat_deadline_seconds() + 1);
    while (!options.job->epoch_ended() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return options.job->epoch_ended();
  }

  struct EvaluationPlan {
    proto::Plan plan;
    std::unique_ptr<Executor> executor;
  };

  Graph& graph;
  SessionOptions options;
  std::vector<Tensor> fetches;
  std::unique_ptr<Interpreter> interpreter;
  proto::Plan plan;
  PlanOptions plan_options;
  std::vector<std::unique_ptr<HostArena>> variables;  // per device of the plan
  std::map<std::string, VariableSlot> slots;
  std::map<std::vector<Tensor>, EvaluationPlan> evaluation;
  std::unique_ptr<Executor> executor;                   // after `variables` and `evaluation`: destroyed first
  std::atomic<bool> busy{false};                        // a run or evaluate is under way
  std::unique_ptr<checkpoint::RankChannel> channel;     // made by the first save or restore
  std::future<CheckpointInfo> pending;                  // the save in flight (it uses `channel`)
  std::shared_ptr<checkpoint::Snapshot> last_snapshot;  // its bytes, reused by the next save
  // Recovery (SessionOptions::job).
  FirstLayout origin;                      // the layout every epoch's plan is re-laid from
  std::optional<MembershipChange> joined;  // a member that joined: its restore, for the first run()
  recovery::Memory memory;
  std::unique_ptr<checkpoint::RankChannel> recovery;  // recovery's exchanges, this epoch
  std::mutex interrupt_mutex;  // the job's thread against executor, channel and recovery changing
  std::chrono::system_clock::time_point heard_at{};
  std::chrono::steady_clock::time_point heard_steady{};
  std::chrono::steady_clock::time_point recovered_at{};  // the end of the last recovery
  std::string heard_why;
  // Snapshots' pace: steps between two (agreed by the ranks), this rank's next proposal, and the
  // last measured time of a step.
  static constexpr int64_t kMaxSnapshotInterval = 1000;
  int64_t snapshot_interval = 1, snapshot_proposal = 1, last_memory_snapshot = 0;
  double step_seconds = 0;
};

std::string MembershipChange::to_string() const {
  char phases[256];
  std::snprintf(phases, sizeof phases,
                "abort %.0f ms, re-form %.0f ms, re-plan %.0f ms, restore %.0f ms, first step done %.0f ms", abort_ms,
                reform_ms - abort_ms, replan_ms - reform_ms, restore_ms - replan_ms, first_step_ms);
  if (joined) {
    return concat("joined: epoch ", epoch, " (", why, "); now rank ", rank, " of ", ranks, " over ", devices,
                  " devices, resumed at step ", resumed_at, " from ", source, "; heard at ", heard_at_unix_ms,
                  " ms (unix); ", phases, " after hearing");
  }
  return concat("recovered: epoch ", epoch, " after ", why.empty() ? "a lost member" : why, "; now rank ", rank, " of ",
                ranks, " over ", devices, " devices, resumed at step ", resumed_at, " from ", source, "; heard at ",
                heard_at_unix_ms, " ms (unix); ", phases, " after hearing");
}

Session::Session(Graph& graph, std::vector<Tensor> fetches, SessionOptions options)
    : Session(graph,
              PlanOptions{.fetches = std::move(fetches),
                          .register_count = options.register_count,
                          .share_memory = options.share_memory,
                          .fuse = options.fuse,
                          .placement = options.placement},
              options) {}

Session::Session(Graph& graph, const PlanOptions& plan_options, SessionOptions options)
    : impl_(std::make_unique<Impl>(graph, plan_options, options)) {}

Session::~Session() {
  if (!impl_->pending.valid()) return;
  try {
    impl_->pending.get();
  } catch (const std::exception& error) {  // a destructor throws nothing
    LOG(ERROR) << "the last checkpoint was not saved: " << error.what();
  }
}

std::vector<std::vector<HostTensor>> Session::run(int64_t steps, const FeedFn& feed, const StepFn& on_step) {
  if (steps < 0) throw Error::InvalidArgument(concat("run(", steps, ", ...): expected a step count of at least 0"));
  Impl& impl = *impl_;
  const OneCallAtATime guard(impl.busy, "run");
  // The job hears where this run goes: a rank that finishes short of it fails the job at once.
  struct Progress {
    Impl& impl;
    Progress(Impl& impl, int64_t steps) : impl(impl) { report(steps); }
    ~Progress() { report(0); }
    void report(int64_t more) const {
      // No executor: a recovery's re-plan failed, and the run ends with its error.
      if (impl.options.job == nullptr || impl.interpreter || !impl.executor) return;
      const int64_t done = impl.executor->steps_done();
      impl.options.job->progress(done, done + more);
    }
  } progress(impl, steps);
  if (impl.recovering()) return impl.run_recovering(steps, feed, on_step);
  const auto run_some = [&](int64_t count) {
    if (!impl.interpreter) return impl.executor->run(count, feed, on_step);
    std::vector<std::vector<HostTensor>> outputs;
    for (int64_t i = 0; i < count; ++i) {
      std::optional<Feeds> feeds = feed(impl.interpreter->step());
      if (!feeds) break;
      outputs.push_back(impl.interpreter->train_step(*feeds, impl.fetches));
      if (on_step) on_step(impl.interpreter->step() - 1, outputs.back());
    }
    return outputs;
  };
  const int64_t every = impl.options.checkpoint_every;
  if (every <= 0 || impl.options.checkpoint_dir.empty()) return run_some(steps);
  // Steps run up to each checkpoint's boundary, where none is in flight, and save there.
  std::vector<std::vector<HostTensor>> outputs;
  while (static_cast<int64_t>(outputs.size()) < steps) {
    const int64_t done = steps_done();
    const int64_t count = std::min(steps - static_cast<int64_t>(outputs.size()), every - done % every);
    std::vector<std::vector<HostTensor>> part = run_some(count);
    const bool ran_out = static_cast<int64_t>(part.size()) < count;
    for (auto& values : part) outputs.push_back(std::move(values));
    if (!part.empty() && steps_done() % every == 0) impl.save_now();
    if (ran_out) break;
  }
  return outputs;
}

void Session::save(const std::string& root, std::map<std::string, int64_t> data) {
  const OneCallAtATime guard(impl_->busy, "save");
  impl_->save(root, std::move(data));
}

CheckpointInfo Session::wait_for_save() {
  const OneCallAtATime guard(impl_->busy, "wait_for_save");
  if (!impl_->pending.valid()) throw Error::FailedPrecondition("wait_for_save(): no save is in flight");
  return impl_->pending.get();
}

CheckpointInfo Session::restore(const std::string& path) {
  Impl& impl = *impl_;
  const OneCallAtATime guard(impl.busy, "restore");
  if (impl.pending.valid()) impl.pending.get();
  std::vector<HostTensor> copies;
  const std::vector<checkpoint::LocalVariable> variables = impl.local_variables(copies);
  CheckpointInfo info = checkpoint::restore(path, variables, impl.graph, impl.rank_channel());
  if (impl.interpreter) {
    for (size_t i = 0; i < variables.size(); ++i) impl.interpreter->set_variable(variables[i].name, copies[i]);
    impl.interpreter->set_step(info.step);
  } else {
    impl.executor->set_steps_done(info.step);
  }
  return info;
}

std::vector<HostTensor> Session::step(const Feeds& feeds) {
  std::vector<std::vector<HostTensor>> outputs = run(1, [&](int64_t) -> std::optional<Feeds> { return feeds; });
  return outputs.empty() ? std::vector<HostTensor>{} : std::move(outputs[0]);
}

std::vector<HostTensor> Session::evaluate(const Feeds& feeds, const std::vector<Tensor>& fetches) {
  Impl& impl = *impl_;
  const OneCallAtATime guard(impl.busy, "evaluate");
  if (impl.interpreter) return impl.interpreter->evaluate(feeds, fetches);
  auto it = impl.evaluation.find(fetches);
  if (it == impl.evaluation.end()) {
    Impl::EvaluationPlan evaluation;
    evaluation.plan = compile_plan(impl.graph, {.fetches = fetches,
                                                .training = false,
                                                .register_count = impl.options.register_count,
                                                .share_memory = impl.options.share_memory,
                                                .fuse = impl.plan_options.fuse,
                                                .placement = impl.plan_options.placement,
                                                .ranks = impl.plan_options.ranks,
                                                .rank = impl.plan_options.rank});
    const proto::RankPlan& trained = impl.plan.ranks(0);
    const proto::RankPlan& evaluated = evaluation.plan.ranks(0);
    CHECK_EQ(trained.devices_size(), evaluated.devices_size()) << "training and evaluation plans differ in devices";
    for (int d = 0; d < trained.devices_size(); ++d) {
      CHECK_EQ(trained.devices(d).variable_arena_bytes(), evaluated.devices(d).variable_arena_bytes())
          << "training and evaluation plans lay variables out differently";
    }
    const int tag_space = static_cast<int>(impl.evaluation.size()) + 1;
    // Tag space 0 is the training plan's, 63 the checkpoints' (checkpoint::RankChannel).
    if (tag_space > 62 && impl.plan_options.ranks > 1)
      throw Error::OutOfRange("a session over several ranks keeps at most 62 evaluation plans");
    evaluation.executor = impl.make_executor(evaluation.plan, tag_space % 64);
    it = impl.evaluation.emplace(fetches, std::move(evaluation)).first;
  }
  std::vector<std::vector<HostTensor>> outputs =
      it->second.executor->run(1, [&](int64_t) -> std::optional<Feeds> { return feeds; });
  return std::move(outputs.at(0));
}

HostTensor Session::variable(const std::string& name) const {
  if (impl_->interpreter) return impl_->interpreter->variable(name);
  return impl_->read_shards(impl_->whole_slot(name));
}

std::vector<VariableShardValue> Session::local_shards(const std::string& name) const {
  if (impl_->interpreter) {
    HostTensor value = impl_->interpreter->variable(name);
    std::vector<int64_t> starts(value.shape().rank(), 0);
    return {{"cpu:0", std::move(starts), std::move(value)}};
  }
  const VariableSlot& slot = impl_->slot(name);
  const proto::RankPlan& share = share_of(impl_->plan, impl_->options.rank);
  std::vector<VariableShardValue> shards;
  for (const VariableShard& shard : slot.shards) {
    HostTensor value(shard.type.shape, shard.type.dtype);
    std::memcpy(value.raw(), impl_->variables[shard.device]->data() + shard.offset, value.nbytes());
    shards.push_back({share.devices(shard.device).device(), shard.starts, std::move(value)});
  }
  return shards;
}

void Session::set_variable(const std::string& name, const HostTensor& value) {
  if (impl_->interpreter) return impl_->interpreter->set_variable(name, value);
  const VariableSlot& slot = impl_->whole_slot(name);
  if (value.shape() != slot.type.shape || value.dtype() != slot.type.dtype) {
    throw Error::ShapeMismatch(concat("variable '", name, "' is ", slot.type.shape, " ", slot.type.dtype,
                                      ", cannot set it to ", value.shape(), " ", value.dtype()));
  }
  impl_->write_shards(slot, value);
}

int64_t Session::steps_done() const {
  return impl_->interpreter ? impl_->interpreter->step() : impl_->executor->steps_done();
}

const proto::Plan& Session::plan() const { return impl_->plan; }

}  // namespace tessel
