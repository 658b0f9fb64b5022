// The loops of vector_loops.h, built at -O3 (ops/CMakeLists.txt) so that GCC vectorises them.
#include "ops/kernels/cpu/vector_loops.h"

#include <cmath>
#include <cstring>

#include "ops/kernels/cpu/vector_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TESSEL_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TESSEL_VECTOR_CLONES
#endif

namespace tessel::cpu {
namespace {

constexpr int kLanes = 16;

// The largest element, NaN if any is NaN (so that the softmax of a NaN row is NaN, not a guess).
TESSEL_VECTOR_CLONES float row_max(const float* __restrict x, int64_t n) {
  float lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = -__builtin_inff();
  bool nan = false;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float v = x[i + k];
      nan |= v != v;
      lanes[k] = lanes[k] > v ? lanes[k] : v;
    }
  }
  float peak = -__builtin_inff();
  for (; i < n; ++i) {
    nan |= x[i] != x[i];
    peak = peak > x[i] ? peak : x[i];
  }
  for (float lane : lanes) peak = peak > lane ? peak : lane;
  return nan ? __builtin_nanf("") : peak;
}

// y = e^(x - shift), returning the sum of y in a fixed order.
TESSEL_VECTOR_CLONES float exp_shifted_sum(const float* __restrict x, float shift, float* __restrict y, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      y[i + k] = vexp(x[i + k] - shift);
      lanes[k] += y[i + k];
    }
  }
  float total = 0;
  for (; i < n; ++i) total += y[i] = vexp(x[i] - shift);
  for (float lane : lanes) total += lane;
  return total;
}

// The sum of x - shift (Power 1) or of its squares (Power 2), in a fixed order of kLanes
// running totals.
template <int Power>
TESSEL_VECTOR_CLONES float shifted_sum(const float* __restrict x, float shift, int64_t n) {
  const auto term = [shift](float v) { return Power == 1 ? v - shift : (v - shift) * (v - shift); };
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) lanes[k] += term(x[i + k]);
  }
  float total = 0;
  for (; i < n; ++i) total += term(x[i]);
  for (float lane : lanes) total += lane;
  return total;
}

TESSEL_VECTOR_CLONES void divide_loop(float* __restrict y, float divisor, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] /= divisor;
}

}  // namespace

TESSEL_VECTOR_CLONES void gelu_loop(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * normal_cdf(x[i]);
}

TESSEL_VECTOR_CLONES void gelu_grad_loop(const float* __restrict x, const float* __restrict dy, float* __restrict dx,
                                         int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (normal_cdf(x[i]) + x[i] * normal_pdf(x[i]));
}

TESSEL_VECTOR_CLONES void sigmoid_loop(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + vexp(-x[i]));
}

TESSEL_VECTOR_CLONES void exp_loop(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = vexp(x[i]);
}

TESSEL_VECTOR_CLONES void f32_to_bf16_loop(const float* __restrict x, uint16_t* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    y[i] = static_cast<uint16_t>(nan ? (bits >> 16) | 0x40u : rounded);
  }
}

TESSEL_VECTOR_CLONES void bf16_to_f32_loop(const uint16_t* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(x[i]) << 16;
    std::memcpy(y + i, &bits, sizeof bits);
  }
}

TESSEL_VECTOR_CLONES void accumulate_loop(float* __restrict y, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

RowStatistics row_statistics(const float* x, int64_t n, float eps) {
  // Two passes: the mean, then the squares about it (no cancellation, as one pass of x^2 has).
  // The first pass sums about x[0], which keeps the totals small for rows far from zero.
  const float first = n > 0 ? x[0] : 0.0f;
  const float mean = first + shifted_sum<1>(x, first, n) / static_cast<float>(n);
  const float variance = shifted_sum<2>(x, mean, n) / static_cast<float>(n);
  return {mean, 1.0f / std::sqrt(variance + eps)};
}

TESSEL_VECTOR_CLONES void normalize_row(const float* __restrict x, RowStatistics s, const float* __restrict gamma,
                                        const float* __restrict beta, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - s.mean) * s.inverse_std * gamma[i] + beta[i];
}

void softmax_row(const float* x, float* y, int64_t n) {
  const float peak = row_max(x, n);
  // A row of -inf (everything masked) has no peak to shift by; its softmax is NaN, as in PyTorch.
  const float total = exp_shifted_sum(x, peak, y, n);
  divide_loop(y, total, n);
}

const char* vector_loops_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "x86-64";
}

}  // namespace tessel::cpu
