#include "runtime/session.h"

#include <glog/logging.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <set>

#include "actors/executor.h"
#include "devices/arena.h"
#include "graph/proto_conversion.h"
#include "runtime/interpreter.h"

namespace tessel {
namespace {

// One device's shard of a variable, and where it lives in that device's variable arena.
struct VariableShard {
  int device = 0;
  TensorType type;
  int64_t offset = 0;
  std::vector<int64_t> starts;  // in the whole variable
  bool writes = false;          // this copy goes into checkpoints
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

PlanOptions with_ranks(PlanOptions options, const SessionOptions& session) {
  if (options.ranks == 1) options.ranks = session.ranks;
  if (options.ranks > 1 && options.rank < 0) options.rank = session.rank;
  return options;
}

}  // namespace

struct Session::Impl {
  Impl(Graph& graph, const PlanOptions& plan_options, const SessionOptions& options)
      : graph(graph), options(options), fetches(plan_options.fetches), plan_options(with_ranks(plan_options, options)) {
    if (options.use_interpreter) {
      interpreter = std::make_unique<Interpreter>(graph);
      return;
    }
    plan = compile_plan(graph, this->plan_options);
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
        slot.shards.push_back({d, shard, def.offset(), std::move(starts), def.writes_checkpoint()});
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
      if (slot.shards.empty()) continue;
      Node node{.op = "variable", .name = name, .attrs = attrs.at(name), .outputs = {slot.type}};
      write_shards(slot, initial_value(node, graph.seed()));
    }
    executor = make_executor(plan, 0);
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
    if (!channel)
      channel = std::make_unique<checkpoint::RankChannel>(plan_options.ranks, options.rank, options.transport);
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
};

Session::Session(Graph& graph, std::vector<Tensor> fetches, SessionOptions options)
    : Session(graph,
              PlanOptions{.fetches = std::move(fetches),
                          .register_count = options.register_count,
                          .share_memory = options.share_memory,
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
    if (!part.empty() && steps_done() % every == 0) {
      impl.save(impl.options.checkpoint_dir,
                impl.options.data_position ? impl.options.data_position() : std::map<std::string, int64_t>{});
    }
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
