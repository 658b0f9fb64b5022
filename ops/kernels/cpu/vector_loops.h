// Private to the CPU kernels: the element-wise loops that are worth an instruction set each.
// Each is compiled for AVX-512, for x86-64-v3 (AVX2 and FMA) and for plain x86-64, and the loader
// picks the widest the processor has (GCC's target_clones), so one binary runs on any x86-64 and
// uses what it finds; the exp-bound ones also have an AVX-512 version by hand (see below). Every version gives the same bits: the arithmetic is the same in every
// lane, the compiler contracts no multiply-add (the explicit ones are exactly rounded everywhere),
// and sums keep a fixed order of 16 running totals.
#pragma once

#include <cstdint>

#include "devices/cpu_device.h"
#include "ops/registry.h"

namespace tessel::cpu {

void relu_loop(const float* x, float* y, int64_t n);                      // y = x > 0 ? x : 0
// dx = y > 0 ? dy : 0, with y relu's output (autograd saves it): above 0 exactly where its input is.
void relu_grad_loop(const float* y, const float* dy, float* dx, int64_t n);
void gelu_loop(const float* x, float* y, int64_t n);                      // y = x P(X <= x)
void gelu_grad_loop(const float* x, const float* dy, float* dx, int64_t n);  // dx = dy gelu'(x)
void sigmoid_loop(const float* x, float* y, int64_t n);
void exp_loop(const float* x, float* y, int64_t n);
// y += x.
void accumulate_loop(float* y, const float* x, int64_t n);
// f32 to bf16, rounded to nearest even (NaN stays a quiet NaN), and back: core/dtype.h's
// float_to_bf16 and bf16_to_float, a vector at a time.
void f32_to_bf16_loop(const float* x, uint16_t* y, int64_t n);
void bf16_to_f32_loop(const uint16_t* x, float* y, int64_t n);
// A row's mean and 1 / sqrt(variance + eps), in f32 (fixed-order sums, two passes).
struct RowStatistics {
  float mean, inverse_std;
};
RowStatistics row_statistics(const float* x, int64_t n, float eps);
// y = (x - mean) * inverse_std * gamma + beta over one row.
void normalize_row(const float* x, RowStatistics s, const float* gamma, const float* beta, float* y, int64_t n);
// One row of layer_norm's gradient: dx, and the row's terms added to dgamma and dbeta; x̂ goes to
// `normalized` (n floats of scratch).
void layer_norm_grad_row(const float* x, const float* dy, const float* gamma, RowStatistics s, float* normalized,
                         float* dx, float* dgamma, float* dbeta, int64_t n);
// AdamW's update of n elements: decoupled decay, then the moments and the bias-corrected step,
// element by element as torch.optim.AdamW computes it.
struct AdamWStep {
  float scale, beta1, beta2, one_minus_beta1, one_minus_beta2, bias1, bias2, eps, step_size, decay_factor;
};
void adamw_loop(float* p, const float* g, float* m, float* v, const AdamWStep& a, int64_t n);
// y = softmax(x) over one contiguous row.
void softmax_row(const float* x, float* y, int64_t n);
// log(sum(e^x)) over one contiguous row, shifted by its largest element so nothing overflows; NaN
// if any element is NaN.
float log_sum_exp_row(const float* x, int64_t n);
// y = scale * softmax(x) + offset over one contiguous row (cross_entropy's gradient).
void softmax_affine_row(const float* x, float scale, float offset, float* y, int64_t n);
// Kernels that run a loop above over their tensor in parallel chunks: y = Loop(x), and
// dx = Loop(saved forward value, dy) with both inputs of the output's shape.
template <void (*Loop)(const float*, float*, int64_t)>
void vector_unary(const KernelContext& c) {
  const float* x = c.inputs[0].as<float>();
  float* y = c.outputs[0].as<float>();
  parallel_for(c.outputs[0].numel(), 1 << 15, [&](int64_t begin, int64_t end) { Loop(x + begin, y + begin, end - begin); });
}
template <void (*Loop)(const float*, const float*, float*, int64_t)>
void vector_gradient(const KernelContext& c) {
  const float* x = c.inputs[0].as<float>();
  const float* dy = c.inputs[1].as<float>();
  float* dx = c.outputs[0].as<float>();
  parallel_for(c.outputs[0].numel(), 1 << 15,
               [&](int64_t begin, int64_t end) { Loop(x + begin, dy + begin, dx + begin, end - begin); });
}

// The instruction set the loops above run with on this processor: "avx512f", "x86-64-v3" or "x86-64".
const char* vector_loops_isa();
// gelu, its gradient, sigmoid, exp and the softmax and log-sum-exp sums have hand-written AVX-512
// loops beside the portable ones, and give the same bits either way. For tests: true runs the
// portable loops everywhere; returns the setting before.
bool set_portable_vector_loops(bool portable);

}  // namespace tessel::cpu
