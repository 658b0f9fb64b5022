// Each user mistake is an Error, raised where the mistake was made, naming what is wrong.
#include <limits>

#include "graph/graph.h"
#include "graph/serialize.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

TEST(Errors, MatmulShapeMismatchNamesOpShapesRuleAndCallSite) {
  Graph g;
  Tensor a = g.input("a", {2, 3});
  Tensor b = g.input("b", {4, 5});
  const int line = __LINE__ + 1;
  EXPECT_TESSEL_ERROR(matmul(a, b), ErrorCode::kShapeMismatch, "matmul", "[2, 3]", "[4, 5]",
                      "expected a[..., m, k] @ b[..., k, n]", "errors_test.cc:" + std::to_string(line));
}

TEST(Errors, BroadcastMismatchNamesBothShapes) {
  Graph g;
  Tensor a = g.input("a", {2, 3});
  Tensor b = g.input("b", {4});
  EXPECT_TESSEL_ERROR(a + b, ErrorCode::kShapeMismatch, "add", "[2, 3]", "[4]", "equal or 1");
}

TEST(Errors, OtherShapeRules) {
  Graph g;
  Tensor x = g.input("x", {2, 3});
  Tensor labels = g.input("labels", {3}, i64);
  EXPECT_TESSEL_ERROR(cross_entropy(x, labels), ErrorCode::kShapeMismatch, "cross_entropy", "[2, 3]", "[3]");
  EXPECT_TESSEL_ERROR(cross_entropy(x, x), ErrorCode::kShapeMismatch, "labels must be an integer tensor");
  EXPECT_TESSEL_ERROR(bias_add(x, g.input("b", {2})), ErrorCode::kShapeMismatch, "bias_add", "last axis");
  EXPECT_TESSEL_ERROR(reshape(x, {4, 2}), ErrorCode::kShapeMismatch, "reshape", "[2, 3]", "[4, 2]");
  EXPECT_TESSEL_ERROR(softmax(x, 2), ErrorCode::kInvalidArgument, "axis 2 is out of range", "[2, 3]");
  EXPECT_TESSEL_ERROR(transpose(x, {0, 0}), ErrorCode::kInvalidArgument, "not a permutation");
  EXPECT_TESSEL_ERROR(slice(x, {0, 1}, {2, 4}), ErrorCode::kInvalidArgument, "range [1, 4) of axis 1");
  EXPECT_TESSEL_ERROR(concat({x, g.input("y", {2, 2})}, 0), ErrorCode::kShapeMismatch, "concat", "[2, 2]");
  EXPECT_TESSEL_ERROR(dropout(x, 1.5), ErrorCode::kInvalidArgument, "p = 1.5");
  EXPECT_TESSEL_ERROR(matmul(x, g.input("v", {3})), ErrorCode::kShapeMismatch, "rank >= 2");
  EXPECT_TESSEL_ERROR(g.input("x", {1}), ErrorCode::kInvalidArgument, "'x'", "already used");
}

TEST(Errors, UnknownOpNameSuggestsTheClosest) {
  Graph g;
  Tensor x = g.input("x", {2, 2});
  EXPECT_TESSEL_ERROR(g.apply("matmull", {x, x}), ErrorCode::kNotFound, "unknown op 'matmull'",
                      "did you mean 'matmul'?");
  EXPECT_TESSEL_ERROR(g.apply("relu", {x, x}), ErrorCode::kInvalidArgument, "relu", "takes 1 inputs, got 2");
}

TEST(Errors, CycleInALoadedGraphIsRejectedNamingItsNodes) {
  Graph g;
  const char* text = R"(
    nodes { name: "x" op: "input" attrs { key: "shape" value { ints { values: 2 } } }
                                  attrs { key: "dtype" value { s: "f32" } } }
    nodes { name: "a" op: "add" inputs: "x" inputs: "c" }
    nodes { name: "b" op: "relu" inputs: "a" }
    nodes { name: "c" op: "tanh" inputs: "b" }
  )";
  EXPECT_TESSEL_ERROR(graph_from_text(g, text), ErrorCode::kInvalidArgument, "cycle", "a -> b -> c -> a");
}

TEST(Errors, LoadedGraphWithUnknownOpOrMissingNode) {
  const char* header = R"(nodes { name: "x" op: "input" attrs { key: "shape" value { ints { values: 2 } } }
                                    attrs { key: "dtype" value { s: "f32" } } })";
  {
    Graph g;
    EXPECT_TESSEL_ERROR(graph_from_text(g, std::string(header) + R"(nodes { name: "y" op: "rleu" inputs: "x" })"),
                        ErrorCode::kNotFound, "node 'y'", "unknown op 'rleu'", "did you mean 'relu'?");
  }
  {
    Graph g;
    EXPECT_TESSEL_ERROR(graph_from_text(g, std::string(header) + R"(nodes { name: "y" op: "relu" inputs: "z" })"),
                        ErrorCode::kNotFound, "node 'y' reads 'z'");
  }
  {
    Graph g;
    EXPECT_TESSEL_ERROR(graph_from_text(g, "nodes { name: "), ErrorCode::kDataLoss, "not a valid");
  }
}

TEST(Errors, ParameterWithNoGradientPathIsNamed) {
  Graph g;
  Tensor x = g.input("x", {4, 3});
  Tensor w = g.param("w", {3, 2}, init::normal(0.1));
  g.param("unused", {5}, init::zeros());
  Tensor loss = mean(matmul(x, w));
  EXPECT_TESSEL_ERROR(g.minimize(loss, SGD{.lr = 0.1}), ErrorCode::kInvalidArgument, "minimize", "parameter 'unused'",
                      "no gradient path to");
}

TEST(Errors, NonScalarLossAndBadOptimizerSettings) {
  Graph g;
  Tensor x = g.input("x", {4, 3});
  Tensor w = g.param("w", {3, 2}, init::normal(0.1));
  Tensor y = matmul(x, w);
  EXPECT_TESSEL_ERROR(g.minimize(y, SGD{}), ErrorCode::kInvalidArgument, "must be a scalar", "[4, 2]", "mean()");
  EXPECT_TESSEL_ERROR(g.minimize(mean(y), SGD{}, {.accumulation_steps = 0}), ErrorCode::kInvalidArgument,
                      "accumulation_steps must be at least 1");
  EXPECT_TESSEL_ERROR(g.minimize(mean(y), AdamW{.lr = -1}), ErrorCode::kInvalidArgument, "learning rate");
}

TEST(Errors, DifferentiatingThroughAnOpWithoutGradientRule) {
  Graph g;
  Tensor x = g.input("x", {3});
  Tensor y = g.apply1("relu_grad", {x, x});  // a backward op: it has no gradient of its own
  EXPECT_TESSEL_ERROR(g.gradients(sum(y), {x}), ErrorCode::kUnimplemented, "relu_grad", "no gradient rule");
}

TEST(Errors, InputNeverFedIsNamed) {
  Graph g;
  Tensor x = g.input("x", {2});
  Tensor y = g.input("y", {2});
  Interpreter interpreter(g);
  EXPECT_TESSEL_ERROR(interpreter.evaluate({{"x", HostTensor(Shape{2}, f32)}}, {x + y}), ErrorCode::kFailedPrecondition,
                      "input 'y'", "was not fed");
  // An input the fetches do not need may be left out.
  EXPECT_NO_THROW(interpreter.evaluate({{"x", HostTensor(Shape{2}, f32)}}, {relu(x)}));
}

TEST(Errors, BadFeedsAreNamed) {
  Graph g;
  Tensor x = g.input("x", {2});
  Interpreter interpreter(g);
  EXPECT_TESSEL_ERROR(interpreter.evaluate({{"x", HostTensor(Shape{3}, f32)}}, {relu(x)}), ErrorCode::kShapeMismatch,
                      "feed 'x' is [3] f32", "expects [2] f32");
  EXPECT_TESSEL_ERROR(interpreter.evaluate({{"x", HostTensor(Shape{2}, i64)}}, {relu(x)}), ErrorCode::kShapeMismatch,
                      "[2] i64");
  EXPECT_TESSEL_ERROR(interpreter.evaluate({{"x", HostTensor(Shape{2}, f32)}, {"z", HostTensor(Shape{2}, f32)}}, {x}),
                      ErrorCode::kNotFound, "feed 'z' names no input", "inputs: x");
}

TEST(Errors, DtypeWithoutKernelNamesOpAndDtype) {
  Graph g;
  Tensor x = g.input("x", {2, 2}, f16);
  Interpreter interpreter(g);
  EXPECT_TESSEL_ERROR(interpreter.evaluate({{"x", HostTensor(Shape{2, 2}, f16)}}, {matmul(x, x)}),
                      ErrorCode::kUnimplemented, "op 'matmul' has no cpu kernel for dtype f16", "kernels exist for: f32");
}

TEST(Errors, LabelOutOfRangeAtRunTime) {
  Graph g;
  Tensor logits = g.input("logits", {2, 3});
  Tensor labels = g.input("labels", {2}, i64);
  Interpreter interpreter(g);
  EXPECT_TESSEL_ERROR(
      interpreter.evaluate({{"logits", HostTensor(Shape{2, 3}, f32)}, {"labels", HostTensor::of<int64_t>({2}, {1, 3})}},
                           {cross_entropy(logits, labels)}),
      ErrorCode::kOutOfRange, "label 3 at position 1 is outside [0, 3)", "class index of logits [2, 3]",
      "errors_test.cc");
}

// A second minimize() on one graph is refused where it is called (it used to be accepted and
// then to abort the compiler), and so is an optimizer setting that is not a finite number.
TEST(Errors, MinimizeTwiceAndNonFiniteOptimizerSettingsAreRefused) {
  Graph g;
  Tensor x = g.input("x", {4, 3});
  Tensor w = g.param("w", {3, 2});
  Tensor loss = mean(matmul(x, w));
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  EXPECT_TESSEL_ERROR(g.minimize(loss, SGD{.lr = nan}), ErrorCode::kInvalidArgument, "the learning rate is nan");
  EXPECT_TESSEL_ERROR(g.minimize(loss, SGD{.lr = inf}), ErrorCode::kInvalidArgument, "the learning rate is inf");
  EXPECT_TESSEL_ERROR(g.minimize(loss, SGD{.lr = 0.1, .momentum = nan}), ErrorCode::kInvalidArgument,
                      "SGD's momentum is nan");
  EXPECT_TESSEL_ERROR(g.minimize(loss, AdamW{.beta2 = 1}), ErrorCode::kInvalidArgument, "AdamW's beta2 is 1");
  EXPECT_TESSEL_ERROR(g.minimize(loss, AdamW{.eps = inf}), ErrorCode::kInvalidArgument, "AdamW's eps is inf");
  g.minimize(loss, SGD{.lr = 0.1});
  EXPECT_TESSEL_ERROR(g.minimize(loss, SGD{.lr = 0.1}), ErrorCode::kFailedPrecondition,
                      "minimize was already called on this graph", "errors_test.cc");
  Session session(g, {loss});  // the graph the first call made still compiles
  EXPECT_EQ(session.step({{"x", HostTensor(Shape{4, 3}, f32)}}).size(), 1u);
}

// Sizes that overflow 64 bits, and reads outside a tensor, are Errors, not wrapped counts or
// aborts.
TEST(Errors, OverflowingShapesAndOutOfRangeReadsAreErrors) {
  EXPECT_TESSEL_ERROR(Shape({int64_t{1} << 40, int64_t{1} << 40}).numel(), ErrorCode::kOutOfRange,
                      "holds more elements than a 64-bit count can");
  EXPECT_TESSEL_ERROR(HostTensor(Shape{3037000500, 3037000500}, f32), ErrorCode::kOutOfRange,
                      "[3037000500, 3037000500]");
  EXPECT_TESSEL_ERROR(HostTensor(Shape{1, std::numeric_limits<int64_t>::max()}, f32), ErrorCode::kOutOfRange,
                      "needs more bytes than memory can hold");
  HostTensor small(Shape{2, 2}, f32);
  EXPECT_TESSEL_ERROR(small.get(4), ErrorCode::kOutOfRange, "get(4) of a tensor of shape [2, 2] (4 elements)");
  EXPECT_TESSEL_ERROR(small.set(-1, 0), ErrorCode::kOutOfRange, "set(-1)");
}

// A parameter too big for memory is an Error naming it and its bytes, not a bare std::bad_alloc.
TEST(Errors, AParameterTooBigToAllocateIsNamed) {
  Graph g;
  Tensor x = g.input("x", {4, 3});
  Tensor huge = g.param("huge", {int64_t{1} << 20, int64_t{1} << 20});  // 4 TiB of f32
  Tensor loss = mean(matmul(x, slice(huge, {0, 0}, {3, 2})));
  EXPECT_TESSEL_ERROR(Session(g, {loss}), ErrorCode::kOutOfRange, "the variables of cpu:0",
                      "'huge' [1048576, 1048576] f32, 4398046511104 bytes", "out of host memory");
}

// A zero extent is refused where the tensor is made (it used to surface as "no SBP signature of
// matmul fits" at the first op that used it).
TEST(Errors, AZeroExtentIsRefusedWhereTheTensorIsMade) {
  Graph g;
  EXPECT_TESSEL_ERROR(g.input("x", {0, 3}), ErrorCode::kInvalidArgument, "input 'x'", "shape [0, 3] has a zero extent");
  EXPECT_TESSEL_ERROR(g.param("w", {3, 0}), ErrorCode::kInvalidArgument, "shape [3, 0] has a zero extent");
}

}  // namespace
}  // namespace tessel
