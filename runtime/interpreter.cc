#include "runtime/interpreter.h"

#include <glog/logging.h>

#include "graph/feeds.h"

namespace tessel {

Interpreter::Interpreter(Graph& graph) : graph_(graph) {}

HostTensor& Interpreter::variable_storage(const Node& node) {
  const std::string& name = node.attrs.get_string("name");
  auto it = variables_.find(name);
  if (it == variables_.end()) it = variables_.emplace(name, initial_value(node, graph_.seed())).first;
  return it->second;
}

const Node& Interpreter::variable_node(const std::string& name) const {
  const Node* node = graph_.find_node(name);
  if (node == nullptr || node->op != "variable") {
    throw Error::NotFound(concat("the graph has no variable named '", name, "'"));
  }
  return *node;
}

HostTensor Interpreter::variable(const std::string& name) { return variable_storage(variable_node(name)).clone(); }

void Interpreter::set_variable(const std::string& name, const HostTensor& value) {
  const Node& node = variable_node(name);
  if (value.shape() != node.outputs[0].shape || value.dtype() != node.outputs[0].dtype) {
    throw Error::ShapeMismatch(concat("variable '", name, "' is ", node.outputs[0].shape, " ", node.outputs[0].dtype,
                                      ", cannot set it to ", value.shape(), " ", value.dtype()));
  }
  variables_[name] = value.clone();
}

std::vector<HostTensor> Interpreter::run(const Feeds& feeds, const std::vector<Tensor>& fetches, bool training,
                                         bool apply_updates) {
  const int count = graph_.num_nodes();
  std::vector<bool> needed(count, false), is_update(count, false);
  std::vector<int> updates;
  for (const Node& node : graph_.nodes()) is_update[node.id] = OpRegistry::global().op(node.op).is_update();
  for (const Tensor& t : fetches) {
    if (!t.defined() || &t.graph() != &graph_) throw Error::InvalidArgument("a fetched tensor is not of this graph");
    needed[t.node()] = true;
  }
  if (apply_updates) {
    for (const Node& node : graph_.nodes()) {
      if (is_update[node.id]) needed[node.id] = true, updates.push_back(node.id);
    }
  }
  for (int id = count - 1; id >= 0; --id) {
    if (!needed[id]) continue;
    for (const TensorRef& in : graph_.node(id).inputs) needed[in.node] = true;
  }
  std::vector<FeedSpec> inputs;
  for (const Node& node : graph_.nodes()) {
    if (node.op == "input") inputs.push_back({node.name, node.outputs[0], node.location, needed[node.id]});
  }
  check_feeds(feeds, inputs);

  // How many needed consumers still have to read each node's outputs, to free them early.
  std::vector<int> readers(count, 0);
  for (int id = 0; id < count; ++id) {
    if (!needed[id]) continue;
    for (const TensorRef& in : graph_.node(id).inputs) ++readers[in.node];
  }
  for (const Tensor& t : fetches) ++readers[t.node()];

  std::vector<std::vector<HostTensor>> values(count);
  std::vector<int> order;
  for (int id = 0; id < count; ++id) {
    if (needed[id] && !is_update[id]) order.push_back(id);
  }
  order.insert(order.end(), updates.begin(), updates.end());

  // Fetched values: a fresh output is handed over as it is; a variable or a feed is copied,
  // so later updates (or the caller's buffers) cannot change what was returned.
  std::vector<HostTensor> results;
  const auto collect = [&] {
    for (const Tensor& t : fetches) {
      const HostTensor& value = values[t.node()][t.output()];
      const std::string& op = graph_.node(t.node()).op;
      results.push_back(op == "variable" || op == "input" ? value.clone() : value);
    }
  };
  for (size_t position = 0; position < order.size(); ++position) {
    if (position == order.size() - updates.size()) collect();  // before the updates change any variable
    const Node& node = graph_.node(order[position]);
    if (node.op == "input") {
      values[node.id] = {feeds.at(node.name)};
      continue;
    }
    if (node.op == "variable") {
      values[node.id] = {variable_storage(node)};
      continue;
    }
    std::vector<TensorView> inputs;
    for (const TensorRef& in : node.inputs) inputs.push_back(values[in.node][in.output].view());
    std::vector<HostTensor> outputs;
    std::vector<TensorView> output_views;
    for (const TensorType& type : node.outputs) {
      outputs.emplace_back(type.shape, type.dtype);
      output_views.push_back(outputs.back().view());
    }
    std::vector<TensorType> input_types;
    for (const TensorView& view : inputs) input_types.push_back({view.shape, view.dtype});
    const DType dispatch = dispatch_dtype(OpRegistry::global().find(node.op), input_types, node.outputs);
    const std::string context = describe(node);
    try {
      const KernelFn kernel = OpRegistry::global().kernel(node.op, DeviceType::cpu, dispatch);
      kernel(KernelContext{inputs, output_views, node.attrs, step_, training});
    } catch (const Error& error) {
      throw error.with_context(context);
    }
    values[node.id] = std::move(outputs);
    for (const TensorRef& in : node.inputs) {
      if (--readers[in.node] == 0) values[in.node].clear();
    }
  }
  if (updates.empty()) collect();
  if (apply_updates) ++step_;
  return results;
}

std::vector<HostTensor> Interpreter::train_step(const Feeds& feeds, const std::vector<Tensor>& fetches) {
  return run(feeds, fetches, true, true);
}

std::vector<HostTensor> Interpreter::evaluate(const Feeds& feeds, const std::vector<Tensor>& fetches,
                                              bool training_mode) {
  return run(feeds, fetches, training_mode, false);
}

}  // namespace tessel
