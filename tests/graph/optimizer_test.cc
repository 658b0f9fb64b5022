// Optimizer updates against values worked out by hand, and gradient accumulation.
#include <cmath>

#include "graph/graph.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

// loss = sum(p * c): the gradient of p is the constant c, whatever p is.
struct ConstantGradient {
  Graph g;
  Tensor p, loss;
  ConstantGradient(std::vector<float> initial, std::vector<float> c) {
    const Shape shape{static_cast<int64_t>(initial.size())};
    p = g.param("p", shape);
    Tensor weights = g.input("c", shape);
    loss = sum(p * weights);
    feeds = {{"c", HostTensor::of<float>(shape, c)}};
    start = HostTensor::of<float>(shape, initial);
  }
  std::vector<std::vector<float>> train(int steps) {
    Interpreter interpreter(g);
    interpreter.set_variable("p", start);
    std::vector<std::vector<float>> history;
    for (int i = 0; i < steps; ++i) {
      interpreter.train_step(feeds, {loss});
      history.push_back(interpreter.variable("p").to_floats());
    }
    return history;
  }
  Feeds feeds;
  HostTensor start;
};

TEST(Optimizer, PlainSgd) {
  ConstantGradient model({1, 2}, {0.5, -1});
  model.g.minimize(model.loss, SGD{.lr = 0.1});
  const auto p = model.train(2);
  // p -= 0.1 * c, twice.
  EXPECT_FLOAT_EQ(p[0][0], 0.95f);
  EXPECT_FLOAT_EQ(p[0][1], 2.1f);
  EXPECT_FLOAT_EQ(p[1][0], 0.9f);
  EXPECT_FLOAT_EQ(p[1][1], 2.2f);
}

TEST(Optimizer, SgdWithMomentum) {
  ConstantGradient model({1, 2}, {0.5, -1});
  model.g.minimize(model.loss, SGD{.lr = 0.1, .momentum = 0.9});
  const auto p = model.train(3);
  // buffer: c, then 1.9 c, then 2.71 c; p -= 0.1 * buffer.
  EXPECT_FLOAT_EQ(p[0][0], 0.95f);
  EXPECT_FLOAT_EQ(p[1][0], 0.855f);   // 0.95 - 0.095
  EXPECT_FLOAT_EQ(p[2][0], 0.7195f);  // 0.855 - 0.1355
  EXPECT_FLOAT_EQ(p[2][1], 2.0f + 0.1f + 0.19f + 0.271f);
}

TEST(Optimizer, SgdWithWeightDecay) {
  ConstantGradient model({1}, {0.5});
  model.g.minimize(model.loss, SGD{.lr = 0.1, .weight_decay = 0.1});
  const auto p = model.train(2);
  // d = 0.5 + 0.1 p: p = 1 - 0.1 * 0.6 = 0.94; p = 0.94 - 0.1 * 0.594 = 0.8806.
  EXPECT_FLOAT_EQ(p[0][0], 0.94f);
  EXPECT_FLOAT_EQ(p[1][0], 0.8806f);
}

TEST(Optimizer, AdamW) {
  ConstantGradient model({1, -1}, {0.5, 2});
  model.g.minimize(model.loss, AdamW{.lr = 0.1, .weight_decay = 0.01});
  const auto p = model.train(2);
  // A constant gradient makes m̂ / sqrt(v̂) = sign(g) at every step, so each step is
  // p = p * (1 - lr * wd) - lr * sign(g):
  //   p0: 1 * 0.999 - 0.1 = 0.899,  0.899 * 0.999 - 0.1 = 0.798101
  //   p1: -1 * 0.999 - 0.1 = -1.099, -1.099 * 0.999 - 0.1 = -1.197901
  EXPECT_NEAR(p[0][0], 0.899f, 1e-6);
  EXPECT_NEAR(p[1][0], 0.798101f, 1e-6);
  EXPECT_NEAR(p[0][1], -1.099f, 1e-6);
  EXPECT_NEAR(p[1][1], -1.197901f, 1e-6);
}

TEST(Optimizer, AdamWBiasCorrectionWithChangingGradient) {
  // loss = sum(p * c) with c fed per step: g1 = 1, g2 = 3.
  ConstantGradient model({0}, {1});
  model.g.minimize(model.loss, AdamW{.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 0, .weight_decay = 0});
  Interpreter interpreter(model.g);
  interpreter.set_variable("p", model.start);
  interpreter.train_step({{"c", HostTensor::of<float>({1}, {1})}}, {});
  EXPECT_NEAR(interpreter.variable("p").get(0), -0.1, 1e-6);
  interpreter.train_step({{"c", HostTensor::of<float>({1}, {3})}}, {});
  // m = 0.09 + 0.3 = 0.39, m̂ = 0.39 / 0.19; v = 0.000999 + 0.009 = 0.009999, v̂ = v / 0.001999.
  const double m_hat = 0.39 / 0.19, v_hat = 0.009999 / 0.001999;
  EXPECT_NEAR(interpreter.variable("p").get(0), -0.1 - 0.1 * m_hat / std::sqrt(v_hat), 1e-6);
}

// A small regression model trained on batch `data` (8 rows), split into micro-batches.
struct Regression {
  Graph g;
  Tensor loss;
  explicit Regression(int batch, int accumulation, bool adam) {
    Tensor x = g.input("x", {batch, 3});
    Tensor y = g.input("y", {batch, 2});
    Tensor w = g.param("w", {3, 2}, init::normal(0.5));
    Tensor b = g.param("b", {2}, init::constant(0.1));
    Tensor error = tanh(bias_add(matmul(x, w), b)) - y;
    loss = mean(error * error);
    if (adam)
      g.minimize(loss, AdamW{.lr = 0.05}, {.accumulation_steps = accumulation});
    else
      g.minimize(loss, SGD{.lr = 0.3, .momentum = 0.5}, {.accumulation_steps = accumulation});
  }
};

HostTensor rows(const HostTensor& t, int64_t begin, int64_t end) {
  const int64_t width = t.shape()[1];
  HostTensor out(Shape{end - begin, width}, f32);
  std::copy(t.data<float>() + begin * width, t.data<float>() + end * width, out.data<float>());
  return out;
}

void expect_accumulation_matches_full_batch(bool adam) {
  const HostTensor x = testing::random_tensor({8, 3}, 1), y = testing::random_tensor({8, 2}, 2);
  Regression full(8, 1, adam), micro(2, 4, adam);
  Interpreter full_run(full.g), micro_run(micro.g);
  for (int step = 0; step < 3; ++step) {
    full_run.train_step({{"x", x}, {"y", y}}, {});
    const std::vector<float> before = micro_run.variable("w").to_floats();
    for (int part = 0; part < 4; ++part) {
      if (part > 0) {
        EXPECT_EQ(micro_run.variable("w").to_floats(), before) << "updated before the last micro-batch";
      }
      micro_run.train_step({{"x", rows(x, 2 * part, 2 * part + 2)}, {"y", rows(y, 2 * part, 2 * part + 2)}}, {});
    }
    for (const char* name : {"w", "b"}) {
      const std::vector<float> expected = full_run.variable(name).to_floats();
      const std::vector<float> actual = micro_run.variable(name).to_floats();
      for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(actual[i], expected[i], 1e-5) << name << i;
    }
  }
  EXPECT_NE(full_run.variable("w").to_floats(), Interpreter(full.g).variable("w").to_floats());
}

TEST(Optimizer, GradientAccumulationEqualsTheFullBatchWithSgd) { expect_accumulation_matches_full_batch(false); }
TEST(Optimizer, GradientAccumulationEqualsTheFullBatchWithAdamW) { expect_accumulation_matches_full_batch(true); }

}  // namespace
}  // namespace tessel
