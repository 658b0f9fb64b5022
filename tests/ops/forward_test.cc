// Forward values of every op against values computed by hand.
#include <algorithm>
#include <cmath>

#include "graph/graph.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

std::vector<float> run1(Graph& g, const Tensor& y, const Feeds& feeds = {}) {
  Interpreter interpreter(g);
  return interpreter.evaluate(feeds, {y})[0].to_floats();
}

void expect_floats(const std::vector<float>& actual, const std::vector<float>& expected, float tolerance = 1e-5f) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) EXPECT_NEAR(actual[i], expected[i], tolerance) << "element " << i;
}

HostTensor f(Shape shape, std::vector<float> values) { return HostTensor::of<float>(std::move(shape), values); }

TEST(Forward, MatmulPlainTransposedAndBatched) {
  Graph g;
  Tensor a = g.input("a", {2, 2}), b = g.input("b", {2, 2});
  Feeds feeds{{"a", f({2, 2}, {1, 2, 3, 4})}, {"b", f({2, 2}, {5, 6, 7, 8})}};
  expect_floats(run1(g, matmul(a, b), feeds), {19, 22, 43, 50});
  expect_floats(run1(g, matmul(a, b, {.transpose_a = true}), feeds), {26, 30, 38, 44});
  expect_floats(run1(g, matmul(a, b, {.transpose_b = true}), feeds), {17, 23, 39, 53});
  Tensor batch = g.input("batch", {2, 1, 2});
  feeds["batch"] = f({2, 1, 2}, {1, 0, 0, 1});
  expect_floats(run1(g, matmul(batch, b), feeds), {5, 6, 7, 8});
}

TEST(Forward, BroadcastingArithmetic) {
  Graph g;
  Tensor a = g.input("a", {2, 3}), row = g.input("row", {3}), column = g.input("column", {2, 1});
  Feeds feeds{{"a", f({2, 3}, {1, 2, 3, 4, 5, 6})}, {"row", f({3}, {10, 20, 30})}, {"column", f({2, 1}, {2, 4})}};
  expect_floats(run1(g, a + row, feeds), {11, 22, 33, 14, 25, 36});
  expect_floats(run1(g, a - column, feeds), {-1, 0, 1, 0, 1, 2});
  expect_floats(run1(g, a * column, feeds), {2, 4, 6, 16, 20, 24});
  expect_floats(run1(g, a / column, feeds), {0.5f, 1, 1.5f, 1, 1.25f, 1.5f});
  expect_floats(run1(g, bias_add(a, row), feeds), {11, 22, 33, 14, 25, 36});
  expect_floats(run1(g, a * 2.0, feeds), {2, 4, 6, 8, 10, 12});
}

TEST(Forward, Activations) {
  Graph g;
  Tensor x = g.input("x", {3});
  Feeds feeds{{"x", f({3}, {-1, 0, 1})}};
  expect_floats(run1(g, relu(x), feeds), {0, 0, 1});
  expect_floats(run1(g, gelu(x), feeds), {-0.158655254f, 0, 0.841344746f});
  expect_floats(run1(g, tanh(x), feeds), {-0.761594156f, 0, 0.761594156f});
  expect_floats(run1(g, sigmoid(x), feeds), {0.268941421f, 0.5f, 0.731058579f});
}

TEST(Forward, SoftmaxAndCrossEntropy) {
  Graph g;
  Tensor x = g.input("x", {2, 3});
  Tensor labels = g.input("labels", {2}, i64);
  Feeds feeds{{"x", f({2, 3}, {1, 2, 3, 1, 1, 1})}, {"labels", HostTensor::of<int64_t>({2}, {2, 0})}};
  expect_floats(run1(g, softmax(x), feeds), {0.090030573f, 0.244728471f, 0.665240956f, 1 / 3.f, 1 / 3.f, 1 / 3.f});
  expect_floats(run1(g, log_softmax(x), feeds),
                {-2.407605964f, -1.407605964f, -0.407605964f, -1.098612289f, -1.098612289f, -1.098612289f});
  expect_floats(run1(g, cross_entropy(x, labels, Reduction::none), feeds), {0.407605964f, 1.098612289f});
  expect_floats(run1(g, cross_entropy(x, labels), feeds), {(0.407605964f + 1.098612289f) / 2});
  expect_floats(run1(g, cross_entropy(x, labels, Reduction::sum), feeds), {0.407605964f + 1.098612289f});
}

TEST(Forward, Reductions) {
  Graph g;
  Tensor x = g.input("x", {2, 3});
  Feeds feeds{{"x", f({2, 3}, {1, 2, 3, 4, 5, 6})}};
  expect_floats(run1(g, sum(x), feeds), {21});
  expect_floats(run1(g, sum(x, {0}), feeds), {5, 7, 9});
  expect_floats(run1(g, sum(x, {1}, true), feeds), {6, 15});
  expect_floats(run1(g, mean(x, {-1}), feeds), {2, 5});
  expect_floats(run1(g, mean(x), feeds), {3.5f});
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(sum(x).shape(), Shape{});
}

// 3 * 2^21 threes add up to 3 * 2^22 + 3 * 2^21, past 2^24: a float running total would stop
// growing by 3 there (its spacing becomes 2, then 4) and end well short.
TEST(Forward, LongSumsStayExact) {
  Graph g;
  const int64_t n = 3 << 21;
  Tensor x = g.input("x", {n});
  Feeds feeds{{"x", HostTensor::of(Shape{n}, std::vector<float>(n, 3.0f))}};
  expect_floats(run1(g, sum(x), feeds), {static_cast<float>(3 * n)});
  expect_floats(run1(g, mean(x), feeds), {3.0f});
}

TEST(Forward, ShapeOps) {
  Graph g;
  Tensor x = g.input("x", {2, 3});
  Feeds feeds{{"x", f({2, 3}, {1, 2, 3, 4, 5, 6})}};
  Tensor r = reshape(x, {3, -1});
  EXPECT_EQ(r.shape(), (Shape{3, 2}));
  expect_floats(run1(g, r, feeds), {1, 2, 3, 4, 5, 6});
  expect_floats(run1(g, transpose(x, {1, 0}), feeds), {1, 4, 2, 5, 3, 6});
  expect_floats(run1(g, concat({x, x}, 0), feeds), {1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6});
  expect_floats(run1(g, concat({x, x}, 1), feeds), {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6});
  expect_floats(run1(g, slice(x, {0, 1}, {2, 3}), feeds), {2, 3, 5, 6});
  expect_floats(run1(g, broadcast_to(slice(x, {0, 0}, {1, 3}), {2, 3}), feeds), {1, 2, 3, 1, 2, 3});
  expect_floats(run1(g, sum_to(x, {3}), feeds), {5, 7, 9});
}

// Every permutation of a rank-4 tensor, in f32 and in i64 (runs of 4 and 8 bytes), against the
// element each output position must hold.
TEST(Forward, TransposeOfEveryPermutation) {
  const std::vector<int64_t> dims = {2, 3, 4, 5};
  std::vector<float> values(120);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  std::vector<int64_t> permutation = {0, 1, 2, 3};
  do {
    for (DType dtype : {f32, i64}) {
      Graph g;
      Tensor x = g.input("x", Shape(dims), dtype);
      HostTensor fed = HostTensor::of<float>(Shape(dims), values);
      if (dtype == i64) {
        fed = HostTensor(Shape(dims), i64);
        for (int64_t i = 0; i < 120; ++i) fed.set(i, static_cast<double>(i));
      }
      Interpreter interpreter(g);
      const std::vector<float> y = interpreter.evaluate({{"x", fed}}, {transpose(x, permutation)})[0].to_floats();
      ASSERT_EQ(y.size(), 120u);
      std::vector<int64_t> out_dims(4);
      for (int i = 0; i < 4; ++i) out_dims[i] = dims[permutation[i]];
      for (int64_t o = 0; o < 120; ++o) {
        int64_t rest = o, source = 0;
        std::vector<int64_t> index(4);
        for (int i = 3; i >= 0; --i) {
          index[i] = rest % out_dims[i];
          rest /= out_dims[i];
        }
        const std::vector<int64_t> x_strides = Shape(dims).strides();
        for (int i = 0; i < 4; ++i) source += index[i] * x_strides[permutation[i]];
        ASSERT_EQ(y[o], static_cast<float>(source)) << "permutation " << ::testing::PrintToString(permutation)
                                                    << ", output element " << o;
      }
    }
  } while (std::next_permutation(permutation.begin(), permutation.end()));
}

TEST(Forward, ShapeOpsMoveIntegerTensorsToo) {
  Graph g;
  Tensor ids = g.input("ids", {2, 2}, i64);
  Interpreter interpreter(g);
  HostTensor out =
      interpreter.evaluate({{"ids", HostTensor::of<int64_t>({2, 2}, {1, 2, 3, 4})}}, {transpose(ids, {1, 0})})[0];
  EXPECT_EQ(out.dtype(), i64);
  EXPECT_EQ(out.to_floats(), (std::vector<float>{1, 3, 2, 4}));
}

TEST(Forward, LayerNormEmbedding) {
  Graph g;
  Tensor x = g.input("x", {1, 4});
  Tensor gamma = g.param("gamma", {4}, init::ones());
  Tensor beta = g.param("beta", {4}, init::constant(0.5));
  // mean 2.5, variance 1.25: (x - 2.5) / sqrt(1.25 + 1e-5) + 0.5
  const float s = 1.0f / std::sqrt(1.25f + 1e-5f);
  expect_floats(run1(g, layer_norm(x, gamma, beta), {{"x", f({1, 4}, {1, 2, 3, 4})}}),
                {-1.5f * s + 0.5f, -0.5f * s + 0.5f, 0.5f * s + 0.5f, 1.5f * s + 0.5f});
  Tensor table = g.input("table", {3, 2});
  Tensor ids = g.input("ids", {3}, i32);
  expect_floats(run1(g, embedding(table, ids),
                     {{"table", f({3, 2}, {0, 1, 10, 11, 20, 21})}, {"ids", HostTensor::of<int32_t>({3}, {2, 0, 2})}}),
                {20, 21, 0, 1, 20, 21});
}

TEST(Forward, DropoutIsSeededScaledAndOffInEvaluation) {
  Graph g;
  Tensor x = g.input("x", {10000});
  Tensor y = dropout(x, 0.25, 42);
  HostTensor ones(Shape{10000}, f32);
  for (int64_t i = 0; i < 10000; ++i) ones.data<float>()[i] = 1;
  Interpreter interpreter(g);
  const std::vector<float> train = interpreter.evaluate({{"x", ones}}, {y}, true)[0].to_floats();
  const std::vector<float> again = interpreter.evaluate({{"x", ones}}, {y}, true)[0].to_floats();
  EXPECT_EQ(train, again);  // the same seed and step draw the same mask
  int zeros = 0;
  for (float v : train) {
    if (v == 0)
      ++zeros;
    else
      EXPECT_FLOAT_EQ(v, 1 / 0.75f);
  }
  EXPECT_NEAR(zeros / 10000.0, 0.25, 0.02);
  const std::vector<float> eval = interpreter.evaluate({{"x", ones}}, {y})[0].to_floats();
  for (float v : eval) ASSERT_EQ(v, 1.0f);
}

TEST(Forward, ParamsAreSeededAndDeterministic) {
  Graph a, b, c(7);
  Tensor wa = a.param("w", {64}, init::normal(0.02));
  Tensor wb = b.param("w", {64}, init::normal(0.02));
  Tensor wc = c.param("w", {64}, init::normal(0.02));
  const std::vector<float> va = Interpreter(a).evaluate({}, {wa})[0].to_floats();
  EXPECT_EQ(va, Interpreter(b).evaluate({}, {wb})[0].to_floats());
  EXPECT_NE(va, Interpreter(c).evaluate({}, {wc})[0].to_floats());
  double total = 0, squares = 0;
  for (float v : va) total += v, squares += v * v;
  EXPECT_NEAR(total / 64, 0, 0.01);
  EXPECT_NEAR(std::sqrt(squares / 64), 0.02, 0.007);
}

}  // namespace
}  // namespace tessel
