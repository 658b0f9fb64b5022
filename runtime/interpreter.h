// The reference interpreter: runs a graph op by op, in topological order, on the CPU.
// It is deliberately simple, and is the oracle every other runtime is checked against.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "graph/graph.h"

namespace tessel {

class Interpreter {
 public:
  // Variables are drawn from their initializers the first time a step needs them.
  explicit Interpreter(Graph& graph);

  // One training step: computes `fetches` and then applies every optimizer update of the
  // graph. Fetched values are those before the updates. Throws Error for a feed of an
  // unknown name or wrong shape or dtype, and for a needed input that was not fed.
  std::vector<HostTensor> train_step(const Feeds& feeds, const std::vector<Tensor>& fetches);

  // Computes `fetches`; changes no variable and does not advance the step. Evaluation mode
  // (dropout off) unless `training_mode`, which draws the current step's dropout masks.
  std::vector<HostTensor> evaluate(const Feeds& feeds, const std::vector<Tensor>& fetches, bool training_mode = false);

  // The current value of a variable (a copy); Error::NotFound for an unknown name.
  HostTensor variable(const std::string& name);
  void set_variable(const std::string& name, const HostTensor& value);

  // Training steps run so far.
  int64_t step() const { return step_; }
  // The steps run so far are `step` (a restored checkpoint's): the optimizer and dropout go on from it.
  void set_step(int64_t step) { step_ = step; }

 private:
  std::vector<HostTensor> run(const Feeds& feeds, const std::vector<Tensor>& fetches, bool training,
                              bool apply_updates);
  HostTensor& variable_storage(const Node& node);
  const Node& variable_node(const std::string& name) const;  // Error::NotFound if none

  Graph& graph_;
  std::map<std::string, HostTensor> variables_;
  int64_t step_ = 0;
};

}  // namespace tessel
