// The loops of vector_loops.h, built at -O3 (ops/CMakeLists.txt) so that GCC vectorises them.
#include "ops/kernels/cpu/vector_loops.h"

#include <cmath>
#include <cstring>

#include "ops/kernels/cpu/vector_math.h"

// Clang (the fuzz build) has no clones: its loops are plain x86-64, and vector_loops_isa() says so.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TESSEL_HAVE_VECTOR_CLONES 1
#define TESSEL_VECTOR_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define TESSEL_VECTOR_CLONES
#endif

namespace tessel::cpu {
namespace {

constexpr int kLanes = 16;

// The largest element, ignoring NaNs: the softmax and log-sum-exp that shift by it still come out
// NaN for a row holding one, through the NaN's own e^(x - shift) in the row's sum. (Tracking NaNs
// here kept this loop from vectorising: it was half of softmax's time.)
TESSEL_VECTOR_CLONES float row_max(const float* __restrict x, int64_t n) {
  float lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = -__builtin_inff();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) lanes[k] = lanes[k] > x[i + k] ? lanes[k] : x[i + k];
  }
  float peak = -__builtin_inff();
  for (; i < n; ++i) peak = peak > x[i] ? peak : x[i];
  for (float lane : lanes) peak = peak > lane ? peak : lane;
  return peak;
}

// The sum of e^(x - shift) in a fixed order, kept in y when Store.
template <bool Store>
TESSEL_VECTOR_CLONES float exp_shifted_sum(const float* __restrict x, float shift, float* __restrict y, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float e = vexp(x[i + k] - shift);
      if constexpr (Store) y[i + k] = e;
      lanes[k] += e;
    }
  }
  float total = 0;
  for (; i < n; ++i) {
    const float e = vexp(x[i] - shift);
    if constexpr (Store) y[i] = e;
    total += e;
  }
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

TESSEL_VECTOR_CLONES void affine_loop(float* __restrict y, float factor, float offset, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = mul_add(y[i], factor, offset);
}

}  // namespace

TESSEL_VECTOR_CLONES void relu_loop(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

TESSEL_VECTOR_CLONES void relu_grad_loop(const float* __restrict y, const float* __restrict dy, float* __restrict dx,
                                         int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

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

TESSEL_VECTOR_CLONES void layer_norm_grad_row(const float* __restrict x, const float* __restrict dy,
                                              const float* __restrict gamma, RowStatistics s,
                                              float* __restrict normalized, float* __restrict dx,
                                              float* __restrict dgamma, float* __restrict dbeta, int64_t n) {
  // dx = inverse_std * (g - mean(g) - x̂ mean(g x̂)), with g = dy * gamma and x̂ the normalised
  // row; the means are fixed-order f32 sums of kLanes running totals.
  float g_lanes[kLanes] = {}, gx_lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float hat = (x[i + k] - s.mean) * s.inverse_std;
      const float g = dy[i + k] * gamma[i + k];
      normalized[i + k] = hat;
      g_lanes[k] += g;
      gx_lanes[k] += g * hat;
      dgamma[i + k] += dy[i + k] * hat;
      dbeta[i + k] += dy[i + k];
    }
  }
  float g_sum = 0, gx_sum = 0;
  for (; i < n; ++i) {
    const float hat = (x[i] - s.mean) * s.inverse_std;
    const float g = dy[i] * gamma[i];
    normalized[i] = hat;
    g_sum += g;
    gx_sum += g * hat;
    dgamma[i] += dy[i] * hat;
    dbeta[i] += dy[i];
  }
  for (int k = 0; k < kLanes; ++k) {
    g_sum += g_lanes[k];
    gx_sum += gx_lanes[k];
  }
  const float g_mean = g_sum / static_cast<float>(n), gx_mean = gx_sum / static_cast<float>(n);
  for (int64_t j = 0; j < n; ++j) {
    dx[j] = s.inverse_std * (dy[j] * gamma[j] - g_mean - normalized[j] * gx_mean);
  }
}

TESSEL_VECTOR_CLONES void adamw_loop(float* __restrict p, const float* __restrict g, float* __restrict m,
                                     float* __restrict v, const AdamWStep& step, int64_t n) {
  const AdamWStep a = step;  // in registers: the stores below cannot change it
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * a.scale;
    const float mi = a.beta1 * m[i] + a.one_minus_beta1 * gi;
    const float vi = a.beta2 * v[i] + a.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * a.decay_factor - a.step_size * (mi / a.bias1) / (std::sqrt(vi / a.bias2) + a.eps);
  }
}

void softmax_row(const float* x, float* y, int64_t n) { softmax_affine_row(x, 1.0f, 0.0f, y, n); }

void softmax_affine_row(const float* x, float scale, float offset, float* y, int64_t n) {
  const float peak = row_max(x, n);
  // A row of -inf (everything masked) has no peak to shift by; its softmax is NaN, as in PyTorch.
  const float total = exp_shifted_sum<true>(x, peak, y, n);
  affine_loop(y, scale / total, offset, n);  // a multiply: a vector division costs 5 to 10 of them
}

float log_sum_exp_row(const float* x, int64_t n) {
  const float peak = row_max(x, n);
  return peak + std::log(exp_shifted_sum<false>(x, peak, nullptr, n));
}

const char* vector_loops_isa() {
#if defined(TESSEL_HAVE_VECTOR_CLONES)
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
#endif
  return "x86-64";
}

}  // namespace tessel::cpu
