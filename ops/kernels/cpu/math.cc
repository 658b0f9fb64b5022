// CPU kernels of the element-wise math, comparisons, where, cast, max/min/argmax, and the
// tensors made in the graph (arange, triu/tril, constant).
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "devices/cpu_device.h"
#include "ops/kernels/cpu/kernel_helpers.h"
#include "ops/kernels/cpu/vector_loops.h"
#include "ops/kernels/cpu/widened.h"
#include "ops/registry.h"

namespace tessel::cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;

// y = op(x) or y = op(saved, dy), f32, with the op built from the node's attributes.
template <typename Op>
void map1(const KernelContext& c) {
  const float* __restrict x = c.inputs[0].as<float>();
  float* __restrict y = c.outputs[0].as<float>();
  const Op op(c.attrs);
  parallel_for(c.outputs[0].numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = op(x[i]);
  });
}
template <typename Op>
void map2(const KernelContext& c) {
  const float* __restrict x = c.inputs[0].as<float>();
  const float* __restrict dy = c.inputs[1].as<float>();
  float* __restrict y = c.outputs[0].as<float>();
  const Op op(c.attrs);
  parallel_for(c.outputs[0].numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = op(x[i], dy[i]);
  });
}

struct NoAttributes {
  explicit NoAttributes(const Attributes&) {}
};
struct Exp : NoAttributes {  // the gradient; the forward kernel is exp_loop
  using NoAttributes::NoAttributes;
  float operator()(float y, float dy) const { return dy * y; }
};
struct Log : NoAttributes {
  using NoAttributes::NoAttributes;
  float operator()(float x) const { return std::log(x); }
  float operator()(float x, float dy) const { return dy / x; }
};
struct Sqrt : NoAttributes {
  using NoAttributes::NoAttributes;
  float operator()(float x) const { return std::sqrt(x); }
  float operator()(float y, float dy) const { return 0.5f * dy / y; }
};
struct Rsqrt : NoAttributes {
  using NoAttributes::NoAttributes;
  float operator()(float x) const { return 1.0f / std::sqrt(x); }
  float operator()(float y, float dy) const { return -0.5f * dy * y * y * y; }
};
struct Abs : NoAttributes {
  using NoAttributes::NoAttributes;
  float operator()(float x) const { return std::fabs(x); }
  float operator()(float x, float dy) const { return x > 0 ? dy : x < 0 ? -dy : 0.0f; }
};
struct Pow {
  explicit Pow(const Attributes& attrs) : p(static_cast<float>(attrs.get_float("exponent"))) {}
  float operator()(float x) const { return std::pow(x, p); }
  float operator()(float x, float dy) const { return p == 0 ? 0.0f : dy * p * std::pow(x, p - 1); }
  float p;
};
struct Clamp {
  explicit Clamp(const Attributes& attrs)
      : low(static_cast<float>(attrs.get_float("low"))), high(static_cast<float>(attrs.get_float("high"))) {}
  float operator()(float x) const { return x < low ? low : x > high ? high : x; }
  // As torch: the gradient passes where low <= x <= high.
  float operator()(float x, float dy) const { return x >= low && x <= high ? dy : 0.0f; }
  float low, high;
};

// Comparisons, with broadcasting, into bool.
template <typename T, typename Compare>
void compare(const KernelContext& c) {
  const T* pa = c.inputs[0].as<T>();
  const T* pb = c.inputs[1].as<T>();
  bool* py = c.outputs[0].as<bool>();
  const Compare op;
  for_each_broadcast_row<2>(c.outputs[0].shape, {c.inputs[0].shape, c.inputs[1].shape},
                            [&](int64_t o, const auto& offsets, const auto& strides, int64_t n) {
                              const T* a = pa + offsets[0];
                              const T* b = pb + offsets[1];
                              for (int64_t i = 0; i < n; ++i) py[o + i] = op(a[i * strides[0]], b[i * strides[1]]);
                            });
}

template <template <typename> class Compare>
void register_comparison(const char* name) {
  OpRegistry& registry = OpRegistry::global();
  registry.register_kernel(name, DeviceType::cpu, DType::f32, compare<float, Compare<float>>);
  register_widened<compare<float, Compare<float>>>(name);
  registry.register_kernel(name, DeviceType::cpu, DType::i32, compare<int32_t, Compare<int32_t>>);
  registry.register_kernel(name, DeviceType::cpu, DType::i64, compare<int64_t, Compare<int64_t>>);
  registry.register_kernel(name, DeviceType::cpu, DType::boolean, compare<bool, Compare<bool>>);
}

// Element-wise by bit pattern: where, triu, tril and stop_gradient move elements without
// reading them as numbers, so one instance per element size serves every dtype.
template <size_t Size>
using Bits = std::conditional_t<Size == 1, uint8_t,
                                std::conditional_t<Size == 2, uint16_t, std::conditional_t<Size == 4, uint32_t, uint64_t>>>;

template <typename T>
void where(const KernelContext& c) {
  const bool* pc = c.inputs[0].as<bool>();
  const T* pa = static_cast<const T*>(c.inputs[1].data);
  const T* pb = static_cast<const T*>(c.inputs[2].data);
  T* py = static_cast<T*>(c.outputs[0].data);
  for_each_broadcast_row<3>(c.outputs[0].shape, {c.inputs[0].shape, c.inputs[1].shape, c.inputs[2].shape},
                            [&](int64_t o, const auto& offsets, const auto& strides, int64_t n) {
                              const bool* condition = pc + offsets[0];
                              const T* a = pa + offsets[1];
                              const T* b = pb + offsets[2];
                              for (int64_t i = 0; i < n; ++i) {
                                py[o + i] = condition[i * strides[0]] ? a[i * strides[1]] : b[i * strides[2]];
                              }
                            });
}

// triu (upper) or tril over the last two axes; the shard's logical row and column offsets
// come from its attributes.
template <typename T, bool Upper>
void triangle(const KernelContext& c) {
  const TensorView& x = c.inputs[0];
  const int rank = x.shape.rank();
  const int64_t rows = x.shape[rank - 2], columns = x.shape[rank - 1];
  const int64_t diagonal = c.attrs.get_int("diagonal");
  const int64_t row_offset = c.attrs.get_int("row_offset", 0);
  const int64_t column_offset = c.attrs.get_int("column_offset", 0);
  const T* px = static_cast<const T*>(x.data);
  T* py = static_cast<T*>(c.outputs[0].data);
  const int64_t matrices = rows * columns == 0 ? 0 : x.numel() / (rows * columns);
  for (int64_t m = 0; m < matrices; ++m) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < columns; ++j) {
        const int64_t offset = (m * rows + r) * columns + j;
        const int64_t above = (j + column_offset) - (r + row_offset);
        const bool keep = Upper ? above >= diagonal : above <= diagonal;
        py[offset] = keep ? px[offset] : T{};
      }
    }
  }
}

void copy(const KernelContext& c) {
  if (c.outputs[0].nbytes() > 0) std::memcpy(c.outputs[0].data, c.inputs[0].data, c.outputs[0].nbytes());
}

// --- cast -------------------------------------------------------------------------------------

// Every dtype reads as a float (f32, f16, bf16) or an integer (i32, i64, bool), and writes from
// either without a detour through double, so large i64 values stay exact between integers.
float read_float(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::f32:
      return static_cast<const float*>(p)[i];
    case DType::f16:
      return f16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::bf16:
      return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::i32:
      return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case DType::i64:
      return static_cast<float>(static_cast<const int64_t*>(p)[i]);
    case DType::boolean:
      return static_cast<const bool*>(p)[i] ? 1.0f : 0.0f;
  }
  return 0;
}

// A float to an integer type: truncated toward zero, saturated at the type's range; NaN is 0.
template <typename T>
T saturate(float value) {
  if (std::isnan(value)) return 0;
  if (value <= static_cast<float>(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
  if (value >= static_cast<float>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(value);
}

int64_t read_integer(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::i32:
      return static_cast<const int32_t*>(p)[i];
    case DType::i64:
      return static_cast<const int64_t*>(p)[i];
    case DType::boolean:
      return static_cast<const bool*>(p)[i] ? 1 : 0;
    default:
      return saturate<int64_t>(read_float(p, dtype, i));
  }
}

void cast(const KernelContext& c) {
  const void* x = c.inputs[0].data;
  void* y = c.outputs[0].data;
  const DType from = c.inputs[0].dtype, to = c.outputs[0].dtype;
  const int64_t n = c.outputs[0].numel();
  // Mixed precision's casts, vectorised: the same bits as the element loop below.
  if (from == DType::f32 && to == DType::bf16) {
    return parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
      f32_to_bf16_loop(static_cast<const float*>(x) + begin, static_cast<uint16_t*>(y) + begin, end - begin);
    });
  }
  if (from == DType::bf16 && to == DType::f32) {
    return parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
      bf16_to_f32_loop(static_cast<const uint16_t*>(x) + begin, static_cast<float*>(y) + begin, end - begin);
    });
  }
  parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      switch (to) {
        case DType::f32:
          static_cast<float*>(y)[i] = read_float(x, from, i);
          break;
        case DType::f16:
          static_cast<uint16_t*>(y)[i] = float_to_f16(read_float(x, from, i));
          break;
        case DType::bf16:
          static_cast<uint16_t*>(y)[i] = float_to_bf16(read_float(x, from, i));
          break;
        case DType::i32:
          static_cast<int32_t*>(y)[i] = is_floating(from) ? saturate<int32_t>(read_float(x, from, i))
                                                          : static_cast<int32_t>(read_integer(x, from, i));
          break;
        case DType::i64:
          static_cast<int64_t*>(y)[i] = read_integer(x, from, i);
          break;
        case DType::boolean:
          static_cast<bool*>(y)[i] = is_floating(from) ? read_float(x, from, i) != 0 : read_integer(x, from, i) != 0;
          break;
      }
    }
  });
}

// --- max, min, argmax ---------------------------------------------------------------------------

template <typename T>
bool is_nan(T value) {
  if constexpr (std::is_floating_point_v<T>) return std::isnan(value);
  return false;
}

// max (Max true) or min over the attribute's axes; NaN wins, as in torch.
template <typename T, bool Max>
void extremum(const KernelContext& c) {
  const TensorView& x = c.inputs[0];
  std::vector<int64_t> kept = x.shape.dims();
  const std::vector<int64_t>& axes = c.attrs.get_ints("axes");
  if (axes.empty()) std::fill(kept.begin(), kept.end(), 1);
  for (int64_t axis : axes) kept[*x.shape.normalize_axis(axis)] = 1;
  const Shape small(kept);
  const T* px = x.as<T>();
  T* y = c.outputs[0].as<T>();
  const auto better = [](T candidate, T current) {
    return is_nan(candidate) || (!is_nan(current) && (Max ? candidate > current : candidate < current));
  };
  std::vector<bool> seen(small.numel(), false);
  for_each_broadcast_row<1>(x.shape, {small}, [&](int64_t o, const auto& offsets, const auto& strides, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t target = offsets[0] + i * strides[0];
      const T v = px[o + i];
      if (!seen[target] || better(v, y[target])) y[target] = v, seen[target] = true;
    }
  });
}

template <typename T>
void argmax(const KernelContext& c) {
  const TensorView& x = c.inputs[0];
  const AxisSplit s = split_at(x.shape, *x.shape.normalize_axis(c.attrs.get_int("axis")));
  const T* px = x.as<T>();
  int64_t* y = c.outputs[0].as<int64_t>();
  for (int64_t outer = 0; outer < s.outer; ++outer) {
    for (int64_t inner = 0; inner < s.inner; ++inner) {
      const T* line = px + outer * s.extent * s.inner + inner;
      int64_t best = 0;
      for (int64_t j = 1; j < s.extent && !is_nan(line[best * s.inner]); ++j) {
        if (is_nan(line[j * s.inner]) || line[j * s.inner] > line[best * s.inner]) best = j;
      }
      y[outer * s.inner + inner] = best;
    }
  }
}

// --- arange and constant -----------------------------------------------------------------------

template <typename T>
void arange(const KernelContext& c) {
  const int64_t start = c.attrs.get_int("start"), step = c.attrs.get_int("step");
  T* y = c.outputs[0].as<T>();
  for (int64_t i = 0, n = c.outputs[0].numel(); i < n; ++i) y[i] = static_cast<T>(start + i * step);
}

// The elements are stored as integers: ints as themselves, floats as their bit patterns.
void constant(const KernelContext& c) {
  const std::vector<int64_t>& codes = c.attrs.get_ints("values");
  const TensorView& y = c.outputs[0];
  if (static_cast<int64_t>(codes.size()) != y.numel()) {  // a plan file's attributes are untrusted
    throw Error::InvalidArgument(concat("constant: ", codes.size(), " stored elements for an output of shape ", y.shape,
                                        " (expected ", y.numel(), ")"));
  }
  for (int64_t i = 0, n = y.numel(); i < n; ++i) {
    switch (y.dtype) {
      case DType::f32:
        static_cast<float*>(y.data)[i] = std::bit_cast<float>(static_cast<uint32_t>(codes[i]));
        break;
      case DType::f16:
      case DType::bf16:
        static_cast<uint16_t*>(y.data)[i] = static_cast<uint16_t>(codes[i]);
        break;
      case DType::i32:
        static_cast<int32_t*>(y.data)[i] = static_cast<int32_t>(codes[i]);
        break;
      case DType::i64:
        static_cast<int64_t*>(y.data)[i] = codes[i];
        break;
      case DType::boolean:
        static_cast<bool*>(y.data)[i] = codes[i] != 0;
        break;
    }
  }
}

template <typename T>
struct Less {
  bool operator()(T a, T b) const { return a < b; }
};
template <typename T>
struct LessEqual {
  bool operator()(T a, T b) const { return a <= b; }
};
template <typename T>
struct Greater {
  bool operator()(T a, T b) const { return a > b; }
};
template <typename T>
struct GreaterEqual {
  bool operator()(T a, T b) const { return a >= b; }
};
template <typename T>
struct Equal {
  bool operator()(T a, T b) const { return a == b; }
};
template <typename T>
struct NotEqual {
  bool operator()(T a, T b) const { return a != b; }
};

template <size_t Size>
void register_by_size(DType dtype) {
  using T = Bits<Size>;
  OpRegistry& registry = OpRegistry::global();
  registry.register_kernel("where", DeviceType::cpu, dtype, where<T>);
  registry.register_kernel("triu", DeviceType::cpu, dtype, triangle<T, true>);
  registry.register_kernel("tril", DeviceType::cpu, dtype, triangle<T, false>);
}

[[maybe_unused]] const bool registered = [] {
  OpRegistry& registry = OpRegistry::global();
  registry.register_kernel("exp", DeviceType::cpu, DType::f32, vector_unary<exp_loop>);
  register_widened<vector_unary<exp_loop>>("exp");
  registry.register_kernel("exp_grad", DeviceType::cpu, DType::f32, map2<Exp>);
  register_widened<map2<Exp>>("exp_grad");
  registry.register_kernel("log", DeviceType::cpu, DType::f32, map1<Log>);
  register_widened<map1<Log>>("log");
  registry.register_kernel("log_grad", DeviceType::cpu, DType::f32, map2<Log>);
  register_widened<map2<Log>>("log_grad");
  registry.register_kernel("sqrt", DeviceType::cpu, DType::f32, map1<Sqrt>);
  register_widened<map1<Sqrt>>("sqrt");
  registry.register_kernel("sqrt_grad", DeviceType::cpu, DType::f32, map2<Sqrt>);
  register_widened<map2<Sqrt>>("sqrt_grad");
  registry.register_kernel("rsqrt", DeviceType::cpu, DType::f32, map1<Rsqrt>);
  register_widened<map1<Rsqrt>>("rsqrt");
  registry.register_kernel("rsqrt_grad", DeviceType::cpu, DType::f32, map2<Rsqrt>);
  register_widened<map2<Rsqrt>>("rsqrt_grad");
  registry.register_kernel("abs", DeviceType::cpu, DType::f32, map1<Abs>);
  register_widened<map1<Abs>>("abs");
  registry.register_kernel("abs_grad", DeviceType::cpu, DType::f32, map2<Abs>);
  register_widened<map2<Abs>>("abs_grad");
  registry.register_kernel("pow", DeviceType::cpu, DType::f32, map1<Pow>);
  register_widened<map1<Pow>>("pow");
  registry.register_kernel("pow_grad", DeviceType::cpu, DType::f32, map2<Pow>);
  register_widened<map2<Pow>>("pow_grad");
  registry.register_kernel("clamp", DeviceType::cpu, DType::f32, map1<Clamp>);
  register_widened<map1<Clamp>>("clamp");
  registry.register_kernel("clamp_grad", DeviceType::cpu, DType::f32, map2<Clamp>);
  register_widened<map2<Clamp>>("clamp_grad");

  register_comparison<Less>("less");
  register_comparison<LessEqual>("less_equal");
  register_comparison<Greater>("greater");
  register_comparison<GreaterEqual>("greater_equal");
  register_comparison<Equal>("equal");
  register_comparison<NotEqual>("not_equal");

  for (DType dtype : kAllDTypes) {
    switch (size_of(dtype)) {
      case 1:
        register_by_size<1>(dtype);
        break;
      case 2:
        register_by_size<2>(dtype);
        break;
      case 4:
        register_by_size<4>(dtype);
        break;
      default:
        register_by_size<8>(dtype);
        break;
    }
    registry.register_kernel("cast", DeviceType::cpu, dtype, cast);  // keyed by the output's dtype
    registry.register_kernel("stop_gradient", DeviceType::cpu, dtype, copy);
    registry.register_kernel("constant", DeviceType::cpu, dtype, constant);
  }

  registry.register_kernel("max", DeviceType::cpu, DType::f32, extremum<float, true>);
  register_widened<extremum<float, true>>("max");
  registry.register_kernel("max", DeviceType::cpu, DType::i32, extremum<int32_t, true>);
  registry.register_kernel("max", DeviceType::cpu, DType::i64, extremum<int64_t, true>);
  registry.register_kernel("min", DeviceType::cpu, DType::f32, extremum<float, false>);
  register_widened<extremum<float, false>>("min");
  registry.register_kernel("min", DeviceType::cpu, DType::i32, extremum<int32_t, false>);
  registry.register_kernel("min", DeviceType::cpu, DType::i64, extremum<int64_t, false>);
  registry.register_kernel("argmax", DeviceType::cpu, DType::f32, argmax<float>);
  register_widened<argmax<float>>("argmax");
  registry.register_kernel("argmax", DeviceType::cpu, DType::i32, argmax<int32_t>);
  registry.register_kernel("argmax", DeviceType::cpu, DType::i64, argmax<int64_t>);
  registry.register_kernel("arange", DeviceType::cpu, DType::f32, arange<float>);
  register_widened<arange<float>>("arange");
  registry.register_kernel("arange", DeviceType::cpu, DType::i32, arange<int32_t>);
  registry.register_kernel("arange", DeviceType::cpu, DType::i64, arange<int64_t>);
  return true;
}();

}  // namespace
}  // namespace tessel::cpu
