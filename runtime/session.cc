#include "runtime/session.h"

#include <glog/logging.h>

#include <cstring>
#include <map>

#include "actors/executor.h"
#include "devices/arena.h"
#include "graph/proto_conversion.h"
#include "runtime/interpreter.h"

namespace tessel {
namespace {

struct VariableSlot {
  TensorType type;
  int64_t offset = 0;
};

}  // namespace

struct Session::Impl {
  Impl(Graph& graph, const PlanOptions& plan_options, const SessionOptions& options)
      : graph(graph), options(options), fetches(plan_options.fetches) {
    if (options.use_interpreter) {
      interpreter = std::make_unique<Interpreter>(graph);
      return;
    }
    plan = compile_plan(graph, plan_options);
    const proto::DevicePlan& device = plan.ranks(0).devices(0);
    variables = std::make_unique<HostArena>(device.variable_arena_bytes());
    for (const proto::VariableDef& def : device.variables()) {
      const TensorType type = tensor_type_from_proto(def.type());
      slots[def.name()] = {type, def.offset()};
      Node node{.op = "variable", .name = def.name(), .attrs = attributes_from_proto(def.attrs()), .outputs = {type}};
      const HostTensor value = initial_value(node, graph.seed());
      std::memcpy(variables->data() + def.offset(), value.raw(), value.nbytes());
    }
    executor = make_executor(plan);
  }

  std::unique_ptr<Executor> make_executor(const proto::Plan& for_plan) const {
    return std::make_unique<Executor>(
        for_plan, 0, variables->data(),
        ExecutorOptions{.worker_threads = options.worker_threads, .steps_in_flight = options.steps_in_flight});
  }

  const VariableSlot& slot(const std::string& name) const {
    auto it = slots.find(name);
    if (it == slots.end()) throw Error::NotFound(concat("the graph has no variable named '", name, "'"));
    return it->second;
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
  std::unique_ptr<HostArena> variables;
  std::map<std::string, VariableSlot> slots;
  std::map<std::vector<Tensor>, EvaluationPlan> evaluation;
  std::unique_ptr<Executor> executor;  // after `variables` and `evaluation`: destroyed first
};

Session::Session(Graph& graph, std::vector<Tensor> fetches, SessionOptions options)
    : Session(graph,
              PlanOptions{.fetches = std::move(fetches),
                          .register_count = options.register_count,
                          .share_memory = options.share_memory},
              options) {}

Session::Session(Graph& graph, const PlanOptions& plan_options, SessionOptions options)
    : impl_(std::make_unique<Impl>(graph, plan_options, options)) {}

Session::~Session() = default;

std::vector<std::vector<HostTensor>> Session::run(int64_t steps, const FeedFn& feed, const StepFn& on_step) {
  if (steps < 0) throw Error::InvalidArgument(concat("run(", steps, ", ...): expected a step count of at least 0"));
  Impl& impl = *impl_;
  if (impl.interpreter) {
    std::vector<std::vector<HostTensor>> outputs;
    for (int64_t i = 0; i < steps; ++i) {
      std::optional<Feeds> feeds = feed(impl.interpreter->step());
      if (!feeds) break;
      outputs.push_back(impl.interpreter->train_step(*feeds, impl.fetches));
      if (on_step) on_step(impl.interpreter->step() - 1, outputs.back());
    }
    return outputs;
  }
  return impl.executor->run(steps, feed, on_step);
}

std::vector<HostTensor> Session::step(const Feeds& feeds) {
  std::vector<std::vector<HostTensor>> outputs = run(1, [&](int64_t) -> std::optional<Feeds> { return feeds; });
  return outputs.empty() ? std::vector<HostTensor>{} : std::move(outputs[0]);
}

std::vector<HostTensor> Session::evaluate(const Feeds& feeds, const std::vector<Tensor>& fetches) {
  Impl& impl = *impl_;
  if (impl.interpreter) return impl.interpreter->evaluate(feeds, fetches);
  auto it = impl.evaluation.find(fetches);
  if (it == impl.evaluation.end()) {
    Impl::EvaluationPlan evaluation;
    evaluation.plan = compile_plan(impl.graph, {.fetches = fetches,
                                                .training = false,
                                                .register_count = impl.options.register_count,
                                                .share_memory = impl.options.share_memory});
    CHECK_EQ(evaluation.plan.ranks(0).devices(0).variable_arena_bytes(),
             impl.plan.ranks(0).devices(0).variable_arena_bytes())
        << "training and evaluation plans lay variables out differently";
    evaluation.executor = impl.make_executor(evaluation.plan);
    it = impl.evaluation.emplace(fetches, std::move(evaluation)).first;
  }
  std::vector<std::vector<HostTensor>> outputs =
      it->second.executor->run(1, [&](int64_t) -> std::optional<Feeds> { return feeds; });
  return std::move(outputs.at(0));
}

HostTensor Session::variable(const std::string& name) const {
  if (impl_->interpreter) return impl_->interpreter->variable(name);
  const VariableSlot& slot = impl_->slot(name);
  HostTensor value(slot.type.shape, slot.type.dtype);
  std::memcpy(value.raw(), impl_->variables->data() + slot.offset, value.nbytes());
  return value;
}

void Session::set_variable(const std::string& name, const HostTensor& value) {
  if (impl_->interpreter) return impl_->interpreter->set_variable(name, value);
  const VariableSlot& slot = impl_->slot(name);
  if (value.shape() != slot.type.shape || value.dtype() != slot.type.dtype) {
    throw Error::ShapeMismatch(concat("variable '", name, "' is ", slot.type.shape, " ", slot.type.dtype,
                                      ", cannot set it to ", value.shape(), " ", value.dtype()));
  }
  std::memcpy(impl_->variables->data() + slot.offset, value.raw(), value.nbytes());
}

int64_t Session::steps_done() const {
  return impl_->interpreter ? impl_->interpreter->step() : impl_->executor->steps_done();
}

const proto::Plan& Session::plan() const { return impl_->plan; }

}  // namespace tessel
