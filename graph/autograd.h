// What a gradient rule sees. A rule reads the forward op's inputs, outputs and the gradients
// flowing into its outputs, and sets the gradient of each input that needs one, building
// backward ops with the same DSL functions users call.
#pragma once

#include <vector>

#include "graph/graph.h"

namespace tessel {

class GradientContext {
 public:
  GradientContext(Graph& graph, Node node, std::vector<Tensor> output_gradients, std::vector<bool> needs_gradient);

  Graph& graph() { return graph_; }
  const Attributes& attrs() const { return node_.attrs; }
  int num_inputs() const { return static_cast<int>(node_.inputs.size()); }
  Tensor input(int index) const;
  Tensor output(int index = 0) const;
  // The gradient flowing into output `index`; zeros where nothing flows back into it.
  Tensor output_gradient(int index = 0);

  // Whether the target depends on input `index` through a tensor it is differentiated by.
  bool needs_gradient(int index) const { return needs_gradient_[index]; }
  void set_input_gradient(int index, Tensor gradient);
  const Tensor& input_gradient(int index) const { return input_gradients_[index]; }

 private:
  Graph& graph_;
  Node node_;  // a copy: rules append nodes, which may move the graph's node storage
  std::vector<Tensor> output_gradients_;
  std::vector<bool> needs_gradient_;
  std::vector<Tensor> input_gradients_;
};

}  // namespace tessel
