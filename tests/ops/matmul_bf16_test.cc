// The bf16 matmul (ops/kernels/cpu/onednn_matmul.cc, oneDNN) against the f32 matmul of the same
// bf16-rounded operands: the products then differ only by the order of the f32 sums and by the
// result's rounding to bf16 (8 bits of mantissa), so every entry is within 2^-8 of the largest.
// Each layout the kernel handles: transposes, a batch times one matrix (one tall product),
// batches on both sides, and a row count that leaves a partial block of rows.
#include <algorithm>
#include <cmath>

#include "devices/cpu_device.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

struct Case {
  const char* name;
  Shape a, b;
  bool ta, tb;
};

TEST(MatmulBf16, MatchesF32OfTheRoundedOperandsWithinBf16Rounding) {
  if (!OpRegistry::global().has_kernel("matmul", DeviceType::cpu, DType::bf16)) {
    GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no bf16 matmul kernel";
  }
  const int cpu_threads_at_start = cpu_threads();
  const std::vector<Case> cases = {
      {"plain", {130, 48}, {48, 40}, false, false},       {"transposed a", {48, 130}, {48, 40}, true, false},
      {"transposed b", {130, 48}, {40, 48}, false, true}, {"both transposed", {48, 130}, {40, 48}, true, true},
      {"one row", {1, 300}, {300, 17}, false, false},      {"batch times a matrix", {3, 70, 32}, {32, 24}, false, false},
      {"batches on both", {3, 70, 32}, {3, 32, 24}, false, false},
      {"batches, a transposed", {3, 32, 70}, {3, 32, 24}, true, false},
      // Large enough that oneDNN's kernels use a scratchpad, in blocks that run at once.
      {"the MLP's size", {256, 1024}, {1024, 512}, false, false},
      {"the MLP's size, transposed b", {256, 1024}, {512, 1024}, false, true},
      {"the MLP's weight gradient", {256, 1024}, {256, 512}, true, false},
  };
  set_cpu_threads(2);  // blocks of rows on two threads at once
  for (const Case& c : cases) {
    Graph g;
    Tensor a = g.input("a", c.a), b = g.input("b", c.b);
    Tensor a16 = cast(a, DType::bf16), b16 = cast(b, DType::bf16);
    const MatmulOptions options{.transpose_a = c.ta, .transpose_b = c.tb};
    Tensor low = cast(matmul(a16, b16, options), DType::f32);
    Tensor reference = matmul(cast(a16, DType::f32), cast(b16, DType::f32), options);
    Interpreter interpreter(g);
    const std::vector<HostTensor> out =
        interpreter.evaluate({{"a", testing::random_tensor(c.a, 1)}, {"b", testing::random_tensor(c.b, 2)}},
                             {low, reference});
    const std::vector<float> got = out[0].to_floats(), want = out[1].to_floats();
    ASSERT_EQ(got.size(), want.size()) << c.name;
    float largest = 0, worst = 0;
    for (float v : want) largest = std::max(largest, std::fabs(v));
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
    EXPECT_GT(largest, 0.1f) << c.name;
    EXPECT_LE(worst, largest / 256) << c.name << ": " << out[0].shape() << ", largest " << largest;
  }
  set_cpu_threads(cpu_threads_at_start);
}

}  // namespace
}  // namespace tessel
