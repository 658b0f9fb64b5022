// CPU kernels of the element-wise ops (f32).
#include <cmath>
#include <vector>

#include "devices/cpu_device.h"
#include "ops/kernels/cpu/kernel_helpers.h"
#include "ops/kernels/cpu/vector_loops.h"
#include "ops/kernels/cpu/widened.h"
#include "ops/registry.h"

namespace tessel::cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;

// y = op(a, b) with broadcasting. The inner loops take unit or zero strides, so they vectorise.
template <typename Op>
void binary(const KernelContext& c) {
  const TensorView& a = c.inputs[0];
  const TensorView& b = c.inputs[1];
  const TensorView& out = c.outputs[0];
  const float* __restrict pa = a.as<float>();
  const float* __restrict pb = b.as<float>();
  float* __restrict py = out.as<float>();
  const Op op;
  if (a.shape == out.shape && b.shape == out.shape) {
    parallel_for(out.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) py[i] = op(pa[i], pb[i]);
    });
    return;
  }
  for_each_broadcast_row<2>(out.shape, {a.shape, b.shape},
                            [&](int64_t o, const auto& offsets, const auto& strides, int64_t n) {
                              float* __restrict y = py + o;
                              const float* __restrict x1 = pa + offsets[0];
                              const float* __restrict x2 = pb + offsets[1];
                              if (strides[0] == 1 && strides[1] == 1) {
                                for (int64_t i = 0; i < n; ++i) y[i] = op(x1[i], x2[i]);
                              } else if (strides[0] == 1) {
                                const float v = x2[0];
                                for (int64_t i = 0; i < n; ++i) y[i] = op(x1[i], v);
                              } else if (strides[1] == 1) {
                                const float v = x1[0];
                                for (int64_t i = 0; i < n; ++i) y[i] = op(v, x2[i]);
                              } else {
                                const float v = op(x1[0], x2[0]);
                                for (int64_t i = 0; i < n; ++i) y[i] = v;
                              }
                            });
}

template <typename Op>
void unary(const KernelContext& c) {
  const float* __restrict x = c.inputs[0].as<float>();
  float* __restrict y = c.outputs[0].as<float>();
  const Op op;
  parallel_for(c.outputs[0].numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = op(x[i]);
  });
}

struct Add {
  float operator()(float a, float b) const { return a + b; }
};
struct Sub {
  float operator()(float a, float b) const { return a - b; }
};
struct Mul {
  float operator()(float a, float b) const { return a * b; }
};
struct Div {
  float operator()(float a, float b) const { return a / b; }
};
struct Tanh {
  float operator()(float x) const { return std::tanh(x); }
};
// Gradients: (saved forward value, dy) -> dx.
struct TanhGrad {
  float operator()(float y, float dy) const { return dy * (1.0f - y * y); }
};
struct SigmoidGrad {
  float operator()(float y, float dy) const { return dy * y * (1.0f - y); }
};

void scale(const KernelContext& c) {
  const float factor = static_cast<float>(c.attrs.get_float("factor"));
  const float* __restrict x = c.inputs[0].as<float>();
  float* __restrict y = c.outputs[0].as<float>();
  parallel_for(c.outputs[0].numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = factor * x[i];
  });
}

void bias_add(const KernelContext& c) {
  const TensorView& x = c.inputs[0];
  const int64_t width = x.shape[x.shape.rank() - 1];
  const float* __restrict px = x.as<float>();
  const float* __restrict bias = c.inputs[1].as<float>();
  float* __restrict y = c.outputs[0].as<float>();
  const int64_t rows = width == 0 ? 0 : x.numel() / width;
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, width)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t j = 0; j < width; ++j) y[r * width + j] = px[r * width + j] + bias[j];
    }
  });
}

template <typename T>
void fill(const KernelContext& c) {
  const double given = c.attrs.get_float("value");
  const T value = std::is_same_v<T, bool> ? given != 0 : static_cast<T>(given);
  T* y = c.outputs[0].as<T>();
  for (int64_t i = 0, n = c.outputs[0].numel(); i < n; ++i) y[i] = value;
}

template <uint16_t (*Encode)(float)>
void fill_16(const KernelContext& c) {
  const uint16_t value = Encode(static_cast<float>(c.attrs.get_float("value")));
  uint16_t* y = static_cast<uint16_t*>(c.outputs[0].data);
  for (int64_t i = 0, n = c.outputs[0].numel(); i < n; ++i) y[i] = value;
}

void broadcast_to(const KernelContext& c) {
  const float* x = c.inputs[0].as<float>();
  float* y = c.outputs[0].as<float>();
  for_each_broadcast_row<1>(c.outputs[0].shape, {c.inputs[0].shape},
                            [&](int64_t o, const auto& offsets, const auto& strides, int64_t n) {
                              for (int64_t i = 0; i < n; ++i) y[o + i] = x[offsets[0] + i * strides[0]];
                            });
}

}  // namespace

void sum_into(const TensorView& big, const Shape& small, float* out) {
  std::fill(out, out + small.numel(), 0.0f);
  const float* x = big.as<float>();
  for_each_broadcast_row<1>(big.shape, {small}, [&](int64_t o, const auto& offsets, const auto& strides, int64_t n) {
    float* y = out + offsets[0];
    if (strides[0] == 0) {
      // A float total stops growing by small terms past 2^24 times their size; a double one
      // keeps long rows (millions of elements) exact to float precision.
      // Eight running totals: no chain of dependent adds, so the compiler can vectorize.
      double lanes[8] = {};
      const float* row = x + o;
      int64_t i = 0;
      for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; ++k) lanes[k] += row[i + k];
      }
      double total = 0;
      for (; i < n; ++i) total += row[i];
      for (double lane : lanes) total += lane;
      *y += static_cast<float>(total);
    } else {
      accumulate_loop(y, x + o, n);
    }
  });
}

namespace {
void sum_to(const KernelContext& c) { sum_into(c.inputs[0], c.outputs[0].shape, c.outputs[0].as<float>()); }

// bf16 (the gradient of a bf16 matrix used by every batch of a product): summed in f32, then
// rounded once.
void sum_to_bf16(const KernelContext& c) {
  const TensorView& x = c.inputs[0];
  std::vector<float> wide(static_cast<size_t>(x.numel())), sums(static_cast<size_t>(c.outputs[0].numel()));
  bf16_to_f32_loop(static_cast<const uint16_t*>(x.data), wide.data(), x.numel());
  sum_into(TensorView{wide.data(), x.shape, DType::f32, DeviceType::cpu}, c.outputs[0].shape, sums.data());
  f32_to_bf16_loop(sums.data(), static_cast<uint16_t*>(c.outputs[0].data), c.outputs[0].numel());
}

TESSEL_KERNEL("add", cpu, f32, binary<Add>);
TESSEL_WIDENED_KERNELS("add", binary<Add>);
TESSEL_KERNEL("sub", cpu, f32, binary<Sub>);
TESSEL_WIDENED_KERNELS("sub", binary<Sub>);
TESSEL_KERNEL("mul", cpu, f32, binary<Mul>);
TESSEL_WIDENED_KERNELS("mul", binary<Mul>);
TESSEL_KERNEL("div", cpu, f32, binary<Div>);
TESSEL_WIDENED_KERNELS("div", binary<Div>);
TESSEL_KERNEL("scale", cpu, f32, scale);
TESSEL_WIDENED_KERNELS("scale", scale);
TESSEL_KERNEL("bias_add", cpu, f32, bias_add);
TESSEL_WIDENED_KERNELS("bias_add", bias_add);
TESSEL_KERNEL("relu", cpu, f32, vector_unary<relu_loop>);
TESSEL_WIDENED_KERNELS("relu", vector_unary<relu_loop>);
TESSEL_KERNEL("gelu", cpu, f32, vector_unary<gelu_loop>);
TESSEL_WIDENED_KERNELS("gelu", vector_unary<gelu_loop>);
TESSEL_KERNEL("tanh", cpu, f32, unary<Tanh>);
TESSEL_WIDENED_KERNELS("tanh", unary<Tanh>);
TESSEL_KERNEL("sigmoid", cpu, f32, vector_unary<sigmoid_loop>);
TESSEL_WIDENED_KERNELS("sigmoid", vector_unary<sigmoid_loop>);
TESSEL_KERNEL("relu_grad", cpu, f32, vector_gradient<relu_grad_loop>);
TESSEL_WIDENED_KERNELS("relu_grad", vector_gradient<relu_grad_loop>);
TESSEL_KERNEL("gelu_grad", cpu, f32, vector_gradient<gelu_grad_loop>);
TESSEL_WIDENED_KERNELS("gelu_grad", vector_gradient<gelu_grad_loop>);
TESSEL_KERNEL("tanh_grad", cpu, f32, binary<TanhGrad>);
TESSEL_WIDENED_KERNELS("tanh_grad", binary<TanhGrad>);
TESSEL_KERNEL("sigmoid_grad", cpu, f32, binary<SigmoidGrad>);
TESSEL_WIDENED_KERNELS("sigmoid_grad", binary<SigmoidGrad>);
TESSEL_KERNEL("fill", cpu, f32, fill<float>);
TESSEL_KERNEL("fill", cpu, i32, fill<int32_t>);
TESSEL_KERNEL("fill", cpu, i64, fill<int64_t>);
TESSEL_KERNEL("fill", cpu, boolean, fill<bool>);
TESSEL_KERNEL("fill", cpu, f16, fill_16<float_to_f16>);
TESSEL_KERNEL("fill", cpu, bf16, fill_16<float_to_bf16>);
TESSEL_KERNEL("broadcast_to", cpu, f32, broadcast_to);
TESSEL_WIDENED_KERNELS("broadcast_to", broadcast_to);
TESSEL_KERNEL("sum_to", cpu, f32, sum_to);
TESSEL_KERNEL("sum_to", cpu, bf16, sum_to_bf16);
TESSEL_KERNEL("sum_to", cpu, f16, widened<sum_to>);  // bf16 has a kernel of its own

}  // namespace
}  // namespace tessel::cpu
