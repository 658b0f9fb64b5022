#include "graph/graph.h"

#include <glog/logging.h>

#include <cmath>
#include <filesystem>

#include "core/random.h"

namespace tessel {

std::string to_string(const SourceLocation& where) {
  return concat(std::filesystem::path(where.file_name()).filename().string(), ":", where.line());
}

Graph& Tensor::graph() const {
  CHECK(graph_ != nullptr) << "use of an empty Tensor";
  return *graph_;
}

const TensorType& Tensor::type() const { return graph().node(node_).outputs[output_]; }

std::string Tensor::name() const {
  const Node& n = graph().node(node_);
  return output_ == 0 ? n.name : concat(n.name, ":", output_);
}

namespace init {
Initializer zeros() { return {Initializer::Kind::constant, 0, 0, -1}; }
Initializer ones() { return {Initializer::Kind::constant, 1, 0, -1}; }
Initializer constant(double value) { return {Initializer::Kind::constant, value, 0, -1}; }
Initializer uniform(double low, double high, int64_t seed) { return {Initializer::Kind::uniform, low, high, seed}; }
Initializer normal(double stddev, double mean, int64_t seed) { return {Initializer::Kind::normal, mean, stddev, seed}; }
Initializer xavier_uniform(int64_t seed) { return {Initializer::Kind::xavier_uniform, 0, 0, seed}; }
}  // namespace init

namespace {
const char* kind_name(Initializer::Kind kind) {
  switch (kind) {
    case Initializer::Kind::constant:
      return "constant";
    case Initializer::Kind::uniform:
      return "uniform";
    case Initializer::Kind::normal:
      return "normal";
    case Initializer::Kind::xavier_uniform:
      return "xavier_uniform";
  }
  return "?";
}

Attributes leaf_attributes(const Shape& shape, DType dtype) {
  return {{"shape", shape.dims()}, {"dtype", std::string(name_of(dtype))}};
}
}  // namespace

HostTensor initial_value(const Node& variable, uint64_t graph_seed) {
  const Shape shape = variable.attrs.get_shape("shape");
  const DType dtype = dtype_named(variable.attrs.get_string("dtype"));
  const std::string kind = variable.attrs.get_string("init");
  const double a = variable.attrs.get_float("init_a");
  const double b = variable.attrs.get_float("init_b");
  const int64_t explicit_seed = variable.attrs.get_int("init_seed");
  const uint64_t seed = explicit_seed >= 0 ? static_cast<uint64_t>(explicit_seed)
                                           : mix64(graph_seed) ^ hash_name(variable.attrs.get_string("name"));
  HostTensor value(shape, dtype);
  const int64_t n = value.numel();
  if (kind == "constant") {
    for (int64_t i = 0; i < n; ++i) value.set(i, a);
  } else if (kind == "uniform") {
    for (int64_t i = 0; i < n; ++i) value.set(i, a + (b - a) * uniform_at(seed, i));
  } else if (kind == "normal") {
    for (int64_t i = 0; i < n; ++i) value.set(i, a + b * normal_at(seed, i));
  } else if (kind == "xavier_uniform") {
    const int64_t fan_out = shape.rank() >= 1 ? shape[shape.rank() - 1] : 1;
    const int64_t fan_in = shape.rank() >= 2 ? shape.numel() / fan_out : 1;
    const double bound = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
    for (int64_t i = 0; i < n; ++i) value.set(i, -bound + 2 * bound * uniform_at(seed, i));
  } else {
    throw Error::InvalidArgument(concat("variable '", variable.name, "' has unknown initializer '", kind, "'"));
  }
  return value;
}

std::string Graph::unique_name(std::string_view base) {
  const std::string prefix = backward_depth_ > 0 ? "grad/" : "";
  int& counter = name_counters_[prefix + std::string(base)];
  std::string name;
  do {
    name = concat(prefix, base, "_", counter++);
  } while (names_.count(name) > 0);
  return name;
}

Tensor Graph::add_leaf(std::string op, const std::string& name, Attributes attrs, TensorType type,
                       SourceLocation where) {
  const std::string kind = op == "input" ? "input" : "variable";
  if (name.empty()) throw Error::InvalidArgument(concat(kind, " at ", to_string(where), ": the name is empty"));
  if (auto existing = names_.find(name); existing != names_.end()) {
    throw Error::InvalidArgument(concat(kind, " '", name, "' at ", to_string(where), ": the name is already used by ",
                                        nodes_[existing->second].op, " created at ",
                                        nodes_[existing->second].location));
  }
  for (int64_t d : type.shape) {
    if (d <= 0) {
      // An empty extent holds nothing to lay over devices: without this, SBP inference later
      // found "no SBP signature" for the first op that used the tensor.
      throw Error::InvalidArgument(concat(kind, " '", name, "' at ", to_string(where), ": shape ", type.shape,
                                          " has a ", d < 0 ? "negative" : "zero",
                                          " extent; expected extents of at "
                                          "least 1"));
    }
  }
  Node node;
  node.id = num_nodes();
  node.op = std::move(op);
  node.name = name;
  node.attrs = std::move(attrs);
  node.outputs = {std::move(type)};
  node.location = to_string(where);
  names_[name] = node.id;
  nodes_.push_back(std::move(node));
  return Tensor(this, num_nodes() - 1, 0);
}

Tensor Graph::input(const std::string& name, Shape shape, DType dtype, SourceLocation where) {
  return add_leaf("input", name, leaf_attributes(shape, dtype), {shape, dtype}, where);
}

namespace {
Attributes variable_attributes(const std::string& name, const Shape& shape, DType dtype, const Initializer& initializer,
                               bool trainable) {
  Attributes attrs = leaf_attributes(shape, dtype);
  attrs.set("name", name);
  attrs.set("trainable", trainable);
  attrs.set("init", std::string(kind_name(initializer.kind)));
  attrs.set("init_a", initializer.a);
  attrs.set("init_b", initializer.b);
  attrs.set("init_seed", initializer.seed);
  return attrs;
}
}  // namespace

Tensor Graph::param(const std::string& name, Shape shape, Initializer initializer, DType dtype, SourceLocation where) {
  if (!is_floating(dtype)) {
    throw Error::InvalidArgument(concat("param '", name, "' at ", to_string(where), ": dtype ", dtype,
                                        " cannot be trained; expected a floating dtype (f32, f16, bf16)"));
  }
  return add_leaf("variable", name, variable_attributes(name, shape, dtype, initializer, true), {shape, dtype}, where);
}

Tensor Graph::state(const std::string& name, Shape shape, DType dtype, Initializer initializer) {
  return add_leaf("variable", name, variable_attributes(name, shape, dtype, initializer, false), {shape, dtype},
                  SourceLocation::current());
}

Tensor Graph::add_variable(const std::string& name, Attributes attrs) {
  const TensorType type{attrs.get_shape("shape"), dtype_named(attrs.get_string("dtype"))};
  attrs.set("name", name);
  return add_leaf("variable", name, std::move(attrs), type, SourceLocation::current());
}

void Graph::rename(int id, const std::string& name) {
  if (nodes_[id].name == name) return;
  if (names_.count(name) > 0) throw Error::InvalidArgument(concat("the name '", name, "' is already used"));
  names_.erase(nodes_[id].name);
  nodes_[id].name = name;
  names_[name] = id;
}

std::vector<Tensor> Graph::apply(std::string_view op, const std::vector<Tensor>& inputs, Attributes attrs,
                                 SourceLocation where) {
  const std::string location = to_string(where);
  const OpDef* def = nullptr;
  try {
    def = &OpRegistry::global().op(op);
  } catch (const Error& error) {
    throw error.with_context(location);
  }
  const std::string context = concat(op, " at ", location);
  if (def->name == "input" || def->name == "variable") {
    throw Error::InvalidArgument(concat(context, ": add inputs and parameters with Graph::input and Graph::param"));
  }
  const int count = static_cast<int>(inputs.size());
  if (count < def->min_inputs || (def->max_inputs >= 0 && count > def->max_inputs)) {
    const std::string expected = def->max_inputs < 0 ? concat("at least ", def->min_inputs)
                                 : def->min_inputs == def->max_inputs
                                     ? concat(def->min_inputs)
                                     : concat(def->min_inputs, " to ", def->max_inputs);
    throw Error::InvalidArgument(concat(context, ": takes ", expected, " inputs, got ", count));
  }
  std::vector<TensorType> types;
  std::vector<TensorRef> refs;
  for (int i = 0; i < count; ++i) {
    if (!inputs[i].defined()) throw Error::InvalidArgument(concat(context, ": input ", i, " is an empty Tensor"));
    if (&inputs[i].graph() != this) {
      throw Error::InvalidArgument(
          concat(context, ": input ", i, " ('", inputs[i].name(), "') belongs to another graph"));
    }
    types.push_back(inputs[i].type());
    refs.push_back({inputs[i].node(), inputs[i].output()});
  }
  std::vector<TensorType> outputs;
  try {
    outputs = def->infer(InferContext{types, attrs});
  } catch (const Error& error) {
    throw error.with_context(context);
  }
  Node node;
  node.id = num_nodes();
  node.op = def->name;
  node.name = unique_name(def->name);
  node.inputs = std::move(refs);
  node.attrs = std::move(attrs);
  node.outputs = std::move(outputs);
  node.location = location;
  names_[node.name] = node.id;
  nodes_.push_back(std::move(node));
  std::vector<Tensor> result;
  for (int i = 0; i < static_cast<int>(nodes_.back().outputs.size()); ++i)
    result.emplace_back(this, num_nodes() - 1, i);
  return result;
}

Tensor Graph::apply1(std::string_view op, const std::vector<Tensor>& inputs, Attributes attrs, SourceLocation where) {
  std::vector<Tensor> outputs = apply(op, inputs, std::move(attrs), where);
  CHECK_EQ(outputs.size(), 1u) << "op " << op << " has " << outputs.size() << " outputs";
  return outputs[0];
}

Tensor Graph::find(const std::string& name) {
  auto it = names_.find(name);
  if (it == names_.end()) throw Error::NotFound(concat("the graph has no tensor named '", name, "'"));
  return Tensor(this, it->second, 0);
}

const Node* Graph::find_node(std::string_view name) const {
  auto it = names_.find(name);
  return it == names_.end() ? nullptr : &nodes_[it->second];
}

std::vector<Tensor> Graph::inputs() {
  std::vector<Tensor> result;
  for (const Node& n : nodes_) {
    if (n.op == "input") result.emplace_back(this, n.id, 0);
  }
  return result;
}

std::vector<Tensor> Graph::params() {
  std::vector<Tensor> result;
  for (const Node& n : nodes_) {
    if (n.op == "variable" && n.attrs.get_bool("trainable")) result.emplace_back(this, n.id, 0);
  }
  return result;
}

std::string describe(const Node& node) {
  return concat(node.op, " '", node.name, "' (created at ", node.location, ")");
}

}  // namespace tessel
