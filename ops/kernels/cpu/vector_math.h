// exp and the normal distribution's cdf in plain float arithmetic, with no calls and no branches,
// so that a loop over them vectorises. std::exp and std::erf are calls into libm, one element at
// a time; in the GPT's step they were a quarter of the time (gelu, its gradient and softmax).
//
// Accuracy, measured over two million floats (tests/ops/vector_math_test.cc): exp within 2 ulp of
// std::exp; normal_cdf and normal_pdf within (1 + x^2) 5e-7 relative of the exact values, in both
// tails (0.5 (1 + std::erf(x / sqrt 2)), which this replaces, is 3% off at x = -5.5 for its
// cancellation). NaN stays NaN, so the non-finite checks downstream still see it.
#pragma once

#include <bit>
#include <cstdint>

namespace tessel::cpu {

// a * b + c with one rounding. Every instruction set gives the same bits: a multiply-add
// instruction where the loop's clone has one (AVX-512, x86-64-v3), libm's exact fmaf where not.
// Horner steps as multiply-adds are half the instructions of a multiply and an add.
inline float mul_add(float a, float b, float c) { return __builtin_fmaf(a, b, c); }

// e^x. Range reduction x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, Cody and Waite), a
// degree-7 Taylor polynomial for e^r (truncation below 1e-8 relative), and 2^n put straight into
// the exponent bits, in two halves so that each stays a normal float: the result overflows to
// infinity above ln(FLT_MAX) and goes through the denormals to 0 below ln(FLT_MIN), as std::exp's
// does. A NaN passes through every step as NaN.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 with its low 12 bits zero: n * kLn2Hi is exact
constexpr float kLn2Lo = 1.42860682030941723212e-6f;
constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
constexpr float kExpHigh = 88.8f, kExpLow = -104.0f;
constexpr float kExpTaylor[8] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                 1.0f / 6.0f,    0.5f,          1.0f,          1.0f};

inline float vexp(float x) {
  // Two separate selects, each a vminps / vmaxps that keeps a NaN x (one nested select
  // vectorised into a dozen masked instructions).
  const float below = x > kExpHigh ? kExpHigh : x;
  const float clamped = below < kExpLow ? kExpLow : below;
  const float shifted = mul_add(clamped, kLog2e, kRound);
  const float n = shifted - kRound;
  const float r = mul_add(-n, kLn2Lo, mul_add(-n, kLn2Hi, clamped));
  float p = kExpTaylor[0];
  for (int k = 1; k < 8; ++k) p = mul_add(p, r, kExpTaylor[k]);
  const int32_t exponent = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);  // -150 .. 128
  const int32_t half = exponent >> 1;
  return p * std::bit_cast<float>((half + 127) << 23) * std::bit_cast<float>((exponent - half + 127) << 23);
}

// P(X <= x) for a standard normal X, that is (1 + erf(x / sqrt 2)) / 2, through
// erfc(z) = e^(-z^2) t P(t) with t = 1 / (1 + 0.4 z) for z = |x| / sqrt 2 >= 0. P is a degree-10
// least-squares fit of erfc(z) e^(z^2) / t over [0, 12], 1.4e-8 relative; its coefficients are
// halved here, which gives erfc / 2 at no cost. e^(-z^2) is taken as e^(-x^2 / 2), whose argument
// has one rounding (z^2 would add z's), and the density e^(-x^2 / 2) / sqrt(2 pi) reuses it. The
// tail is computed without cancellation, so a negative x keeps its relative accuracy however far
// out it is. vector_loops.cc's AVX-512 loops compute the same operations, so the same bits.
constexpr float kHalfErfcFit[11] = {
    0.5f * -2.526597511e-02f, 0.5f * 1.172146192e-01f, 0.5f * -1.759721769e-01f, 0.5f * 5.021770352e-02f,
    0.5f * 3.399970151e-02f,  0.5f * 3.464918318e-02f, 0.5f * 1.389202047e-01f,  0.5f * 1.664832433e-01f,
    0.5f * 2.084786293e-01f,  0.5f * 2.255958583e-01f, 0.5f * 2.256789950e-01f};
constexpr float kInverseSqrt2 = 0.70710678118654752f, kInverseSqrt2Pi = 0.39894228040143268f;

struct NormalCdfPdf {
  float cdf, pdf;
};

inline NormalCdfPdf normal_cdf_pdf(float x) {
  const float z = __builtin_fabsf(x) * kInverseSqrt2;
  const float t = 1.0f / mul_add(0.4f, z, 1.0f);
  float p = kHalfErfcFit[0];
  for (int k = 1; k < 11; ++k) p = mul_add(p, t, kHalfErfcFit[k]);
  const float e = vexp(-0.5f * x * x);
  const float half_erfc = e * t * p;
  return {x < 0 ? half_erfc : 1.0f - half_erfc, kInverseSqrt2Pi * e};
}

inline float normal_cdf(float x) { return normal_cdf_pdf(x).cdf; }

// The density of the standard normal at x.
inline float normal_pdf(float x) { return normal_cdf_pdf(x).pdf; }

// gelu(x) = x P(X <= x) and its derivative P(X <= x) + x pdf(x).
inline float gelu_value(float x) { return x * normal_cdf(x); }
inline float gelu_derivative(float x) {
  const NormalCdfPdf n = normal_cdf_pdf(x);
  return mul_add(x, n.pdf, n.cdf);
}

}  // namespace tessel::cpu
