// The loops of vector_loops.h, built at -O3 (ops/CMakeLists.txt) so that GCC vectorises them.
#include "ops/kernels/cpu/vector_loops.h"

#include <atomic>
#include <cmath>
#include <cstring>

#include "ops/kernels/cpu/vector_math.h"

// Clang (the fuzz build) has no clones: its loops are plain x86-64, and vector_loops_isa() says so.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TESSEL_HAVE_VECTOR_CLONES 1
#define TESSEL_VECTOR_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#define TESSEL_AVX512 __attribute__((target("avx512f")))
#include <immintrin.h>
#else
#define TESSEL_VECTOR_CLONES
#endif

namespace tessel::cpu {
namespace {

constexpr int kLanes = 16;

// The largest element, ignoring NaNs: the softmax and log-sum-exp that shift by it still come out
// NaN for a row holding one, through the NaN's own e^(x - shift) in the row's sum. (Tracking NaNs
// here kept this loop from vectorising: it was half of softmax's time.)
TESSEL_VECTOR_CLONES float row_max_portable(const float* __restrict x, int64_t n) {
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
TESSEL_VECTOR_CLONES float exp_shifted_sum_portable(const float* __restrict x, float shift, float* __restrict y, int64_t n) {
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

TESSEL_VECTOR_CLONES void gelu_portable(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_value(x[i]);
}

TESSEL_VECTOR_CLONES void gelu_grad_portable(const float* __restrict x, const float* __restrict dy,
                                             float* __restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_derivative(x[i]);
}

TESSEL_VECTOR_CLONES void sigmoid_portable(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + vexp(-x[i]));
}

TESSEL_VECTOR_CLONES void exp_portable(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = vexp(x[i]);
}

#if defined(TESSEL_HAVE_VECTOR_CLONES)
// GCC 12 warns of the self-initialised _mm512_undefined_ps() inside the min, max and scalef
// intrinsics (a false positive: those lanes are never read).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The loops that spend their time in exp and the normal cdf, by hand in AVX-512. GCC vectorised
// vexp and normal_cdf (vector_math.h) into 63 instructions per 16 gelus: its selects became chains
// of masked compares, and 2^n came through integer shifts. These take 36. Each runs
// vector_math.h's operations in its order, so it gives the same bits: vscalefps rounds p 2^n once,
// as vexp's exact first product and rounded second one do, in the denormals too.
// VectorLoops.HandWrittenLoopsGiveThePortableBits holds them to that.
namespace avx512 {

TESSEL_AVX512 inline __m512 splat(float v) { return _mm512_set1_ps(v); }

// vexp past its upper clamp: for x <= kExpHigh, or NaN.
TESSEL_AVX512 inline __m512 exp_below_high(__m512 x) {
  const __m512 clamped = _mm512_max_ps(splat(kExpLow), x);  // kExpLow > x ? kExpLow : x, so a NaN x stays
  const __m512 shifted = _mm512_fmadd_ps(clamped, splat(kLog2e), splat(kRound));
  const __m512 n = _mm512_sub_ps(shifted, splat(kRound));
  const __m512 r = _mm512_fnmadd_ps(n, splat(kLn2Lo), _mm512_fnmadd_ps(n, splat(kLn2Hi), clamped));
  __m512 p = splat(kExpTaylor[0]);
  for (int k = 1; k < 8; ++k) p = _mm512_fmadd_ps(p, r, splat(kExpTaylor[k]));
  return _mm512_scalef_ps(p, n);
}

TESSEL_AVX512 inline __m512 exp(__m512 x) { return exp_below_high(_mm512_min_ps(splat(kExpHigh), x)); }

struct CdfPdf {
  __m512 cdf, pdf;
};

TESSEL_AVX512 inline CdfPdf normal_cdf_pdf(__m512 x) {
  const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), splat(kInverseSqrt2));
  const __m512 t = _mm512_div_ps(splat(1.0f), _mm512_fmadd_ps(splat(0.4f), z, splat(1.0f)));
  __m512 p = splat(kHalfErfcFit[0]);
  for (int k = 1; k < 11; ++k) p = _mm512_fmadd_ps(p, t, splat(kHalfErfcFit[k]));
  const __m512 e = exp_below_high(_mm512_mul_ps(_mm512_mul_ps(splat(-0.5f), x), x));  // <= 0
  const __m512 half_erfc = _mm512_mul_ps(_mm512_mul_ps(e, t), p);
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  return {_mm512_mask_blend_ps(negative, _mm512_sub_ps(splat(1.0f), half_erfc), half_erfc),
          _mm512_mul_ps(splat(kInverseSqrt2Pi), e)};
}

// The lanes a loop's last, partial vector covers.
inline __mmask16 first_lanes(int64_t count) { return static_cast<__mmask16>((1u << count) - 1); }

TESSEL_AVX512 void gelu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const __mmask16 m = n - i >= kLanes ? __mmask16{0xffff} : first_lanes(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(v, normal_cdf_pdf(v).cdf));
  }
}

TESSEL_AVX512 void gelu_grad(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const __mmask16 m = n - i >= kLanes ? __mmask16{0xffff} : first_lanes(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    const CdfPdf d = normal_cdf_pdf(v);
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i), _mm512_fmadd_ps(v, d.pdf, d.cdf)));
  }
}

TESSEL_AVX512 void sigmoid(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const __mmask16 m = n - i >= kLanes ? __mmask16{0xffff} : first_lanes(n - i);
    const __m512 minus = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(m, x + i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_div_ps(splat(1.0f), _mm512_add_ps(splat(1.0f), exp(minus))));
  }
}

TESSEL_AVX512 void exp_elements(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const __mmask16 m = n - i >= kLanes ? __mmask16{0xffff} : first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, m, exp(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

// exp_shifted_sum_portable's sum in its order: 16 lane totals over the whole vectors, the rest
// one by one, then the lanes in turn. Every x - shift is <= 0 or NaN (shift is the row's largest).
template <bool Store>
TESSEL_AVX512 float exp_shifted_sum(const float* x, float shift, float* y, int64_t n) {
  const __m512 s = splat(shift);
  __m512 lanes = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m512 e = exp_below_high(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    if constexpr (Store) _mm512_storeu_ps(y + i, e);
    lanes = _mm512_add_ps(lanes, e);
  }
  float total = 0;
  if (i < n) {
    const __mmask16 m = first_lanes(n - i);
    const __m512 e = exp_below_high(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
    if constexpr (Store) _mm512_mask_storeu_ps(y + i, m, e);
    float rest[kLanes];
    _mm512_storeu_ps(rest, e);
    for (int64_t k = 0; k < n - i; ++k) total += rest[k];
  }
  float lane_totals[kLanes];
  _mm512_storeu_ps(lane_totals, lanes);
  for (float lane : lane_totals) total += lane;
  return total;
}

// row_max_portable's maximum in its order (GCC left that loop scalar: 16 vmaxss per 16 floats).
// vmaxps(a, b) is a > b ? a : b, the portable select.
TESSEL_AVX512 float row_max(const float* x, int64_t n) {
  __m512 lanes = splat(-__builtin_inff());
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) lanes = _mm512_max_ps(lanes, _mm512_loadu_ps(x + i));
  float peak = -__builtin_inff();
  for (; i < n; ++i) peak = peak > x[i] ? peak : x[i];
  float lane_peaks[kLanes];
  _mm512_storeu_ps(lane_peaks, lanes);
  for (float lane : lane_peaks) peak = peak > lane ? peak : lane;
  return peak;
}

}  // namespace avx512
#pragma GCC diagnostic pop
#endif

std::atomic<bool> portable_only{false};

[[maybe_unused]] bool hand_written_avx512() {  // unused where there are no clones (clang)
#if defined(TESSEL_HAVE_VECTOR_CLONES)
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
  return has && !portable_only.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

float row_max(const float* x, int64_t n) {
#if defined(TESSEL_HAVE_VECTOR_CLONES)
  if (hand_written_avx512()) return avx512::row_max(x, n);
#endif
  return row_max_portable(x, n);
}

template <bool Store>
float exp_shifted_sum(const float* x, float shift, float* y, int64_t n) {
#if defined(TESSEL_HAVE_VECTOR_CLONES)
  if (hand_written_avx512()) return avx512::exp_shifted_sum<Store>(x, shift, y, n);
#endif
  return exp_shifted_sum_portable<Store>(x, shift, y, n);
}

}  // namespace

TESSEL_VECTOR_CLONES void relu_loop(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

TESSEL_VECTOR_CLONES void relu_grad_loop(const float* __restrict y, const float* __restrict dy, float* __restrict dx,
                                         int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// Each runs its hand-written AVX-512 loop where the processor has AVX-512, else the portable one.
#if defined(TESSEL_HAVE_VECTOR_CLONES)
#define TESSEL_DISPATCH(avx512_loop, portable_loop, ...) \
  return hand_written_avx512() ? avx512::avx512_loop(__VA_ARGS__) : portable_loop(__VA_ARGS__)
#else
#define TESSEL_DISPATCH(avx512_loop, portable_loop, ...) return portable_loop(__VA_ARGS__)
#endif

void gelu_loop(const float* x, float* y, int64_t n) { TESSEL_DISPATCH(gelu, gelu_portable, x, y, n); }
void gelu_grad_loop(const float* x, const float* dy, float* dx, int64_t n) {
  TESSEL_DISPATCH(gelu_grad, gelu_grad_portable, x, dy, dx, n);
}
void sigmoid_loop(const float* x, float* y, int64_t n) { TESSEL_DISPATCH(sigmoid, sigmoid_portable, x, y, n); }
void exp_loop(const float* x, float* y, int64_t n) { TESSEL_DISPATCH(exp_elements, exp_portable, x, y, n); }

bool set_portable_vector_loops(bool portable) { return portable_only.exchange(portable); }

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
