// The GPT (apps/models/gpt.h) in every layout over 4 devices against one device, and its text
// loader.
#include "apps/models/gpt.h"

#include <gtest/gtest.h>

#include <cmath>

#include "apps/models/text.h"
#include "runtime/session.h"

namespace tessel::models {
namespace {

GptConfig small(const std::string& layout, int devices) {
  return {.vocab = kTextVocab, .context = 16, .width = 32, .heads = 4, .layers = 2, .batch = 8,
          .micro_batches = 2, .devices = devices, .layout = layout, .warmup_steps = 5, .total_steps = 20};
}

// A fixed pseudo-text, so the test needs no fortunes.
const std::vector<int32_t>& text() {
  static const std::vector<int32_t> tokens =
      encode("the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
             "how vexingly quick daft zebras jump! sphinx of black quartz, judge my vow.\n");
  return tokens;
}

std::vector<double> train(const GptConfig& config, int64_t steps, std::map<std::string, HostTensor>* params) {
  Gpt gpt = build_gpt(config);
  Session session(*gpt.graph, {gpt.loss}, {.placement = gpt.placement});
  TextLoader loader(&text(), config.context, 7);
  std::vector<double> losses;
  for (int64_t s = 0; s < steps; ++s) {
    HostTensor inputs, targets;
    loader.batch(s * config.batch, config.batch, inputs, targets);
    losses.push_back(session.step(gpt_feeds(gpt, inputs, targets))[0].get(0));
  }
  for (const Tensor& p : gpt.graph->params()) {
    const std::string name = gpt.graph->node(p.node()).attrs.get_string("name");
    (*params)[name] = session.variable(name);
  }
  return losses;
}

TEST(Gpt, EveryLayoutOverFourDevicesGivesTheOneDeviceNumbers) {
  std::map<std::string, HostTensor> expected_params;
  const std::vector<double> expected = train(small("single", 1), 20, &expected_params);
  EXPECT_LT(expected.back(), expected.front() - 0.5) << "the model did not learn";
  for (const std::string layout : {"data-parallel", "tensor-parallel", "pipeline", "hybrid"}) {
    SCOPED_TRACE(layout);
    std::map<std::string, HostTensor> params;
    const std::vector<double> losses = train(small(layout, 4), 20, &params);
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
