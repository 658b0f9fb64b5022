// Training features: learning-rate schedules with no recompiling, frozen parameters, parameter
// groups without weight decay, and gradient clipping by global norm under every layout.
#include <cmath>

#include "graph/compile.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

TEST(Training, ScheduleChangesTheRateEveryStepWithoutRecompiling) {
  // loss = sum(p * c): SGD moves p by lr_t * c at update t.
  Graph g;
  Tensor p = g.param("p", {2}, init::constant(1));
  Tensor c = g.input("c", {2});
  Tensor loss = sum(p * c);
  const LrSchedule schedule{.warmup_steps = 3, .decay = LrSchedule::Decay::cosine, .total_steps = 10, .min_lr = 0.01};
  g.minimize(loss, SGD{.lr = 0.1}, MinimizeOptions{.schedule = schedule});
  const Feeds feeds{{"c", HostTensor::of<float>({2}, {1, -2})}};
  const int64_t before = compile_count();
  Session session(g, {loss});
  const int64_t compiled = compile_count() - before;
  EXPECT_GE(compiled, 1);
  std::vector<float> previous = session.variable("p").to_floats();
  std::vector<double> rates;
  for (int t = 0; t < 12; ++t) {
    session.step(feeds);
    const std::vector<float> now = session.variable("p").to_floats();
    const double rate = previous[0] - now[0];  // c[0] = 1
    EXPECT_NEAR(rate, scheduled_lr(0.1, schedule, t), 1e-6) << "update " << t;
    EXPECT_NEAR(now[1] - previous[1], 2 * rate, 1e-6) << "update " << t;
    rates.push_back(rate);
    previous = now;
  }
  EXPECT_EQ(compile_count() - before, compiled) << "a step recompiled";
  // By hand: warmup 0.1/3, 0.2/3, 0.3/3; the peak; halfway down the cosine; min_lr at the end.
  EXPECT_NEAR(rates[0], 0.1 / 3, 1e-6);
  EXPECT_NEAR(rates[2], 0.1, 1e-6);
  EXPECT_NEAR(rates[3], 0.1, 1e-6);
  EXPECT_NEAR(rates[6], 0.01 + 0.045 * (1 + std::cos(M_PI * 3 / 7)), 1e-6);  // 3 of the cosine's 7 updates
  EXPECT_NEAR(rates[10], 0.01, 1e-6);
  EXPECT_NEAR(rates[11], 0.01, 1e-6);
}

TEST(Training, ScheduleSettingsAreChecked) {
  Graph g;
  Tensor p = g.param("p", {2});
  Tensor loss = sum(p * p);
  EXPECT_THROW(g.minimize(loss, SGD{}, {.schedule = {.warmup_steps = -1}}), Error);
  EXPECT_THROW(g.minimize(loss, SGD{}, {.schedule = {.warmup_steps = 5, .decay = LrSchedule::Decay::cosine,
                                                      .total_steps = 2}}),
               Error);
  EXPECT_THROW(g.minimize(loss, SGD{}, {.clip_grad_norm = std::nan("")}), Error);
  EXPECT_THROW(g.minimize(loss, SGD{}, {.accumulation_steps = 2, .clip_grad_norm = 1}), Error);
}

TEST(Training, FrozenParametersStayAndTheOthersTrain) {
  Graph g;
  Tensor a = g.param("a", {3}, init::constant(1));
  Tensor b = g.param("b", {3}, init::constant(2));
  Tensor loss = sum(a * b);
  g.minimize(loss, SGD{.lr = 0.5}, {.frozen = {b}});
  Interpreter interpreter(g);
  interpreter.train_step({}, {loss});
  for (float v : interpreter.variable("b").to_floats()) EXPECT_EQ(v, 2);
  for (float v : interpreter.variable("a").to_floats()) EXPECT_FLOAT_EQ(v, 1 - 0.5f * 2);

  Graph h;
  Tensor only = h.param("only", {2});
  Tensor x = h.input("x", {2});
  EXPECT_THROW(h.minimize(sum(only * only), SGD{}, {.frozen = {only}}), Error);  // nothing left to train
  EXPECT_THROW(h.minimize(sum(only * only), SGD{}, {.frozen = {x}}), Error);     // not a parameter
}

TEST(Training, BiasesAndNormScalesCanGoWithoutWeightDecay) {
  // Zero gradients: AdamW then only decays, p *= 1 - lr * weight_decay.
  for (bool by_rank : {true, false}) {
    Graph g;
    Tensor w = g.param("w", {2, 2}, init::constant(1));
    Tensor bias = g.param("bias", {2}, init::constant(1));
    Tensor gamma = g.param("gamma", {2}, init::constant(1));
    Tensor loss = scale(sum(w) + sum(bias) + sum(gamma), 0.0);
    MinimizeOptions options;
    if (by_rank) options.decay_only_matrices = true;
    else options.no_weight_decay = {bias, gamma};
    g.minimize(loss, AdamW{.lr = 0.1, .weight_decay = 0.5}, options);
    Interpreter interpreter(g);
    interpreter.train_step({}, {loss});
    for (float v : interpreter.variable("w").to_floats()) EXPECT_FLOAT_EQ(v, 0.95f);
    for (const char* name : {"bias", "gamma"}) {
      for (float v : interpreter.variable(name).to_floats()) EXPECT_EQ(v, 1) << name;
    }
  }
}

// x [8, 6] -> gelu(x w1 + b1) w2 -> cross_entropy over 4 classes, with its feeds, laid out over 2
// devices as `layout` (one-device, data-parallel or tensor-parallel: w1 by columns, w2 by rows).
struct SmallMlp {
  Tensor w2, loss;
  Feeds feeds;
  Placement mesh = Placement::cpu(2);
};

SmallMlp small_mlp(Graph& g, const std::string& layout) {
  SmallMlp m;
  Tensor x = g.input("x", {8, 6});
  Tensor y = g.input("y", {8}, i64);
  Tensor w1 = g.param("w1", {6, 8}, init::normal(0.5));
  Tensor b1 = g.param("b1", {8}, init::normal(0.5));
  m.w2 = g.param("w2", {8, 4}, init::normal(0.5));
  if (layout == "data-parallel") pin(x, m.mesh, {S(0)});
  if (layout == "tensor-parallel") {
    pin(w1, m.mesh, {S(1)});
    pin(b1, m.mesh, {S(0)});
    pin(m.w2, m.mesh, {S(0)});
  }
  m.loss = cross_entropy(matmul(gelu(bias_add(matmul(x, w1), b1)), m.w2), y);
  m.feeds = {{"x", testing::random_tensor({8, 6}, 4)}, {"y", HostTensor(Shape{8}, i64)}};
  for (int i = 0; i < 8; ++i) m.feeds["y"].set(i, i % 4);
  return m;
}

// One SGD step with lr 1 moves each parameter by its (clipped) gradient.
struct ClippedStep {
  std::map<std::string, std::vector<float>> moves;
  double norm = 0;
};

ClippedStep clipped_step(const std::string& layout, double clip) {
  Graph g(3);
  const SmallMlp mlp = small_mlp(g, layout);
  const Tensor& loss = mlp.loss;
  const Feeds& feeds = mlp.feeds;
  const Placement& mesh = mlp.mesh;
  g.minimize(loss, SGD{.lr = 1}, {.clip_grad_norm = clip});
  std::map<std::string, HostTensor> before, after;
  if (layout == "one-device") {
    Interpreter interpreter(g);
    for (const char* name : {"w1", "b1", "w2"}) before[name] = interpreter.variable(name).clone();
    interpreter.train_step(feeds, {loss});
    for (const char* name : {"w1", "b1", "w2"}) after[name] = interpreter.variable(name);
  } else {
    Session session(g, {.fetches = {loss}, .placement = mesh});
    for (const char* name : {"w1", "b1", "w2"}) before[name] = session.variable(name);
    session.step(feeds);
    for (const char* name : {"w1", "b1", "w2"}) after[name] = session.variable(name);
  }
  ClippedStep result;
  for (const auto& [name, start] : before) {
    for (int64_t i = 0; i < start.numel(); ++i) {
      const double move = start.get(i) - after[name].get(i);
      result.moves[name].push_back(static_cast<float>(move));
      result.norm += move * move;
    }
  }
  result.norm = std::sqrt(result.norm);
  return result;
}

TEST(Training, ClippingGivesTheSameClippedGradientsUnderEveryLayout) {
  const ClippedStep free = clipped_step("one-device", 0);
  ASSERT_GT(free.norm, 0.2) << "the test needs a gradient that clipping shrinks";
  const ClippedStep reference = clipped_step("one-device", 0.1);
  EXPECT_NEAR(reference.norm, 0.1, 1e-5);
  for (const auto& [name, moves] : reference.moves) {
    for (size_t i = 0; i < moves.size(); ++i) {
      EXPECT_NEAR(moves[i], free.moves.at(name)[i] * 0.1 / (free.norm + 1e-6), 1e-6) << name << "[" << i << "]";
    }
  }
  // A clip above the norm changes nothing.
  const ClippedStep loose = clipped_step("one-device", 1000);
  EXPECT_NEAR(loose.norm, free.norm, 1e-6);
  for (const std::string layout : {"data-parallel", "tensor-parallel"}) {
    const ClippedStep got = clipped_step(layout, 0.1);
    EXPECT_NEAR(got.norm, 0.1, 1e-5) << layout;
    for (const auto& [name, moves] : reference.moves) {
      for (size_t i = 0; i < moves.size(); ++i) {
        EXPECT_NEAR(got.moves.at(name)[i], moves[i], 1e-6) << layout << ": " << name << "[" << i << "]";
      }
    }
  }
}

// Frozen parameters and parameters without weight decay, compiled over 2 devices as data- and
// tensor-parallel plans: three AdamW steps give the interpreter's parameters, the frozen w2 does
// not move, and b1 (no decay) ends where it would not with decay.
std::map<std::string, HostTensor> frozen_and_undecayed(const std::string& layout, bool decay_biases) {
  Graph g(5);
  const SmallMlp mlp = small_mlp(g, layout);
  const Tensor &loss = mlp.loss, &w2 = mlp.w2;
  const Feeds& feeds = mlp.feeds;
  const Placement& mesh = mlp.mesh;
  g.minimize(loss, AdamW{.lr = 0.05, .weight_decay = 0.5}, {.frozen = {w2}, .decay_only_matrices = !decay_biases});
  std::map<std::string, HostTensor> result;
  if (layout == "one-device") {
    Interpreter interpreter(g);
    result["w2 before"] = interpreter.variable("w2").clone();
    for (int s = 0; s < 3; ++s) interpreter.train_step(feeds, {loss});
    for (const char* name : {"w1", "b1", "w2"}) result[name] = interpreter.variable(name);
  } else {
    Session session(g, {.fetches = {loss}, .placement = mesh});
    result["w2 before"] = session.variable("w2");
    for (int s = 0; s < 3; ++s) session.step(feeds);
    for (const char* name : {"w1", "b1", "w2"}) result[name] = session.variable(name);
  }
  return result;
}

TEST(Training, FrozenAndUndecayedParametersHoldUnderEveryLayout) {
  const auto reference = frozen_and_undecayed("one-device", false);
  const auto decayed = frozen_and_undecayed("one-device", true);
  double bias_gap = 0;
  for (int64_t i = 0; i < reference.at("b1").numel(); ++i) {
    bias_gap = std::max(bias_gap, std::abs(reference.at("b1").get(i) - decayed.at("b1").get(i)));
  }
  EXPECT_GT(bias_gap, 1e-4) << "decaying the bias made no difference: the test cannot tell the groups apart";
  for (const std::string layout : {"one-device", "data-parallel", "tensor-parallel"}) {
    const auto got = frozen_and_undecayed(layout, false);
    for (int64_t i = 0; i < got.at("w2").numel(); ++i) {
      EXPECT_EQ(got.at("w2").get(i), got.at("w2 before").get(i)) << layout << ": the frozen w2 moved";
    }
    for (const char* name : {"w1", "b1"}) {
      for (int64_t i = 0; i < got.at(name).numel(); ++i) {
        EXPECT_NEAR(got.at(name).get(i), reference.at(name).get(i), 1e-5) << layout << ": " << name << "[" << i << "]";
      }
    }
  }
}

}  // namespace
}  // namespace tessel
