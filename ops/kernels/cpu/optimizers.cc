// Optimizer updates, matching torch.optim.SGD (dampening 0, not Nesterov) and torch.optim.AdamW.
// With accumulation_steps = k the gradient is added to an accumulator on every step, and
// on every k-th step the mean of the accumulated gradients is applied and the accumulator cleared.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "devices/cpu_device.h"
#include "ops/kernels/cpu/vector_loops.h"
#include "ops/registry.h"
#include "ops/schedule.h"

namespace tessel::cpu {
namespace {

// 1 when `x` is infinite or NaN (its exponent bits all ones): integer ops that cost nothing inside a
// memory-bound loop and keep it vectorizable, which std::isfinite without -ffast-math does not.
inline uint32_t non_finite(float x) { return (std::bit_cast<uint32_t>(x) & 0x7f800000u) == 0x7f800000u; }

// After an update whose new values OR-ed `bad`: a NaN or infinite parameter would stay so for good,
// hidden behind a finite-looking loss (relu(NaN) is 0). It is an Error naming the step, the
// parameter and what went non-finite first: the gradient (a feed held NaN or Inf, or the loss
// overflowed), or else the update itself (the training diverged). The check rides in the update's
// own loop, so it reads nothing more; the parameter then holds the bad values, and the run ends.
void check_finite(const KernelContext& c, const float* gradient, uint32_t bad) {
  if (bad == 0 || !c.attrs.get_bool("check_finite", false)) return;
  const std::string parameter = c.attrs.has("parameter") ? c.attrs.get_string("parameter") : std::string("?");
  const int64_t n = c.inputs[0].numel();
  for (int64_t i = 0; i < n; ++i) {
    if (!non_finite(gradient[i])) continue;
    throw Error::OutOfRange(concat("step ", c.step, ": the gradient of parameter '", parameter, "' is ", gradient[i],
                                   " at element ", i, " of its ", n,
                                   " here: a feed held NaN or Inf, or the loss overflowed "
                                   "(MinimizeOptions::check_finite)"));
  }
  const float* p = c.inputs[0].as<float>();
  int64_t first = 0;
  while (first + 1 < n && !non_finite(p[first])) ++first;
  throw Error::OutOfRange(concat("step ", c.step, ": the update made parameter '", parameter, "' ", p[first],
                                 " at element ", first, " of its ", n,
                                 " here: the training diverged (a lower learning rate?) "
                                 "(MinimizeOptions::check_finite)"));
}

// The gradient to apply this step, or nullptr while micro-batches are still accumulating.
const float* gradient_to_apply(const KernelContext& c, const TensorView* accumulator, float* scale) {
  const int64_t k = c.attrs.get_int("accumulation_steps", 1);
  const float* grad = c.inputs[1].as<float>();
  *scale = 1.0f;
  if (accumulator == nullptr) return grad;
  float* sum = accumulator->as<float>();
  const int64_t n = accumulator->numel();
  for (int64_t i = 0; i < n; ++i) sum[i] += grad[i];
  if ((c.step + 1) % k != 0) return nullptr;
  *scale = 1.0f / static_cast<float>(k);
  return sum;
}

// The learning rate of this step's update, from the schedule in the attributes.
double learning_rate(const KernelContext& c) {
  const double lr = c.attrs.get_float("lr");
  if (!c.attrs.has("decay")) return lr;
  LrSchedule schedule;
  schedule.warmup_steps = c.attrs.get_int("warmup_steps");
  schedule.decay = c.attrs.get_string("decay") == "cosine" ? LrSchedule::Decay::cosine : LrSchedule::Decay::none;
  schedule.total_steps = c.attrs.get_int("total_steps");
  schedule.min_lr = c.attrs.get_float("min_lr");
  const int64_t update = (c.step + 1) / c.attrs.get_int("accumulation_steps", 1) - 1;
  return scheduled_lr(lr, schedule, update);
}

void clear(const TensorView* accumulator) {
  if (accumulator) std::fill(accumulator->as<float>(), accumulator->as<float>() + accumulator->numel(), 0.0f);
}

// (param, gradient, [momentum], [gradient_accumulator])
void sgd_update(const KernelContext& c) {
  const bool has_momentum = c.attrs.get_bool("has_momentum");
  const size_t accumulator_index = has_momentum ? 3 : 2;
  const TensorView* accumulator = c.inputs.size() > accumulator_index ? &c.inputs[accumulator_index] : nullptr;
  float scale = 1;
  const float* g = gradient_to_apply(c, accumulator, &scale);
  if (g == nullptr) return;
  const float lr = static_cast<float>(learning_rate(c));
  const float mu = static_cast<float>(c.attrs.get_float("momentum"));
  const float decay = static_cast<float>(c.attrs.get_float("weight_decay"));
  float* p = c.inputs[0].as<float>();
  float* buffer = has_momentum ? c.inputs[2].as<float>() : nullptr;
  uint32_t bad = 0;
  for (int64_t i = 0, n = c.inputs[0].numel(); i < n; ++i) {
    float d = g[i] * scale + decay * p[i];
    if (buffer) d = buffer[i] = mu * buffer[i] + d;
    p[i] -= lr * d;
    bad |= non_finite(p[i]);
  }
  check_finite(c, g, bad);
  clear(accumulator);
}

// (param, gradient, m, v, [gradient_accumulator])
void adamw_update(const KernelContext& c) {
  const TensorView* accumulator = c.inputs.size() > 4 ? &c.inputs[4] : nullptr;
  float scale = 1;
  const float* g = gradient_to_apply(c, accumulator, &scale);
  if (g == nullptr) return;
  const double lr = learning_rate(c);
  const double beta1 = c.attrs.get_float("beta1"), beta2 = c.attrs.get_float("beta2");
  const float eps = static_cast<float>(c.attrs.get_float("eps"));
  const double t = static_cast<double>((c.step + 1) / c.attrs.get_int("accumulation_steps", 1));
  const float bias1 = static_cast<float>(1 - std::pow(beta1, t));
  const float bias2 = static_cast<float>(1 - std::pow(beta2, t));
  const float decay_factor = static_cast<float>(1 - lr * c.attrs.get_float("weight_decay"));
  // 1 - beta is formed in double: in float, 1 - 0.999f is off by 1e-5 relative.
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2), step_size = static_cast<float>(lr);
  const float one_minus_b1 = static_cast<float>(1 - beta1), one_minus_b2 = static_cast<float>(1 - beta2);
  float* p = c.inputs[0].as<float>();
  float* m = c.inputs[2].as<float>();
  float* v = c.inputs[3].as<float>();
  const AdamWStep step{scale, b1, b2, one_minus_b1, one_minus_b2, bias1, bias2, eps, step_size, decay_factor};
  const int64_t n = c.inputs[0].numel();
  std::atomic<uint32_t> bad{0};
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    adamw_loop(p + begin, g + begin, m + begin, v + begin, step, end - begin);
    uint32_t chunk = 0;
    for (int64_t i = begin; i < end; ++i) chunk |= non_finite(p[i]);
    bad.fetch_or(chunk);
  });
  check_finite(c, g, bad.load());
  clear(accumulator);
}

TESSEL_KERNEL("sgd_update", cpu, f32, sgd_update);
TESSEL_KERNEL("adamw_update", cpu, f32, adamw_update);

}  // namespace
}  // namespace tessel::cpu
