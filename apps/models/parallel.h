// The four parallel layouts, each a two-layer MLP on synthetic data written in the DSL with a
// few pins; the compiler chooses every other layout and every transfer.
//
// Placements follow the job: each example is laid over ExampleSize::devices devices (4 by
// default), so one program runs unchanged on 1, 4 or 64 processes.
//   data-parallel    batch S(0), parameters B, gradients P, all-reduced for the update
//   tensor-parallel  Megatron-style: x B, w1 S(1), b1 S(0), w2 S(0): the output is P(sum)
//   pipeline         stage 1 on the first half of the devices, stage 2 on the second (each
//                    data-parallel), the batch in micro-batches that flow through the stages
//   hybrid           a (devices/2) x 2 mesh, data x tensor: x (S(0), B), w1 (B, S(1)), w2 (B, S(0))
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "graph/graph.h"

namespace tessel::models {

struct ExampleSize {
  int64_t batch = 64, inputs = 32, hidden = 128, outputs = 16;
  int micro_batches = 4;  // pipeline only; must divide the batch
  int devices = 4;        // pipeline and hybrid need an even number
};

struct ParallelExample {
  std::string name, summary;
  std::unique_ptr<Graph> graph{};
  Tensor loss{};
  Placement placement{};  // where tensors nothing pins live
  // The step's inputs: x drawn at random, targets from a fixed teacher (tanh(x T)); the same
  // on every machine.
  std::function<Feeds(int64_t step)> feeds{};
};

std::vector<std::string> parallel_example_names();
// Error::NotFound listing the names for an unknown one; Error::InvalidArgument for a number of
// devices the example cannot be laid over.
ParallelExample build_parallel_example(const std::string& name, const ExampleSize& size = {});

}  // namespace tessel::models
