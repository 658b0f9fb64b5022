// The logical graph and the DSL's symbolic tensors.
//
//   Graph g;
//   Tensor x = g.input("x", {32, 64});
//   Tensor w = g.param("w", {64, 10}, init::normal(0.02));
//   Tensor loss = cross_entropy(matmul(x, w), g.input("y", {32}, i64));
//   g.minimize(loss, AdamW{.lr = 1e-3});
//
// A Graph only describes work; runtime/ runs it. Every op is checked when it is added: a
// mistake throws Error at the line that made it, naming the op, the shapes and the rule.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <source_location>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/attributes.h"
#include "ops/registry.h"
#include "ops/schedule.h"

namespace tessel {

class Graph;
using SourceLocation = std::source_location;

// A symbolic tensor: output `output` of node `node` in a graph. Cheap to copy.
class Tensor {
 public:
  Tensor() = default;
  Tensor(Graph* graph, int node, int output) : graph_(graph), node_(node), output_(output) {}

  bool defined() const { return graph_ != nullptr; }
  Graph& graph() const;
  int node() const { return node_; }
  int output() const { return output_; }
  const TensorType& type() const;
  const Shape& shape() const { return type().shape; }
  DType dtype() const { return type().dtype; }
  int rank() const { return shape().rank(); }
  // "name" for a node's first output, "name:k" for its k-th.
  std::string name() const;

  friend bool operator==(const Tensor& a, const Tensor& b) {
    return a.graph_ == b.graph_ && a.node_ == b.node_ && a.output_ == b.output_;
  }
  friend auto operator<=>(const Tensor& a, const Tensor& b) {
    return std::tie(a.node_, a.output_) <=> std::tie(b.node_, b.output_);
  }

 private:
  Graph* graph_ = nullptr;
  int node_ = -1;
  int output_ = 0;
};

struct TensorRef {
  int node = -1;
  int output = 0;
  friend auto operator<=>(const TensorRef&, const TensorRef&) = default;
};

struct Node {
  int id = -1;
  std::string op{};    // "matmul", "input", "variable", ...
  std::string name{};  // unique in the graph
  std::vector<TensorRef> inputs{};
  Attributes attrs{};
  std::vector<TensorType> outputs{};
  std::string location{};  // "file.cc:42" of the DSL call that made it
};

// How a parameter's first value is drawn. Seeded: the same graph gives the same values on
// every machine. Without an explicit seed, the seed derives from the graph's seed and the
// parameter's name, so adding a parameter does not change the others.
struct Initializer {
  enum class Kind { constant, uniform, normal, xavier_uniform } kind = Kind::constant;
  double a = 0;       // constant: value; uniform: low; normal: mean
  double b = 0;       // uniform: high; normal: standard deviation
  int64_t seed = -1;  // -1: derive from the graph seed and the parameter name
};

namespace init {
Initializer zeros();
Initializer ones();
Initializer constant(double value);
Initializer uniform(double low, double high, int64_t seed = -1);
Initializer normal(double stddev, double mean = 0, int64_t seed = -1);
Initializer xavier_uniform(int64_t seed = -1);  // U(±sqrt(6 / (fan_in + fan_out)))
}  // namespace init

// Draws an initial value for a variable node (shape, dtype and initializer in its attrs).
HostTensor initial_value(const Node& variable, uint64_t graph_seed);

struct SGD {
  double lr = 0.01;
  double momentum = 0;
  double weight_decay = 0;  // L2, added to the gradient (as torch.optim.SGD)
};
struct AdamW {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // decoupled: p -= lr * weight_decay * p (as torch.optim.AdamW)
};

struct MinimizeOptions {
  // Gradients of this many consecutive training steps (micro-batches) are averaged, and
  // the optimizer updates the parameters once, on the last of them.
  int accumulation_steps = 1;
  // Each update checks the values it writes: a parameter that went NaN or infinite is an Error
  // naming the step, the parameter, the element, and whether its gradient or the update itself
  // went non-finite first. The check rides in the update's own loop (bench/runtime_bench shows
  // its cost); the run then ends, with the bad values in that parameter.
  bool check_finite = true;
  // The learning rate of each update, from the optimizer's lr (ops/schedule.h).
  LrSchedule schedule{};
  // Gradients are scaled together so that their global L2 norm is at most this (0: off), as
  // torch.nn.utils.clip_grad_norm_: by max_norm / (norm + 1e-6) where that is below 1. The norm
  // is computed in the graph, so a sharded gradient's shards are reduced and a broadcast one
  // counts once. Not with accumulation_steps > 1.
  double clip_grad_norm = 0;
  // Parameters that are not trained: no gradient is computed for them and no update made.
  std::vector<Tensor> frozen{};
  // Parameter groups: these get no weight decay; with decay_only_matrices, neither does any
  // parameter of rank below 2 (biases and norm scales), as GPT-2's training does.
  std::vector<Tensor> no_weight_decay{};
  bool decay_only_matrices = false;
};

class Graph {
 public:
  explicit Graph(uint64_t seed = 0) : seed_(seed) {}
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // A tensor fed at every step. Names are unique within the graph.
  Tensor input(const std::string& name, Shape shape, DType dtype = DType::f32,
               SourceLocation where = SourceLocation::current());
  // A trainable parameter, initialised once, updated by the optimizer of minimize().
  Tensor param(const std::string& name, Shape shape, Initializer initializer = init::zeros(), DType dtype = DType::f32,
               SourceLocation where = SourceLocation::current());
  // A variable that is not trained (optimizer state, running statistics).
  Tensor state(const std::string& name, Shape shape, DType dtype = DType::f32, Initializer initializer = init::zeros());

  // Adds an op by name: checks the op exists, the number of inputs and, through the op's
  // inference, their shapes and dtypes. Returns the op's outputs.
  std::vector<Tensor> apply(std::string_view op, const std::vector<Tensor>& inputs, Attributes attrs = {},
                            SourceLocation where = SourceLocation::current());
  // apply() for ops with one output.
  Tensor apply1(std::string_view op, const std::vector<Tensor>& inputs, Attributes attrs = {},
                SourceLocation where = SourceLocation::current());

  // d(sum of `target`)/d(each of `wrt`), as new tensors of this graph. Any tensor may be in
  // `wrt` (inputs too). Throws if some tensor of `wrt` has no path to `target`.
  std::vector<Tensor> gradients(const Tensor& target, const std::vector<Tensor>& wrt,
                                SourceLocation where = SourceLocation::current());

  // Appends backward and optimizer ops that lower the scalar `loss` by updating every
  // trainable parameter. A parameter the loss does not depend on is an Error.
  void minimize(const Tensor& loss, const SGD& optimizer, MinimizeOptions options = {},
                SourceLocation where = SourceLocation::current());
  void minimize(const Tensor& loss, const AdamW& optimizer, MinimizeOptions options = {},
                SourceLocation where = SourceLocation::current());

  uint64_t seed() const { return seed_; }
  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  const Node& node(int id) const { return nodes_[id]; }
  const std::vector<Node>& nodes() const { return nodes_; }
  // Node ids are a topological order: every node's inputs have smaller ids.
  Tensor tensor(TensorRef ref) { return Tensor(this, ref.node, ref.output); }
  // The input or parameter of that name; Error::NotFound otherwise.
  Tensor find(const std::string& name);
  // The node of that name, or nullptr.
  const Node* find_node(std::string_view name) const;
  std::vector<Tensor> inputs();
  std::vector<Tensor> params();  // trainable variables, in creation order

  // A graph's nodes may also be added from a serialised description (graph/serialize.h):
  // that path checks names and references and rejects cycles before calling apply().
  Node& mutable_node(int id) { return nodes_[id]; }
  // A variable from its attributes, as graph/serialize.h writes them.
  Tensor add_variable(const std::string& name, Attributes attrs);
  // Gives node `id` another name; Error if the name is taken.
  void rename(int id, const std::string& name);
  void set_seed(uint64_t seed) { seed_ = seed; }

 private:
  friend class Autograd;
  template <typename Optimizer>
  void minimize_with(const Tensor& loss, const Optimizer& optimizer, MinimizeOptions options, SourceLocation where);
  std::string unique_name(std::string_view base);
  Tensor add_leaf(std::string op, const std::string& name, Attributes attrs, TensorType type, SourceLocation where);

  uint64_t seed_;
  std::vector<Node> nodes_;
  std::map<std::string, int, std::less<>> names_;
  std::map<std::string, int, std::less<>> name_counters_;
  int backward_depth_ = 0;  // > 0 while gradient rules append ops; names get a "grad/" prefix
};

std::string to_string(const SourceLocation& where);
// "matmul 'fc1' (created at mlp.cc:12)": how errors name a node.
std::string describe(const Node& node);

}  // namespace tessel
