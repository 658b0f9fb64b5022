// Reverse-mode differentiation and the optimizers of Graph::minimize.
#include "graph/autograd.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <tuple>

#include "ops/ops.h"

namespace tessel {

GradientContext::GradientContext(Graph& graph, Node node, std::vector<Tensor> output_gradients,
                                 std::vector<bool> needs_gradient)
    : graph_(graph),
      node_(std::move(node)),
      output_gradients_(std::move(output_gradients)),
      needs_gradient_(std::move(needs_gradient)),
      input_gradients_(node_.inputs.size()) {}

Tensor GradientContext::input(int index) const {
  return Tensor(&graph_, node_.inputs[index].node, node_.inputs[index].output);
}

Tensor GradientContext::output(int index) const { return Tensor(&graph_, node_.id, index); }

Tensor GradientContext::output_gradient(int index) {
  if (!output_gradients_[index].defined()) {
    const TensorType& type = node_.outputs[index];
    output_gradients_[index] = fill(graph_, type.shape, 0.0, type.dtype);
  }
  return output_gradients_[index];
}

void GradientContext::set_input_gradient(int index, Tensor gradient) {
  if (!needs_gradient_[index]) return;
  const TensorType& expected = graph_.node(node_.inputs[index].node).outputs[node_.inputs[index].output];
  CHECK(gradient.shape() == expected.shape)
      << "gradient rule of " << node_.op << " gave input " << index << " a gradient of shape " << gradient.shape()
      << ", expected " << expected.shape;
  input_gradients_[index] = std::move(gradient);
}

namespace {

// Marks the backward pass so the ops it appends are named "grad/...".
class BackwardScope {
 public:
  explicit BackwardScope(int& depth) : depth_(depth) { ++depth_; }
  ~BackwardScope() { --depth_; }

 private:
  int& depth_;
};

std::vector<Tensor> differentiate(Graph& graph, const Tensor& target, const std::vector<Tensor>& wrt,
                                  const std::string& what, int& backward_depth) {
  const int end = target.node() + 1;
  // Forward: which tensors depend on some tensor of `wrt`.
  std::set<TensorRef> depends_on_wrt;
  for (const Tensor& t : wrt) depends_on_wrt.insert({t.node(), t.output()});
  for (int id = 0; id < end; ++id) {
    const Node& node = graph.node(id);
    for (const TensorRef& in : node.inputs) {
      if (depends_on_wrt.count(in)) {
        for (int k = 0; k < static_cast<int>(node.outputs.size()); ++k) depends_on_wrt.insert({id, k});
        break;
      }
    }
  }
  // Backward: which nodes the target depends on.
  std::vector<bool> feeds_target(end, false);
  feeds_target[target.node()] = true;
  for (int id = end - 1; id >= 0; --id) {
    if (!feeds_target[id]) continue;
    for (const TensorRef& in : graph.node(id).inputs) feeds_target[in.node] = true;
  }

  BackwardScope scope(backward_depth);
  std::map<TensorRef, Tensor> gradients;
  gradients[{target.node(), target.output()}] = fill(graph, target.shape(), 1.0, target.dtype());
  for (int id = end - 1; id >= 0; --id) {
    if (!feeds_target[id]) continue;
    const Node node = graph.node(id);  // copied: rules append nodes
    if (node.inputs.empty()) continue;
    std::vector<Tensor> output_gradients(node.outputs.size());
    bool any_gradient = false;
    for (int k = 0; k < static_cast<int>(node.outputs.size()); ++k) {
      if (auto it = gradients.find({id, k}); it != gradients.end())
        output_gradients[k] = it->second, any_gradient = true;
    }
    std::vector<bool> needs(node.inputs.size());
    bool any_need = false;
    for (size_t i = 0; i < node.inputs.size(); ++i) any_need |= needs[i] = depends_on_wrt.count(node.inputs[i]) > 0;
    if (!any_gradient || !any_need) continue;
    const OpDef& def = OpRegistry::global().op(node.op);
    if (!def.gradient) {
      throw Error::Unimplemented(concat("cannot differentiate through op '", node.op, "' (node '", node.name,
                                        "', created at ", node.location, "): it has no gradient rule"));
    }
    GradientContext context(graph, node, std::move(output_gradients), needs);
    def.gradient(context);
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      Tensor g = context.input_gradient(static_cast<int>(i));
      if (!g.defined()) continue;
      auto [it, inserted] = gradients.try_emplace(node.inputs[i], g);
      if (!inserted) it->second = add(it->second, g);
    }
  }

  std::vector<Tensor> result;
  for (const Tensor& t : wrt) {
    auto it = gradients.find({t.node(), t.output()});
    if (it == gradients.end()) {
      const Node& node = graph.node(t.node());
      throw Error::InvalidArgument(concat(what, " '", t.name(), "' (created at ", node.location,
                                          ") has no gradient path to '", target.name(),
                                          "': no differentiable op between them uses it"));
    }
    result.push_back(it->second);
  }
  return result;
}

void check_scalar_loss(const Tensor& loss, const std::string& context) {
  if (!loss.defined()) throw Error::InvalidArgument(concat(context, ": the loss is an empty Tensor"));
  if (loss.shape().numel() != 1) {
    throw Error::InvalidArgument(concat(context, ": the loss must be a scalar, but '", loss.name(), "' has shape ",
                                        loss.shape(), "; reduce it with mean() or sum() first"));
  }
  if (!is_floating(loss.dtype())) {
    throw Error::InvalidArgument(concat(context, ": the loss must be floating point, got ", loss.dtype()));
  }
}

Attributes update_attributes(const SGD& o) {
  return {{"lr", o.lr}, {"momentum", o.momentum}, {"weight_decay", o.weight_decay}};
}
Attributes update_attributes(const AdamW& o) {
  return {{"lr", o.lr}, {"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", o.weight_decay}};
}

// What every update carries besides its optimizer's settings.
bool contains(const std::vector<Tensor>& tensors, const Tensor& t) {
  return std::find(tensors.begin(), tensors.end(), t) != tensors.end();
}

void set_update_attributes(Attributes& attrs, const Tensor& param, const MinimizeOptions& options) {
  attrs.set("accumulation_steps", static_cast<int64_t>(options.accumulation_steps));
  attrs.set("check_finite", options.check_finite);
  attrs.set("parameter", param.name());
  const LrSchedule& schedule = options.schedule;
  if (schedule.warmup_steps > 0 || schedule.decay != LrSchedule::Decay::none) {
    attrs.set("warmup_steps", schedule.warmup_steps);
    attrs.set("decay", std::string(schedule.decay == LrSchedule::Decay::cosine ? "cosine" : "none"));
    attrs.set("total_steps", schedule.total_steps);
    attrs.set("min_lr", schedule.min_lr);
  }
  if (contains(options.no_weight_decay, param) || (options.decay_only_matrices && param.rank() < 2)) {
    attrs.set("weight_decay", 0.0);
  }
}

// Scales every gradient by max_norm / (norm + 1e-6) where that is below 1.
std::vector<Tensor> clip_by_global_norm(Graph& graph, const std::vector<Tensor>& gradients, double max_norm) {
  Tensor squares;
  for (const Tensor& g : gradients) {
    const Tensor s = sum(g * g);
    squares = squares.defined() ? squares + s : s;
  }
  const Tensor norm = sqrt(squares) + fill(graph, {}, 1e-6);
  const Tensor factor = fill(graph, {}, max_norm) / clamp(norm, max_norm, std::numeric_limits<double>::infinity());
  std::vector<Tensor> clipped;
  for (const Tensor& g : gradients) clipped.push_back(g * factor);
  return clipped;
}

void append_update(Graph& graph, const Tensor& param, const Tensor& gradient, const SGD& optimizer,
                   const MinimizeOptions& options, SourceLocation where) {
  const int accumulation_steps = options.accumulation_steps;
  std::vector<Tensor> inputs = {param, gradient};
  Attributes attrs = update_attributes(optimizer);
  set_update_attributes(attrs, param, options);
  attrs.set("has_momentum", optimizer.momentum != 0);
  if (optimizer.momentum != 0) inputs.push_back(graph.state(param.name() + "/momentum", param.shape(), param.dtype()));
  if (accumulation_steps > 1) {
    inputs.push_back(graph.state(param.name() + "/gradient_accumulator", param.shape(), param.dtype()));
  }
  graph.apply("sgd_update", inputs, attrs, where);
}

void append_update(Graph& graph, const Tensor& param, const Tensor& gradient, const AdamW& optimizer,
                   const MinimizeOptions& options, SourceLocation where) {
  const int accumulation_steps = options.accumulation_steps;
  std::vector<Tensor> inputs = {param, gradient, graph.state(param.name() + "/adam_m", param.shape(), param.dtype()),
                                graph.state(param.name() + "/adam_v", param.shape(), param.dtype())};
  Attributes attrs = update_attributes(optimizer);
  set_update_attributes(attrs, param, options);
  if (accumulation_steps > 1) {
    inputs.push_back(graph.state(param.name() + "/gradient_accumulator", param.shape(), param.dtype()));
  }
  graph.apply("adamw_update", inputs, attrs, where);
}

}  // namespace

std::vector<Tensor> Graph::gradients(const Tensor& target, const std::vector<Tensor>& wrt, SourceLocation where) {
  const std::string context = concat("gradients at ", to_string(where));
  if (!target.defined() || &target.graph() != this) {
    throw Error::InvalidArgument(concat(context, ": the target is not a tensor of this graph"));
  }
  for (const Tensor& t : wrt) {
    if (!t.defined() || &t.graph() != this) {
      throw Error::InvalidArgument(concat(context, ": every tensor to differentiate by must belong to this graph"));
    }
  }
  try {
    return differentiate(*this, target, wrt, "tensor", backward_depth_);
  } catch (const Error& error) {
    throw error.with_context(context);
  }
}

namespace {
// Every setting of an optimizer must be a finite number in its range: a NaN would pass a
// comparison unnoticed and then turn every weight into NaN.
void check_settings(const SGD& sgd, const std::string& context) {
  for (const auto& [name, value] : {std::pair<const char*, double>{"momentum", sgd.momentum},
                                    std::pair<const char*, double>{"weight_decay", sgd.weight_decay}}) {
    if (!std::isfinite(value) || value < 0) {
      throw Error::InvalidArgument(concat(context, ": SGD's ", name, " is ", value, ", expected a finite number >= 0"));
    }
  }
}
void check_settings(const AdamW& adam, const std::string& context) {
  for (const auto& [name, value, low, high] :
       {std::tuple<const char*, double, double, double>{"beta1", adam.beta1, 0, 1},
        std::tuple<const char*, double, double, double>{"beta2", adam.beta2, 0, 1},
        std::tuple<const char*, double, double, double>{"eps", adam.eps, 0, 1},
        std::tuple<const char*, double, double, double>{"weight_decay", adam.weight_decay, 0, 1e300}}) {
    if (!std::isfinite(value) || value < low || value >= high) {
      throw Error::InvalidArgument(
          concat(context, ": AdamW's ", name, " is ", value, ", expected a finite number in [", low, ", ", high, ")"));
    }
  }
}
void check_schedule(const MinimizeOptions& options, const std::string& context) {
  const LrSchedule& s = options.schedule;
  if (s.warmup_steps < 0) {
    throw Error::InvalidArgument(concat(context, ": warmup_steps is ", s.warmup_steps, ", expected 0 or more"));
  }
  if (s.decay == LrSchedule::Decay::cosine && (s.total_steps < s.warmup_steps || !std::isfinite(s.min_lr) ||
                                               s.min_lr < 0)) {
    throw Error::InvalidArgument(concat(context, ": a cosine schedule needs total_steps >= warmup_steps (got ",
                                        s.total_steps, " and ", s.warmup_steps, ") and a finite min_lr >= 0 (got ",
                                        s.min_lr, ")"));
  }
  if (!(options.clip_grad_norm >= 0) || !std::isfinite(options.clip_grad_norm)) {
    throw Error::InvalidArgument(
        concat(context, ": clip_grad_norm is ", options.clip_grad_norm, ", expected a finite number >= 0 (0: off)"));
  }
  if (options.clip_grad_norm > 0 && options.accumulation_steps > 1) {
    throw Error::Unimplemented(concat(context,
                                      ": clip_grad_norm with accumulation_steps > 1 would clip each micro-batch "
                                      "rather than their mean; not supported"));
  }
}
}  // namespace

template <typename Optimizer>
void Graph::minimize_with(const Tensor& loss, const Optimizer& optimizer, MinimizeOptions options,
                          SourceLocation where) {
  const std::string context = concat("minimize at ", to_string(where));
  check_scalar_loss(loss, context);
  if (&loss.graph() != this) throw Error::InvalidArgument(concat(context, ": the loss belongs to another graph"));
  if (options.accumulation_steps < 1) {
    throw Error::InvalidArgument(
        concat(context, ": accumulation_steps must be at least 1, got ", options.accumulation_steps));
  }
  if (!(optimizer.lr > 0) || !std::isfinite(optimizer.lr)) {
    throw Error::InvalidArgument(
        concat(context, ": the learning rate is ", optimizer.lr, ", expected a positive finite number"));
  }
  check_settings(optimizer, context);
  for (const Node& node : nodes()) {
    if (OpRegistry::global().op(node.op).is_update()) {
      throw Error::FailedPrecondition(concat(context, ": minimize was already called on this graph (its update '",
                                             node.name, "' was made at ", node.location,
                                             "); call it once, with the losses summed"));
    }
  }
  check_schedule(options, context);
  const std::vector<Tensor> all = params();
  for (const std::vector<Tensor>* list : {&options.frozen, &options.no_weight_decay}) {
    for (const Tensor& t : *list) {
      if (!t.defined() || &t.graph() != this || !contains(all, t)) {
        throw Error::InvalidArgument(concat(context, ": ", list == &options.frozen ? "frozen" : "no_weight_decay",
                                            " lists '", t.defined() ? t.name() : std::string("an empty Tensor"),
                                            "', which is not a parameter of this graph"));
      }
    }
  }
  std::vector<Tensor> parameters;
  for (const Tensor& p : all) {
    if (!contains(options.frozen, p)) parameters.push_back(p);
  }
  if (parameters.empty()) {
    throw Error::FailedPrecondition(concat(context, all.empty() ? ": the graph has no parameters to train"
                                                                : ": every parameter is frozen"));
  }
  std::vector<Tensor> grads;
  try {
    grads = differentiate(*this, loss, parameters, "parameter", backward_depth_);
    if (options.clip_grad_norm > 0) {
      BackwardScope scope(backward_depth_);
      grads = clip_by_global_norm(*this, grads, options.clip_grad_norm);
    }
  } catch (const Error& error) {
    throw error.with_context(context);
  }
  for (size_t i = 0; i < parameters.size(); ++i) {
    append_update(*this, parameters[i], grads[i], optimizer, options, where);
  }
}

void Graph::minimize(const Tensor& loss, const SGD& optimizer, MinimizeOptions options, SourceLocation where) {
  minimize_with(loss, optimizer, options, where);
}

void Graph::minimize(const Tensor& loss, const AdamW& optimizer, MinimizeOptions options, SourceLocation where) {
  minimize_with(loss, optimizer, options, where);
}

}  // namespace tessel
