// Element-wise math (exp, log, sqrt, rsqrt, abs, pow, clamp), comparisons, where, cast and
// stop_gradient.
#include <cmath>
#include <limits>

#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

std::vector<TensorType> infer_floating(const InferContext& c) {
  require_floating(c.inputs[0], "the input");
  return {c.inputs[0]};
}

std::vector<SbpSignature> pointwise(const SbpContext& c) { return elementwise_sbp(c); }
// grad(saved, dy) is linear in dy.
std::vector<SbpSignature> linear_in_dy(const SbpContext& c) { return elementwise_sbp(c, {{B, P}}); }

// Math whose gradient is a kernel grad_op(saved, dy), saved being x or y, with the op's attributes.
void define_math(const char* name, const char* gradient_op, bool gradient_uses_output) {
  OpRegistry::global()
      .define(name)
      .inputs(1)
      .infers(infer_floating)
      .sbp(pointwise)
      .differentiates([gradient_op, gradient_uses_output](GradientContext& c) {
        const Tensor saved = gradient_uses_output ? c.output() : c.input(0);
        c.set_input_gradient(0, c.graph().apply1(gradient_op, {saved, c.output_gradient()}, c.attrs()));
      });
  OpRegistry::global().define(gradient_op).inputs(2).infers(same_as_first).sbp(linear_in_dy);
}

[[maybe_unused]] const bool math_defined = [] {
  define_math("exp", "exp_grad", true);        // dy * y
  define_math("log", "log_grad", false);       // dy / x
  define_math("sqrt", "sqrt_grad", true);      // dy / (2 y)
  define_math("rsqrt", "rsqrt_grad", true);    // -dy y^3 / 2
  define_math("abs", "abs_grad", false);       // dy * sign(x)
  define_math("pow", "pow_grad", false);       // dy * p x^(p-1)
  define_math("clamp", "clamp_grad", false);   // dy where low <= x <= high
  return true;
}();

// Comparisons of two tensors of one dtype, with broadcasting, give booleans.
std::vector<TensorType> infer_comparison(const InferContext& c) {
  require_same_dtype(c.inputs[0], c.inputs[1]);
  return {{broadcast_or_throw(c.inputs[0].shape, c.inputs[1].shape), DType::boolean}};
}

[[maybe_unused]] const bool comparisons_defined = [] {
  for (const char* name : {"less", "less_equal", "greater", "greater_equal", "equal", "not_equal"}) {
    OpRegistry::global().define(name).inputs(2).infers(infer_comparison).sbp(pointwise);
  }
  return true;
}();

// where(cond, a, b): a where cond holds, b elsewhere, all three broadcast together. Linear in
// (a, b) together, so partial a and b give a partial result.
TESSEL_OP("where")
    .inputs(3)
    .dispatches_on(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const TensorType& cond = c.inputs[0];
      const TensorType& a = c.inputs[1];
      const TensorType& b = c.inputs[2];
      if (cond.dtype != DType::boolean) {
        throw Error::ShapeMismatch(concat("the condition must be bool (from a comparison), got ", cond.dtype));
      }
      require_same_dtype(a, b);
      auto shape = broadcast_shapes(a.shape, b.shape);
      if (shape) shape = broadcast_shapes(cond.shape, *shape);
      if (!shape) {
        throw Error::ShapeMismatch(concat("condition ", cond.shape, ", a ", a.shape, " and b ", b.shape,
                                          " do not broadcast (expected each set of trailing extents to be equal or 1)"));
      }
      return {{*shape, a.dtype}};
    })
    .sbp([](const SbpContext& c) {
      return elementwise_sbp(c, is_floating(c.inputs[1].dtype) ? std::vector<std::vector<Sbp>>{{B, P, P}}
                                                               : std::vector<std::vector<Sbp>>{});
    })
    .differentiates([](GradientContext& c) {
      const Tensor dy = c.output_gradient();
      const Tensor zero = fill(c.graph(), {}, 0.0, dy.dtype());
      if (c.needs_gradient(1)) c.set_input_gradient(1, reduce_to(where(c.input(0), dy, zero), c.input(1)));
      if (c.needs_gradient(2)) c.set_input_gradient(2, reduce_to(where(c.input(0), zero, dy), c.input(2)));
    });

TESSEL_OP("cast")
    .inputs(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      return {{c.inputs[0].shape, dtype_named(c.attrs.get_string("dtype"))}};
    })
    .sbp([](const SbpContext& c) {
      // A sum of partial values survives a cast between float types, up to rounding.
      const bool floats = is_floating(c.inputs[0].dtype) && is_floating(c.outputs[0].dtype);
      return elementwise_sbp(c, floats ? std::vector<std::vector<Sbp>>{{P}} : std::vector<std::vector<Sbp>>{});
    })
    .differentiates([](GradientContext& c) {
      if (!is_floating(c.input(0).dtype()) || !is_floating(c.output().dtype())) return;
      c.set_input_gradient(0, cast(c.output_gradient(), c.input(0).dtype()));
    });

// The identity forward; no gradient flows through it.
TESSEL_OP("stop_gradient")
    .inputs(1)
    .infers(same_as_first)
    .sbp([](const SbpContext& c) {
      return elementwise_sbp(c, is_floating(c.inputs[0].dtype) ? std::vector<std::vector<Sbp>>{{P}}
                                                               : std::vector<std::vector<Sbp>>{});
    })
    .differentiates([](GradientContext&) {});

Tensor compare(const char* op, const Tensor& a, const Tensor& b, Where where) { return call(op, {a, b}, {}, where); }

}  // namespace

Tensor exp(const Tensor& x, Where where) { return call("exp", {x}, {}, where); }
Tensor log(const Tensor& x, Where where) { return call("log", {x}, {}, where); }
Tensor sqrt(const Tensor& x, Where where) { return call("sqrt", {x}, {}, where); }
Tensor rsqrt(const Tensor& x, Where where) { return call("rsqrt", {x}, {}, where); }
Tensor abs(const Tensor& x, Where where) { return call("abs", {x}, {}, where); }
Tensor pow(const Tensor& x, double exponent, Where where) {
  if (!std::isfinite(exponent)) {
    throw Error::InvalidArgument(concat("pow at ", to_string(where), ": the exponent is ", exponent,
                                        " (expected a finite number)"));
  }
  return call("pow", {x}, {{"exponent", exponent}}, where);
}
Tensor clamp(const Tensor& x, double low, double high, Where where) {
  if (std::isnan(low) || std::isnan(high) || low > high) {
    throw Error::InvalidArgument(concat("clamp at ", to_string(where), ": the range [", low, ", ", high,
                                        "] is empty or NaN (expected low <= high; use infinity for no bound)"));
  }
  return call("clamp", {x}, {{"low", low}, {"high", high}}, where);
}

Tensor less(const Tensor& a, const Tensor& b, Where where) { return compare("less", a, b, where); }
Tensor less_equal(const Tensor& a, const Tensor& b, Where where) { return compare("less_equal", a, b, where); }
Tensor greater(const Tensor& a, const Tensor& b, Where where) { return compare("greater", a, b, where); }
Tensor greater_equal(const Tensor& a, const Tensor& b, Where where) {
  return compare("greater_equal", a, b, where);
}
Tensor equal(const Tensor& a, const Tensor& b, Where where) { return compare("equal", a, b, where); }
Tensor not_equal(const Tensor& a, const Tensor& b, Where where) { return compare("not_equal", a, b, where); }

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b, Where location) {
  return call("where", {condition, a, b}, {}, location);
}
Tensor cast(const Tensor& x, DType dtype, Where where) {
  if (x.defined() && x.dtype() == dtype) return x;
  return call("cast", {x}, {{"dtype", std::string(name_of(dtype))}}, where);
}
Tensor stop_gradient(const Tensor& x, Where where) { return call("stop_gradient", {x}, {}, where); }

}  // namespace tessel
