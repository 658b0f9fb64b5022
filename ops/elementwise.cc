// Element-wise ops: binary arithmetic with broadcasting, activations, and the broadcast
// helpers their gradients use.
#include <cmath>

#include "ops/op_helpers.h"

namespace tessel {
namespace {
using namespace op_helpers;

std::vector<TensorType> infer_broadcast(const InferContext& c) {
  require_same_dtype(c.inputs[0], c.inputs[1]);
  return {{broadcast_or_throw(c.inputs[0].shape, c.inputs[1].shape), c.inputs[0].dtype}};
}

// (P, P) -> P: a + b adds the partial values; (P, B) -> P: a * b scales each of them.
std::vector<SbpSignature> linear_in_both(const SbpContext& c) { return elementwise_sbp(c, {{P, P}}); }
std::vector<SbpSignature> linear_in_each(const SbpContext& c) { return elementwise_sbp(c, {{P, B}, {B, P}}); }
std::vector<SbpSignature> linear_in_first(const SbpContext& c) {
  return elementwise_sbp(c, {c.inputs.size() == 1 ? std::vector<Sbp>{P} : std::vector<Sbp>{P, B}});
}
// Gradients grad(x or y, dy) are linear in dy.
std::vector<SbpSignature> linear_in_second(const SbpContext& c) { return elementwise_sbp(c, {{B, P}}); }

TESSEL_OP("add").inputs(2).infers(infer_broadcast).sbp(linear_in_both).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, reduce_to(c.output_gradient(), c.input(0)));
  c.set_input_gradient(1, reduce_to(c.output_gradient(), c.input(1)));
});
TESSEL_OP("sub").inputs(2).infers(infer_broadcast).sbp(linear_in_both).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, reduce_to(c.output_gradient(), c.input(0)));
  if (c.needs_gradient(1)) c.set_input_gradient(1, reduce_to(-c.output_gradient(), c.input(1)));
});
TESSEL_OP("mul").inputs(2).infers(infer_broadcast).sbp(linear_in_each).differentiates([](GradientContext& c) {
  if (c.needs_gradient(0)) c.set_input_gradient(0, reduce_to(c.output_gradient() * c.input(1), c.input(0)));
  if (c.needs_gradient(1)) c.set_input_gradient(1, reduce_to(c.output_gradient() * c.input(0), c.input(1)));
});
TESSEL_OP("div").inputs(2).infers(infer_broadcast).sbp(linear_in_first).differentiates([](GradientContext& c) {
  // y = a / b: dy/da = 1 / b, dy/db = -y / b.
  if (c.needs_gradient(0)) c.set_input_gradient(0, reduce_to(c.output_gradient() / c.input(1), c.input(0)));
  if (c.needs_gradient(1)) {
    c.set_input_gradient(1, reduce_to(-(c.output_gradient() * c.output() / c.input(1)), c.input(1)));
  }
});
TESSEL_OP("scale").inputs(1).infers(same_as_first).sbp(linear_in_first).differentiates([](GradientContext& c) {
  c.set_input_gradient(0, scale(c.output_gradient(), c.attrs().get_float("factor")));
});

TESSEL_OP("bias_add")
    .inputs(2)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const TensorType& x = c.inputs[0];
      const TensorType& bias = c.inputs[1];
      require_same_dtype(x, bias);
      if (x.shape.rank() < 1 || bias.shape.rank() != 1 || bias.shape[0] != x.shape[x.shape.rank() - 1]) {
        throw Error::ShapeMismatch(concat("x ", x.shape, " and bias ", bias.shape,
                                          " do not fit: expected bias to be one-dimensional with as many elements as "
                                          "x's last axis"));
      }
      return {x};
    })
    .sbp([](const SbpContext& c) {
      // x[..., C] + bias[C]: split x's rows freely; splitting C splits the bias too.
      const int last = c.inputs[0].shape.rank() - 1;
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis < last; ++axis) signatures.push_back({{S(axis), B}, {S(axis)}});
      signatures.push_back({{S(last), S(0)}, {S(last)}});
      signatures.push_back({{B, B}, {B}});
      signatures.push_back({{P, P}, {P}});
      return signatures;
    })
    .differentiates([](GradientContext& c) {
      c.set_input_gradient(0, c.output_gradient());
      if (c.needs_gradient(1)) c.set_input_gradient(1, sum_to(c.output_gradient(), c.input(1).shape()));
    });

std::vector<TensorType> infer_activation(const InferContext& c) {
  require_floating(c.inputs[0], "the input");
  return {c.inputs[0]};
}

// Activations whose gradient is grad_op(x, dy) or grad_op(y, dy).
void define_activation(const char* name, const char* gradient_op, bool gradient_uses_output) {
  OpRegistry::global()
      .define(name)
      .inputs(1)
      .infers(infer_activation)
      .sbp([](const SbpContext& c) { return elementwise_sbp(c); })
      .differentiates([gradient_op, gradient_uses_output](GradientContext& c) {
        const Tensor saved = gradient_uses_output ? c.output() : c.input(0);
        c.set_input_gradient(0, c.graph().apply1(gradient_op, {saved, c.output_gradient()}));
      });
  OpRegistry::global().define(gradient_op).inputs(2).infers(infer_broadcast).sbp(linear_in_second);
}

[[maybe_unused]] const bool activations_defined = [] {
  define_activation("relu", "relu_grad", true);  // relu(x) > 0 exactly where x > 0
  define_activation("gelu", "gelu_grad", false);
  define_activation("tanh", "tanh_grad", true);
  define_activation("sigmoid", "sigmoid_grad", true);
  return true;
}();

TESSEL_OP("fill")
    .inputs(0)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      return {{c.attrs.get_shape("shape"), dtype_named(c.attrs.get_string("dtype"))}};
    })
    .sbp([](const SbpContext& c) { return elementwise_sbp(c); })
    .localizes(localize_shape);

TESSEL_OP("broadcast_to")
    .inputs(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const Shape target = c.attrs.get_shape("shape");
      auto shape = broadcast_shapes(c.inputs[0].shape, target);
      if (!shape || *shape != target) {
        throw Error::ShapeMismatch(concat("cannot broadcast ", c.inputs[0].shape, " to ", target));
      }
      return {{target, c.inputs[0].dtype}};
    })
    .sbp(linear_in_first)
    .localizes(localize_shape)
    .differentiates([](GradientContext& c) {
      c.set_input_gradient(0, sum_to(c.output_gradient(), c.input(0).shape()));
    });

TESSEL_OP("sum_to")
    .inputs(1)
    .infers([](const InferContext& c) -> std::vector<TensorType> {
      const Shape target = c.attrs.get_shape("shape");
      auto shape = broadcast_shapes(c.inputs[0].shape, target);
      if (!shape || *shape != c.inputs[0].shape) {
        throw Error::ShapeMismatch(concat("cannot sum ", c.inputs[0].shape, " down to ", target, " (expected ", target,
                                          " to broadcast to ", c.inputs[0].shape, ")"));
      }
      return {{target, c.inputs[0].dtype}};
    })
    .sbp([](const SbpContext& c) {
      // Splitting an axis that is summed away leaves partial sums; a kept axis stays split.
      const Shape& in = c.inputs[0].shape;
      const Shape& out = c.outputs[0].shape;
      std::vector<SbpSignature> signatures;
      for (int axis = 0; axis < in.rank(); ++axis) {
        const int kept = axis - (in.rank() - out.rank());
        const bool summed = kept < 0 || out[kept] != in[axis];
        signatures.push_back({{S(axis)}, {summed ? P : S(kept)}});
      }
      signatures.push_back({{B}, {B}});
      signatures.push_back({{P}, {P}});
      return signatures;
    })
    .localizes(localize_shape)
    .differentiates([](GradientContext& c) {
      c.set_input_gradient(0, broadcast_to(c.output_gradient(), c.input(0).shape()));
    });

}  // namespace

Tensor add(const Tensor& a, const Tensor& b, Where where) { return call("add", {a, b}, {}, where); }
Tensor sub(const Tensor& a, const Tensor& b, Where where) { return call("sub", {a, b}, {}, where); }
Tensor mul(const Tensor& a, const Tensor& b, Where where) { return call("mul", {a, b}, {}, where); }
Tensor div(const Tensor& a, const Tensor& b, Where where) { return call("div", {a, b}, {}, where); }
Tensor scale(const Tensor& x, double factor, Where where) { return call("scale", {x}, {{"factor", factor}}, where); }
Tensor bias_add(const Tensor& x, const Tensor& bias, Where where) { return call("bias_add", {x, bias}, {}, where); }
Tensor relu(const Tensor& x, Where where) { return call("relu", {x}, {}, where); }
Tensor gelu(const Tensor& x, Where where) { return call("gelu", {x}, {}, where); }
Tensor tanh(const Tensor& x, Where where) { return call("tanh", {x}, {}, where); }
Tensor sigmoid(const Tensor& x, Where where) { return call("sigmoid", {x}, {}, where); }

Tensor fill(Graph& graph, Shape shape, double value, DType dtype, Where where) {
  return graph.apply1("fill", {}, {{"shape", shape.dims()}, {"value", value}, {"dtype", std::string(name_of(dtype))}},
                      where);
}
Tensor broadcast_to(const Tensor& x, Shape shape, Where where) {
  return call("broadcast_to", {x}, {{"shape", shape.dims()}}, where);
}
Tensor sum_to(const Tensor& x, Shape shape, Where where) {
  return call("sum_to", {x}, {{"shape", shape.dims()}}, where);
}

}  // namespace tessel
