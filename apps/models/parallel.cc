#include "apps/models/parallel.h"

#include <cmath>

#include "core/random.h"
#include "ops/ops.h"

namespace tessel::models {
namespace {

// Every example trains with the same optimizer, so that a checkpoint of one loads into another:
// AdamW, whose moments and step count are state a checkpoint must carry.
const AdamW kOptimizer{.lr = 3e-3, .weight_decay = 1e-4};

struct Layer {
  Tensor weight, bias;
};

Layer layer(Graph& g, const std::string& name, int64_t in, int64_t out) {
  return {g.param(concat(name, "/w"), {in, out}, init::normal(1.0 / std::sqrt(static_cast<double>(in)))),
          g.param(concat(name, "/b"), {out}, init::zeros())};
}

Tensor apply(const Layer& l, const Tensor& x) { return bias_add(matmul(x, l.weight), l.bias); }

Tensor squared_error(const Tensor& y, const Tensor& target) {
  Tensor error = y - target;
  return mean(error * error);
}

// x[step] uniform in [-1, 1); target = tanh(x T) for a fixed teacher T. Sample i of step s is
// row i of its batch; with micro-batches, micro-batch m holds rows m * rows to (m + 1) * rows - 1
// of the same batch, so every layout trains on the same samples.
std::function<Feeds(int64_t)> teacher_data(const ExampleSize& size, int micro_batches) {
  HostTensor teacher(Shape{size.inputs, size.outputs}, DType::f32);
  for (int64_t i = 0; i < teacher.numel(); ++i) {
    teacher.data<float>()[i] = static_cast<float>((2 * uniform_at(4242, i) - 1) / std::sqrt(size.inputs));
  }
  return [size, micro_batches, teacher](int64_t step) {
    HostTensor x(Shape{size.batch, size.inputs}, DType::f32), target(Shape{size.batch, size.outputs}, DType::f32);
    const uint64_t seed = 1000003 * static_cast<uint64_t>(step);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(2 * uniform_at(seed, i) - 1);
    for (int64_t r = 0; r < size.batch; ++r) {
      for (int64_t o = 0; o < size.outputs; ++o) {
        double sum = 0;
        for (int64_t i = 0; i < size.inputs; ++i) {
          sum += x.data<float>()[r * size.inputs + i] * teacher.data<float>()[i * size.outputs + o];
        }
        target.data<float>()[r * size.outputs + o] = static_cast<float>(std::tanh(sum));
      }
    }
    if (micro_batches == 1) return Feeds{{"x", x}, {"target", target}};
    const int64_t rows = size.batch / micro_batches;
    Feeds feeds;
    for (int m = 0; m < micro_batches; ++m) {
      feeds[concat("x", m)] = block_of(x, {m * rows, 0}, Shape{rows, size.inputs});
      feeds[concat("target", m)] = block_of(target, {m * rows, 0}, Shape{rows, size.outputs});
    }
    return feeds;
  };
}

// Inputs x and target of the whole batch, and the two layers.
struct TwoLayers {
  Tensor x, target;
  Layer l1, l2;
};
TwoLayers two_layers(Graph& g, const ExampleSize& size) {
  return {g.input("x", {size.batch, size.inputs}), g.input("target", {size.batch, size.outputs}),
          layer(g, "l1", size.inputs, size.hidden), layer(g, "l2", size.hidden, size.outputs)};
}

ParallelExample data_parallel(const ExampleSize& size) {
  ParallelExample e{.name = "data-parallel",
                    .summary = concat(size.devices, " devices: batch S(0), parameters B, gradients P then all-reduced"),
                    .graph = std::make_unique<Graph>(1),
                    .placement = Placement::cpu(size.devices)};
  Graph& g = *e.graph;
  const auto [x, target, l1, l2] = two_layers(g, size);
  pin(x, e.placement, {S(0)});
  pin(target, e.placement, {S(0)});
  for (const Tensor& p : {l1.weight, l1.bias, l2.weight, l2.bias}) pin(p, e.placement, {B});
  e.loss = squared_error(apply(l2, relu(apply(l1, x))), target);
  g.minimize(e.loss, kOptimizer);
  e.feeds = teacher_data(size, 1);
  return e;
}

ParallelExample tensor_parallel(const ExampleSize& size) {
  ParallelExample e{
      .name = "tensor-parallel",
      .summary =
          concat(size.devices, " devices, Megatron MLP: x B, w1 S(1), b1 S(0), w2 S(0); x w1 is S(1), h w2 is P(sum)"),
      .graph = std::make_unique<Graph>(1),
      .placement = Placement::cpu(size.devices)};
  Graph& g = *e.graph;
  const auto [x, target, l1, l2] = two_layers(g, size);
  pin(x, e.placement, {B});
  pin(l1.weight, e.placement, {S(1)});  // column-parallel
  pin(l1.bias, e.placement, {S(0)});
  pin(l2.weight, e.placement, {S(0)});  // row-parallel: its product is P(sum)
  pin(l2.bias, e.placement, {B});
  Tensor h = relu(apply(l1, x));          // S(1): each device holds its hidden columns
  Tensor partial = matmul(h, l2.weight);  // P(sum): every device holds a full-shape partial product
  // Megatron's all-reduce: without this pin, inference (greedy, op by op) would reduce-scatter
  // the product to S(0), the cheaper conversion here, and pay for it in the backward pass.
  Tensor y = bias_add(to(partial, {B}), l2.bias);
  e.loss = squared_error(y, target);
  g.minimize(e.loss, kOptimizer);
  e.feeds = teacher_data(size, 1);
  return e;
}

ParallelExample pipeline(const ExampleSize& size) {
  const int half = size.devices / 2;
  const Placement stage1 = Placement::cpu(half), stage2 = Placement::cpu(half, half);
  ParallelExample e{.name = "pipeline",
                    .summary = concat("stage 1 on ", stage1.to_string(), ", stage 2 on ", stage2.to_string(), ", ",
                                      size.micro_batches, " micro-batches in flight, each stage data-parallel"),
                    .graph = std::make_unique<Graph>(1),
                    .placement = stage1};
  if (size.micro_batches < 1 || size.batch % size.micro_batches != 0) {
    throw Error::InvalidArgument(concat(size.micro_batches, " micro-batches do not divide the batch of ", size.batch));
  }
  Graph& g = *e.graph;
  const Layer l1 = layer(g, "l1", size.inputs, size.hidden), l2 = layer(g, "l2", size.hidden, size.outputs);
  pin(l1.weight, stage1, {B});
  pin(l1.bias, stage1, {B});
  pin(l2.weight, stage2, {B});
  pin(l2.bias, stage2, {B});
  const int64_t rows = size.batch / size.micro_batches;
  for (int m = 0; m < size.micro_batches; ++m) {
    Tensor x = g.input(concat("x", m), {rows, size.inputs});
    Tensor target = g.input(concat("target", m), {rows, size.outputs});
    pin(x, stage1, {S(0)});
    pin(target, stage2, {S(0)});
    Tensor h = relu(apply(l1, x));
    Tensor handed = to(h, stage2, {S(0)});  // the hand-off: micro-batch m moves on while m+1 enters stage 1
    Tensor loss = squared_error(apply(l2, handed), target) / static_cast<double>(size.micro_batches);
    e.loss = e.loss.defined() ? e.loss + loss : loss;
  }
  g.minimize(e.loss, kOptimizer);
  e.feeds = teacher_data(size, size.micro_batches);
  return e;
}

ParallelExample hybrid(const ExampleSize& size) {
  const Placement mesh = Placement::cpu_mesh_for(size.devices, {-1, 2});  // data x 2-way tensor
  ParallelExample e{.name = "hybrid",
                    .summary = concat(mesh.mesh[0],
                                      "x2 mesh, data x tensor: x (S(0), B), w1 (B, S(1)), b1 (B, S(0)), "
                                      "w2 (B, S(0))"),
                    .graph = std::make_unique<Graph>(1),
                    .placement = mesh};
  Graph& g = *e.graph;
  const auto [x, target, l1, l2] = two_layers(g, size);
  pin(x, mesh, {S(0), B});
  pin(target, mesh, {S(0), B});
  pin(l1.weight, mesh, {B, S(1)});
  pin(l1.bias, mesh, {B, S(0)});
  pin(l2.weight, mesh, {B, S(0)});
  pin(l2.bias, mesh, {B, B});
  e.loss = squared_error(apply(l2, relu(apply(l1, x))), target);
  g.minimize(e.loss, kOptimizer);
  e.feeds = teacher_data(size, 1);
  return e;
}

}  // namespace

std::vector<std::string> parallel_example_names() { return {"data-parallel", "tensor-parallel", "pipeline", "hybrid"}; }

ParallelExample build_parallel_example(const std::string& name, const ExampleSize& size) {
  const bool halves = name == "pipeline" || name == "hybrid";
  if (size.devices < 1 || (halves && size.devices % 2 != 0)) {
    throw Error::InvalidArgument(concat("the ", name, " example cannot be laid over ", size.devices,
                                        " devices (expected ", halves ? "an even number of them" : "at least one",
                                        ")"));
  }
  if (name == "data-parallel") return data_parallel(size);
  if (name == "tensor-parallel") return tensor_parallel(size);
  if (name == "pipeline") return pipeline(size);
  if (name == "hybrid") return hybrid(size);
  std::string names;
  for (const std::string& known : parallel_example_names()) names += concat(names.empty() ? "" : ", ", known);
  throw Error::NotFound(concat("no example named '", name, "' (expected one of ", names, ")"));
}

}  // namespace tessel::models
