// Epilogue fusion (graph/fuse.cc): which chains fuse, which do not, and that fused and unfused
// plans train to the same numbers.
#include <algorithm>
#include <cmath>

#include "apps/models/mlp.h"
#include "graph/compile.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "runtime/session.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

bool have_fused_kernel() { return OpRegistry::global().has_kernel("fused_matmul", DeviceType::cpu, DType::f32); }

// The names of the plan's fused_matmul actors, and how many kernels it has.
struct Kernels {
  std::vector<std::string> fused;
  int count = 0;
};
Kernels kernels_of(const proto::Plan& plan) {
  Kernels k;
  for (const proto::RankPlan& rank : plan.ranks()) {
    for (const proto::DevicePlan& device : rank.devices()) {
      for (const proto::ActorDef& actor : device.actors()) {
        if (actor.kind() != proto::ActorKind::KERNEL) continue;
        ++k.count;
        if (actor.op() == "fused_matmul") k.fused.push_back(actor.name());
      }
    }
  }
  std::sort(k.fused.begin(), k.fused.end());
  return k;
}

TEST(Fuse, ChainsFuseOnlyWhereNothingElseReadsTheIntermediates) {
  if (!have_fused_kernel()) GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no fused_matmul kernel";
  Graph g;
  Tensor x = g.input("x", {4, 8});
  Tensor w1 = g.param("w1", {8, 16}, init::normal(0.1)), b1 = g.param("b1", {16}, init::normal(0.1));
  Tensor w2 = g.param("w2", {16, 16}, init::normal(0.1)), b2 = g.param("b2", {16}, init::normal(0.1));
  Tensor w3 = g.param("w3", {16, 4}, init::normal(0.1));
  Tensor h1 = gelu(bias_add(matmul(x, w1), b1));  // all three fuse when evaluating
  Tensor z2 = bias_add(matmul(h1, w2), b2);       // z2 is also fetched: only matmul + bias_add fuse
  Tensor h2 = relu(z2);
  Tensor out = matmul(h2, w3);  // nothing follows: stays a plain matmul
  Tensor loss = sum(out * out);
  g.minimize(loss, SGD{.lr = 0.1});

  const Kernels evaluation = kernels_of(compile_plan(g, {.fetches = {loss, z2}, .training = false}));
  EXPECT_EQ(evaluation.fused, (std::vector<std::string>{"matmul_0+bias_add+gelu", "matmul_1+bias_add"}));
  const Kernels unfused = kernels_of(compile_plan(g, {.fetches = {loss, z2}, .training = false, .fuse = false}));
  EXPECT_TRUE(unfused.fused.empty());
  EXPECT_EQ(unfused.count, evaluation.count + 3);  // the bias_adds and the gelu

  // Training: gelu_grad reads gelu's input, so the first chain stops at the bias; relu_grad reads
  // relu's output, so without the fetch the second chain fuses whole. Backward matmuls have
  // nothing to fuse.
  const Kernels training = kernels_of(compile_plan(g, {.fetches = {loss}}));
  EXPECT_EQ(training.fused, (std::vector<std::string>{"matmul_0+bias_add", "matmul_1+bias_add+relu"}));
}

// The MLP (relu, no bias) and a model with biases and gelu, trained 10 steps with fusion on and
// off: losses and weights within 1e-5.
TEST(Fuse, FusedAndUnfusedPlansTrainToTheSameNumbers) {
  if (!have_fused_kernel()) GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no fused_matmul kernel";
  for (int threads : {1, 2}) {
    SCOPED_TRACE(concat(threads, " kernel thread(s)"));
    const auto run = [threads](bool fuse) {
      Graph g;
      const models::Mlp mlp = models::build_mlp(g, {64, 256, 256, 32}, 48, 0.05);
      Session session(g, {mlp.loss}, {.fuse = fuse, .kernel_threads_per_device = threads});
      std::vector<double> losses;
      for (int step = 0; step < 10; ++step) {
        const Feeds feeds{{"x", testing::random_tensor({48, 64}, 10 + step)},
                          {"target", testing::random_tensor({48, 32}, 20 + step)}};
        losses.push_back(session.step(feeds)[0].get(0));
      }
      std::vector<std::vector<float>> weights;
      for (const char* w : {"w1", "w2", "w3"}) weights.push_back(session.variable(w).to_floats());
      return std::pair{losses, weights};
    };
    const auto [fused_losses, fused_weights] = run(true);
    const auto [losses, weights] = run(false);
    EXPECT_LT(fused_losses.back(), fused_losses.front()) << "the MLP did not learn";
    for (size_t s = 0; s < losses.size(); ++s) {
      EXPECT_NEAR(fused_losses[s], losses[s], 1e-5 * std::abs(losses[s])) << "step " << s;
    }
    for (size_t w = 0; w < weights.size(); ++w) {
      float scale = 1e-3f, worst = 0;
      for (float v : weights[w]) scale = std::max(scale, std::fabs(v));
      for (size_t i = 0; i < weights[w].size(); ++i)
        worst = std::max(worst, std::fabs(fused_weights[w][i] - weights[w][i]));
      EXPECT_LE(worst, 1e-5f * scale) << "w" << w + 1;
    }
  }
}

// Evaluating bias + gelu and bias + relu chains over several row blocks and two threads, fused
// (oneDNN's post-ops) against unfused (Tessel's kernels).
TEST(Fuse, FusedEpiloguesGiveTheUnfusedValues) {
  if (!have_fused_kernel()) GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no fused_matmul kernel";
  Graph g;
  Tensor x = g.input("x", {3, 70, 96});
  Tensor w = g.param("w", {96, 80}, init::normal(0.3)), b = g.param("b", {80}, init::normal(1.0));
  Tensor wt = g.param("wt", {80, 96}, init::normal(0.3));
  Tensor gelu_out = gelu(bias_add(matmul(x, w), b));
  Tensor relu_out = relu(bias_add(matmul(x, wt, {.transpose_b = true}), b));
  Tensor plain = relu(matmul(x, w));
  const Feeds feeds{{"x", testing::random_tensor({3, 70, 96}, 5)}};
  const auto evaluate = [&](bool fuse) {
    Session session(g, {gelu_out}, {.fuse = fuse, .kernel_threads_per_device = 2});
    return session.evaluate(feeds, {gelu_out, relu_out, plain});
  };
  const std::vector<HostTensor> fused = evaluate(true), unfused = evaluate(false);
  for (size_t t = 0; t < fused.size(); ++t) {
    const std::vector<float> got = fused[t].to_floats(), want = unfused[t].to_floats();
    float scale = 0, worst = 0;
    for (float v : want) scale = std::max(scale, std::fabs(v));
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
    EXPECT_GT(scale, 1.0f) << "output " << t;
    EXPECT_LE(worst, 1e-5f * scale) << "output " << t;
  }
}

// With bf16 matmuls the fused product goes to f32 straight from oneDNN's f32 accumulator, where
// the unfused plan rounds it to bf16 first: the two differ by that one rounding, and the fused one
// is the nearer to f32.
TEST(Fuse, Bf16ProductsFuseTheirCastAndSkipOneRounding) {
  if (!OpRegistry::global().has_kernel("fused_matmul", DeviceType::cpu, DType::bf16)) {
    GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no bf16 fused_matmul kernel";
  }
  Graph g;
  Tensor x = g.input("x", {64, 128});
  Tensor w = g.param("w", {128, 96}, init::normal(0.2));
  Tensor low = relu(cast(matmul(cast(x, DType::bf16), cast(w, DType::bf16)), DType::f32));
  Tensor exact = relu(matmul(cast(cast(x, DType::bf16), DType::f32), cast(cast(w, DType::bf16), DType::f32)));
  const Feeds feeds{{"x", testing::random_tensor({64, 128}, 9)}};
  EXPECT_EQ(kernels_of(compile_plan(g, {.fetches = {low}, .training = false})).fused,
            std::vector<std::string>{"matmul_0+cast+relu"});
  const auto evaluate = [&](bool fuse) {
    Session session(g, {low}, {.fuse = fuse});
    return session.evaluate(feeds, {low, exact});
  };
  const std::vector<HostTensor> fused = evaluate(true), unfused = evaluate(false);
  const std::vector<float> f = fused[0].to_floats(), u = unfused[0].to_floats(), e = fused[1].to_floats();
  float scale = 0, fused_error = 0, unfused_error = 0;
  for (float v : e) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < e.size(); ++i) {
    fused_error = std::max(fused_error, std::fabs(f[i] - e[i]));
    unfused_error = std::max(unfused_error, std::fabs(u[i] - e[i]));
  }
  EXPECT_GT(scale, 0.5f);
  EXPECT_LE(fused_error, 1e-5f * scale) << "the fused product is f32 of the bf16 operands";
  EXPECT_GT(unfused_error, fused_error) << "the unfused product is rounded to bf16";
  EXPECT_LE(unfused_error, scale / 256);
}

}  // namespace
}  // namespace tessel
