// Example models written in the DSL, shared by the programs in apps/ and the benchmarks.
#pragma once

#include <cstdint>
#include <vector>

#include "graph/graph.h"

namespace tessel::models {

struct Mlp {
  Tensor x;       // input "x": [batch, widths.front()]
  Tensor target;  // input "target": [batch, widths.back()]
  Tensor loss;    // mean squared error
  std::vector<Tensor> weights;
  // Multiply-adds of one training step (forward, and backward for inputs and weights) x 2.
  double flops_per_step = 0;
};

// An MLP with ReLU between its layers (no bias), a mean-squared-error loss against "target",
// and SGD at `lr`: the model of the runtime benchmark (1024-4096-4096-1024, batch 256).
// `matmuls` bf16: each product's operands are cast to bf16 and the product back to f32, so the
// matmuls (forward and backward) run in bf16 while the weights, their gradients and SGD stay f32.
// Error::InvalidArgument for fewer than two widths or a width or batch below 1.
Mlp build_mlp(Graph& g, const std::vector<int64_t>& widths, int64_t batch, double lr = 1e-3,
              MinimizeOptions options = {}, DType matmuls = DType::f32);

}  // namespace tessel::models
