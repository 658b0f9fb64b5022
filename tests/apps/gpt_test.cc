// The GPT (apps/models/gpt.h) in every layout over 4 devices against one device, and its text
// loader.
#include "apps/models/gpt.h"

#include <gtest/gtest.h>

#include <cmath>

#include "apps/models/text.h"
#include "ops/registry.h"
#include "proto/plan.pb.h"
#include "runtime/session.h"

namespace tessel::models {
namespace {

GptConfig small(const std::string& layout, int devices) {
  return {.vocab = kTextVocab,
          .context = 16,
          .width = 32,
          .heads = 4,
          .layers = 2,
          .batch = 8,
          .micro_batches = 2,
          .devices = devices,
          .layout = layout,
          .warmup_steps = 5,
          .total_steps = 20};
}

// A fixed pseudo-text, so the test needs no fortunes.
const std::vector<int32_t>& text() {
  static const std::vector<int32_t> tokens = encode(
      "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
      "how vexingly quick daft zebras jump! sphinx of black quartz, judge my vow.\n");
  return tokens;
}

struct Trained {
  std::vector<double> losses;
  std::map<std::string, HostTensor> params;
  std::vector<int32_t> sampled;  // 12 tokens drawn after row 0's prompt, through the sampler
};

Trained train(const GptConfig& config, int64_t steps, bool fuse = true) {
  Trained out;
  Gpt gpt = build_gpt(config);
  Session session(*gpt.graph, {gpt.loss}, {.fuse = fuse, .placement = gpt.placement});
  TextLoader loader(&text(), config.context, 7);
  std::vector<double>& losses = out.losses;
  for (int64_t s = 0; s < steps; ++s) {
    HostTensor inputs, targets;
    loader.batch(s * config.batch, config.batch, inputs, targets);
    losses.push_back(session.step(gpt_feeds(gpt, inputs, targets))[0].get(0));
  }
  for (const Tensor& p : gpt.graph->params()) {
    const std::string name = gpt.graph->node(p.node()).attrs.get_string("name");
    out.params[name] = session.variable(name);
  }
  std::vector<std::vector<int32_t>> contexts(gpt.rows_per_input(), encode("the quick"));
  for (int64_t draw = 0; draw < 12; ++draw) {
    const HostTensor next = drawn_tokens(session.evaluate(gpt_sample_feeds(gpt, contexts, 3, draw), gpt.next));
    for (int64_t r = 0; r < next.numel(); ++r) contexts[r].push_back(static_cast<int32_t>(next.get(r)));
    out.sampled.push_back(contexts[0].back());
  }
  return out;
}

TEST(Gpt, EveryLayoutOverFourDevicesGivesTheOneDeviceNumbers) {
  const Trained single = train(small("single", 1), 20);
  const std::vector<double>& expected = single.losses;
  const std::map<std::string, HostTensor>& expected_params = single.params;
  EXPECT_LT(expected.back(), expected.front() - 0.5) << "the model did not learn";
  for (const std::string layout : {"data-parallel", "tensor-parallel", "pipeline", "hybrid"}) {
    SCOPED_TRACE(layout);
    const Trained trained = train(small(layout, 4), 20);
    const std::vector<double>& losses = trained.losses;
    const std::map<std::string, HostTensor>& params = trained.params;
    EXPECT_EQ(decode(trained.sampled), decode(single.sampled)) << "the sampler draws other tokens";
    ASSERT_EQ(losses.size(), expected.size());
    for (size_t s = 0; s < losses.size(); ++s) {
      EXPECT_NEAR(losses[s], expected[s], 1e-5 * std::abs(expected[s])) << "step " << s;
    }
    ASSERT_EQ(params.size(), expected_params.size());
    for (const auto& [name, want] : expected_params) {
      const HostTensor& got = params.at(name);
      double scale = 1e-3, worst = 0;
      for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::abs(want.get(i)));
      for (int64_t i = 0; i < want.numel(); ++i) worst = std::max(worst, std::abs(got.get(i) - want.get(i)) / scale);
      EXPECT_LE(worst, 1e-5) << name;
    }
  }
}

// Epilogue fusion (graph/fuse.cc) changes no number: the GPT's q, v and MLP products fuse their
// biases (and, when sampling, the gelu), on one device and split by columns over four.
TEST(Gpt, FusedAndUnfusedPlansGiveTheSameNumbers) {
  if (!OpRegistry::global().has_kernel("fused_matmul", DeviceType::cpu, DType::f32)) {
    GTEST_SKIP() << "built without oneDNN (libdnnl-dev): nothing fuses";
  }
  for (const auto& [layout, devices] : {std::pair{"single", 1}, std::pair{"tensor-parallel", 4}}) {
    SCOPED_TRACE(layout);
    const Trained fused = train(small(layout, devices), 10), unfused = train(small(layout, devices), 10, false);
    EXPECT_EQ(decode(fused.sampled), decode(unfused.sampled));
    for (size_t s = 0; s < unfused.losses.size(); ++s) {
      EXPECT_NEAR(fused.losses[s], unfused.losses[s], 1e-5 * std::abs(unfused.losses[s])) << "step " << s;
    }
    for (const auto& [name, want] : unfused.params) {
      const HostTensor& got = fused.params.at(name);
      double scale = 1e-3, worst = 0;
      for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::abs(want.get(i)));
      for (int64_t i = 0; i < want.numel(); ++i) worst = std::max(worst, std::abs(got.get(i) - want.get(i)) / scale);
      EXPECT_LE(worst, 1e-5) << name;
    }
  }
}

// Mixed precision: every product on bf16 operands (GptConfig::matmuls), and with
// GptConfig::activations bf16 every activation and its gradient stored in bf16 too; f32 master
// weights and AdamW state. Each trains like f32 (per-step losses within 2%), and every layout over
// four devices gives the one-device losses of the same precision within `tolerance`. A shard's f32
// accumulation may take another order than the whole product's, the bf16 rounding of the next
// operand can turn that into one bf16 step, and with bf16 activations the tensor-parallel
// all-reduces add bf16 partial sums (rounding at each addition).
void expect_mixed_precision_trains_like_f32(DType activations, double tolerance) {
  if (!OpRegistry::global().has_kernel("matmul", DeviceType::cpu, DType::bf16)) {
    GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no bf16 matmul";
  }
  const auto bf16 = [&](GptConfig config) {
    config.matmuls = DType::bf16;
    config.activations = activations;
    return config;
  };
  const Trained f32 = train(small("single", 1), 20);
  const Trained single = train(bf16(small("single", 1)), 20);
  EXPECT_LT(single.losses.back(), single.losses.front() - 0.5) << "the bf16 model did not learn";
  double largest = 0;
  for (size_t s = 0; s < f32.losses.size(); ++s) {
    largest = std::max(largest, std::abs(single.losses[s] - f32.losses[s]) / f32.losses[s]);
    EXPECT_NEAR(single.losses[s], f32.losses[s], 0.02 * f32.losses[s]) << "step " << s;
  }
  EXPECT_GT(largest, 1e-6) << "the bf16 run computed in f32";
  if (activations != DType::f32) {
    GptConfig matmuls_only = small("single", 1);
    matmuls_only.matmuls = DType::bf16;
    const Trained autocast = train(matmuls_only, 20);
    double apart = 0;
    for (size_t s = 0; s < autocast.losses.size(); ++s) {
      apart = std::max(apart, std::abs(single.losses[s] - autocast.losses[s]));
    }
    EXPECT_GT(apart, 1e-6) << "bf16 activations gave the f32 activations' losses";
  }
  for (const std::string layout : {"data-parallel", "tensor-parallel", "pipeline", "hybrid"}) {
    SCOPED_TRACE(layout);
    const Trained trained = train(bf16(small(layout, 4)), 20);
    double worst = 0;
    for (size_t s = 0; s < trained.losses.size(); ++s) {
      worst = std::max(worst, std::abs(trained.losses[s] - single.losses[s]) / single.losses[s]);
      EXPECT_NEAR(trained.losses[s], single.losses[s], tolerance * single.losses[s]) << "step " << s;
    }
    std::printf("%s: largest relative difference from one device %.2e\n", layout.c_str(), worst);
  }
}

// Measured: 2.4e-5 at most over 20 steps.
TEST(Gpt, Bf16MatmulsTrainLikeF32InEveryLayout) { expect_mixed_precision_trains_like_f32(DType::f32, 1e-4); }

// Measured: 6.6e-5 at most over 20 steps (tensor-parallel).
TEST(Gpt, Bf16ActivationsTrainLikeF32InEveryLayout) { expect_mixed_precision_trains_like_f32(DType::bf16, 2e-4); }

TEST(Gpt, RefusesBf16ActivationsWithF32Matmuls) {
  GptConfig config = small("single", 1);
  config.activations = DType::bf16;
  EXPECT_THROW(build_gpt(config), Error);
}

// Where the partial sums are reduced: with bf16 matmuls and f32 activations every product is
// cast back before boxing, so every all-reduce and reduce-scatter is f32 (data-parallel weight
// gradients included); with bf16 activations the tensor-parallel projections are reduced in bf16.
// (Measured: data-parallel 288 f32 reductions; tensor-parallel 208 f32, and with bf16
// activations 36 of its reductions in bf16.)
TEST(Gpt, Bf16MatmulsReducePartialSumsInF32) {
  if (!OpRegistry::global().has_kernel("matmul", DeviceType::cpu, DType::bf16)) {
    GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no bf16 matmul";
  }
  const auto reductions = [](const std::string& layout, DType activations) {
    GptConfig config = small(layout, 4);
    config.matmuls = DType::bf16;
    config.activations = activations;
    Gpt gpt = build_gpt(config);
    Session session(*gpt.graph, {gpt.loss}, {.placement = gpt.placement});
    std::map<std::string, int> by_dtype;
    for (const auto& device : session.plan().ranks(0).devices()) {
      for (const auto& actor : device.actors()) {
        if (actor.kind() == proto::COLLECTIVE && (actor.op() == "all_reduce" || actor.op() == "reduce_scatter")) {
          ++by_dtype[actor.outputs(0).type().dtype()];
        }
      }
    }
    return by_dtype;
  };
  for (const std::string layout : {"data-parallel", "tensor-parallel"}) {
    const auto matmuls_only = reductions(layout, DType::f32);
    EXPECT_GT(matmuls_only.count("f32") ? matmuls_only.at("f32") : 0, 0) << layout;
    EXPECT_EQ(matmuls_only.count("bf16"), 0u) << layout << ": a partial sum was reduced in bf16";
  }
  const auto half = reductions("tensor-parallel", DType::bf16);
  EXPECT_GT(half.count("bf16") ? half.at("bf16") : 0, 0) << "bf16 activations reduce their projections in bf16";
}

TEST(Gpt, RefusesLayoutsItCannotLay) {
  EXPECT_THROW(build_gpt(small("tensor-parallel", 8)), Error);  // 4 heads over 8 devices
  EXPECT_THROW(build_gpt(small("pipeline", 3)), Error);
  EXPECT_THROW(build_gpt(small("sideways", 2)), Error);
  GptConfig odd = small("data-parallel", 3);
  EXPECT_THROW(build_gpt(odd), Error);  // 8 sequences over 3 devices
}

TEST(TextLoader, IsAPureFunctionOfThePosition) {
  TextLoader loader(&text(), 16, 7);
  HostTensor a, b, c, d;
  loader.batch(0, 8, a, b);  // sequences 0-7 at once ...
  loader.batch(4, 4, c, d);  // ... and 4-7 again on their own: the same rows
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t t = 0; t < 16; ++t) {
      EXPECT_EQ(c.get(r * 16 + t), a.get((r + 4) * 16 + t));
      EXPECT_EQ(d.get(r * 16 + t), b.get((r + 4) * 16 + t));
    }
  }
  for (int64_t t = 0; t + 1 < 16; ++t) EXPECT_EQ(b.get(t), a.get(t + 1)) << "targets are the inputs shifted by one";
  EXPECT_EQ(decode(encode("Hi!\n~ ")), "Hi!\n~ ");
  EXPECT_EQ(decode(encode("\t\xe9")), "  ");
}

}  // namespace
}  // namespace tessel::models
