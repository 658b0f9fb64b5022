// The vectorised exp and normal cdf against libm in double, over a sweep of floats, and the
// dispatched loops against the same formulas one element at a time.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/kernels/cpu/vector_loops.h"
#include "ops/kernels/cpu/vector_math.h"

namespace tessel::cpu {
namespace {

// About two million floats between lo < 0 and hi > 0, evenly spaced in their bit patterns (so
// every binade is visited, down to 1e-30), with the ends and zero.
std::vector<float> sweep(float lo, float hi) {
  std::vector<float> xs = {lo, 0.0f, hi};
  for (float end : {lo, hi}) {
    const uint32_t last = std::bit_cast<uint32_t>(end), first = std::bit_cast<uint32_t>(end < 0 ? -1e-30f : 1e-30f);
    for (uint32_t bits = first; bits < last; bits += (last - first) / 1000000 + 1) xs.push_back(std::bit_cast<float>(bits));
  }
  return xs;
}

TEST(VectorMath, ExpIsWithinTwoUlpOfLibm) {
  constexpr double kUlp = 5.9604644775390625e-8;  // 2^-24, half an ulp of 1 relative
  double worst = 0;
  for (float x : sweep(-87.3f, 88.7f)) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(vexp(x) - exact) / exact);
  }
  EXPECT_LT(worst, 4 * kUlp);  // 2 ulp, an ulp being up to 2^-23 relative
  EXPECT_EQ(vexp(0.0f), 1.0f);
  EXPECT_EQ(vexp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(vexp(-200.0f), 0.0f);
  EXPECT_TRUE(std::isinf(vexp(89.0f)));
  EXPECT_TRUE(std::isinf(vexp(std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(vexp(std::nanf(""))));
  // Below ln(FLT_MIN) the result goes through the denormals, as libm's does.
  EXPECT_NEAR(vexp(-95.0f), std::exp(-95.0), 1e-44);
  EXPECT_GT(vexp(-95.0f), 0.0f);
}

TEST(VectorMath, NormalCdfIsAccurateInBothTails) {
  // e^(-z^2) of a z that is itself rounded carries z^2 times its rounding: the bound grows with x^2.
  for (float x : sweep(-9.0f, 9.0f)) {
    const double exact = 0.5 * std::erfc(-static_cast<double>(x) / std::sqrt(2.0));
    ASSERT_LE(std::fabs(normal_cdf(x) - exact), (1 + static_cast<double>(x) * x) * 6e-7 * exact) << "at x = " << x;
    const double pdf = std::exp(-0.5 * static_cast<double>(x) * x) / std::sqrt(2 * M_PI);
    ASSERT_LE(std::fabs(normal_pdf(x) - pdf), (1 + static_cast<double>(x) * x) * 1.5e-7 * pdf) << "at x = " << x;
  }
  EXPECT_EQ(normal_cdf(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(normal_cdf(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isnan(normal_cdf(std::nanf(""))));
}

TEST(VectorLoops, GiveTheFormulasBitForBit) {
  std::vector<float> x = sweep(-12.0f, 12.0f);
  x.push_back(std::nanf(""));
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> dy(x.size()), y(x.size()), dx(x.size());
  for (size_t i = 0; i < x.size(); ++i) dy[i] = 0.25f + static_cast<float>(i % 7);
  gelu_loop(x.data(), y.data(), n);
  gelu_grad_loop(x.data(), dy.data(), dx.data(), n);
  // The same bits, but for a NaN's sign, which no one reads.
  const auto same = [](float a, float b) { return std::isnan(a) ? std::isnan(b) : std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); };
  for (int64_t i = 0; i < n; ++i) {
    const float gelu = gelu_value(x[i]);
    const float grad = dy[i] * gelu_derivative(x[i]);
    ASSERT_TRUE(same(y[i], gelu)) << "gelu at " << x[i] << ": " << y[i] << " against " << gelu;
    ASSERT_TRUE(same(dx[i], grad)) << "gelu_grad at " << x[i] << ": " << dx[i] << " against " << grad;
  }
  EXPECT_TRUE(std::isnan(y.back()));
  sigmoid_loop(x.data(), y.data(), n);
  for (int64_t i = 0; i + 1 < n; ++i) ASSERT_NEAR(y[i], 1 / (1 + std::exp(-static_cast<double>(x[i]))), 2e-7);
  exp_loop(x.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(same(y[i], vexp(x[i]))) << "exp at " << x[i];
  SUCCEED() << "the loops ran as " << vector_loops_isa();
}

// The hand-written AVX-512 loops against the portable ones, bit for bit, over exp's whole range
// (overflow, the denormals, underflow to 0), infinities and NaN, at every length of a last
// partial vector; and the row sums of softmax and log-sum-exp, whose order both must keep.
TEST(VectorLoops, HandWrittenLoopsGiveThePortableBits) {
  std::vector<float> x = sweep(-120.0f, 100.0f);
  for (float v : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), std::nanf(""),
                  -0.0f, 88.72f, 88.8f, -87.33f, -103.9f, -104.0f, -149.0f})
    x.push_back(v);
  std::vector<float> dy(x.size());
  for (size_t i = 0; i < x.size(); ++i) dy[i] = 0.25f + static_cast<float>(i % 7);
  const auto same = [](float a, float b) { return std::isnan(a) ? std::isnan(b) : std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); };
  using Unary = void (*)(const float*, float*, int64_t);
  for (const auto& [name, loop] : {std::pair<const char*, Unary>{"gelu", gelu_loop}, {"sigmoid", sigmoid_loop},
                                   {"exp", exp_loop}}) {
    for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{17}, static_cast<int64_t>(x.size())}) {
      std::vector<float> fast(n), portable(n);
      loop(x.data() + x.size() - n, fast.data(), n);
      const bool before = set_portable_vector_loops(true);
      loop(x.data() + x.size() - n, portable.data(), n);
      set_portable_vector_loops(before);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(same(fast[i], portable[i])) << name << " at " << x[x.size() - n + i] << ": " << fast[i]
                                                << " against " << portable[i];
      }
    }
  }
  std::vector<float> fast(x.size()), portable(x.size());
  const int64_t n = static_cast<int64_t>(x.size());
  gelu_grad_loop(x.data(), dy.data(), fast.data(), n);
  const bool before = set_portable_vector_loops(true);
  gelu_grad_loop(x.data(), dy.data(), portable.data(), n);
  set_portable_vector_loops(before);
  for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(same(fast[i], portable[i])) << "gelu_grad at " << x[i];
  for (int64_t length : {1, 7, 16, 31, 100, 1024, 1029}) {
    std::vector<float> row(length), fast_row(length), portable_row(length);
    for (int64_t i = 0; i < length; ++i) row[i] = std::sin(static_cast<float>(i) * 0.37f) * 40.0f;
    softmax_row(row.data(), fast_row.data(), length);
    const float fast_lse = log_sum_exp_row(row.data(), length);
    set_portable_vector_loops(true);
    softmax_row(row.data(), portable_row.data(), length);
    const float portable_lse = log_sum_exp_row(row.data(), length);
    set_portable_vector_loops(before);
    EXPECT_TRUE(same(fast_lse, portable_lse)) << "log_sum_exp over " << length;
    for (int64_t i = 0; i < length; ++i) ASSERT_TRUE(same(fast_row[i], portable_row[i])) << "softmax over " << length;
  }
  SUCCEED() << "the hand-written loops ran as " << vector_loops_isa();
}

TEST(VectorLoops, SoftmaxRowsOfEveryLength) {
  for (int64_t n : {1, 5, 16, 17, 64, 100}) {
    std::vector<float> x(n), y(n);
    for (int64_t i = 0; i < n; ++i) x[i] = std::sin(static_cast<float>(i)) * 30.0f - (i == 3 ? 1e9f : 0.0f);
    softmax_row(x.data(), y.data(), n);
    double peak = -INFINITY, total = 0, sum = 0;
    for (float v : x) peak = std::max<double>(peak, v);
    for (float v : x) total += std::exp(v - peak);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(y[i], std::exp(x[i] - peak) / total, 3e-7) << "n = " << n << ", i = " << i;
      sum += y[i];
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
  std::vector<float> nan_row = {1, 2, std::nanf(""), 4}, out(4);
  softmax_row(nan_row.data(), out.data(), 4);
  for (float v : out) EXPECT_TRUE(std::isnan(v));
  std::vector<float> masked(20, -std::numeric_limits<float>::infinity());
  out.resize(20);
  softmax_row(masked.data(), out.data(), 20);
  for (float v : out) EXPECT_TRUE(std::isnan(v));  // as in PyTorch: a row with nothing to attend to
}

}  // namespace
}  // namespace tessel::cpu

namespace tessel::cpu {
namespace {

// The vectorised casts give core/dtype.h's conversions bit for bit: every rounding case (ties to
// even, carries into the exponent, up to infinity), NaNs of either sign staying quiet NaNs,
// infinities, zeros and subnormals, and 2^20 random bit patterns.
TEST(VectorLoops, Bf16CastsGiveTheScalarConversionsBitForBit) {
  std::vector<uint32_t> patterns = {0x00000000u, 0x80000000u, 0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f80ffffu,
                                    0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
                                    0x7f800001u, 0x00000001u, 0x807fffffu, 0x3fffffffu};
  uint32_t state = 12345;
  for (int i = 0; i < (1 << 20); ++i) {
    state = state * 1664525u + 1013904223u;
    patterns.push_back(state);
  }
  std::vector<float> x(patterns.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::bit_cast<float>(patterns[i]);
  std::vector<uint16_t> y(x.size());
  f32_to_bf16_loop(x.data(), y.data(), static_cast<int64_t>(x.size()));
  std::vector<float> back(x.size());
  bf16_to_f32_loop(y.data(), back.data(), static_cast<int64_t>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(y[i], float_to_bf16(x[i])) << std::hex << "f32 bits 0x" << patterns[i];
    ASSERT_EQ(std::bit_cast<uint32_t>(back[i]), std::bit_cast<uint32_t>(bf16_to_float(y[i]))) << std::hex << y[i];
  }
}

}  // namespace
}  // namespace tessel::cpu
