// Forward values of the math, comparison, mask, cast, extremum and creation ops against values
// computed by hand, and the layouts inference gives them over several devices.
#include <cmath>
#include <functional>
#include <limits>

#include "graph/graph.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "sbp/inference.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

HostTensor evaluate(Graph& g, const Tensor& y, const Feeds& feeds = {}) {
  Interpreter interpreter(g);
  return interpreter.evaluate(feeds, {y})[0];
}

std::vector<double> values(const HostTensor& t) {
  std::vector<double> result;
  for (int64_t i = 0; i < t.numel(); ++i) result.push_back(t.get(i));
  return result;
}

void expect_values(const HostTensor& actual, const std::vector<double>& expected, double tolerance = 1e-6) {
  ASSERT_EQ(actual.numel(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::isnan(expected[i]) || std::isinf(expected[i])) {
      EXPECT_EQ(std::isnan(actual.get(i)), std::isnan(expected[i])) << "element " << i;
      if (std::isinf(expected[i])) EXPECT_EQ(actual.get(i), expected[i]) << "element " << i;
    } else {
      EXPECT_NEAR(actual.get(i), expected[i], tolerance * std::max(1.0, std::fabs(expected[i]))) << "element " << i;
    }
  }
}

HostTensor f(Shape shape, std::vector<float> v) { return HostTensor::of<float>(std::move(shape), v); }

TEST(MathOps, UnaryMath) {
  Graph g;
  Tensor x = g.input("x", {3});
  const Feeds feeds{{"x", f({3}, {0.25f, 1, 4})}};
  expect_values(evaluate(g, exp(x), feeds), {std::exp(0.25), std::exp(1.0), std::exp(4.0)});
  expect_values(evaluate(g, log(x), feeds), {std::log(0.25), 0, std::log(4.0)});
  expect_values(evaluate(g, sqrt(x), feeds), {0.5, 1, 2});
  expect_values(evaluate(g, rsqrt(x), feeds), {2, 1, 0.5});
  expect_values(evaluate(g, pow(x, 1.5), feeds), {0.125, 1, 8});
  expect_values(evaluate(g, abs(x - fill(g, {}, 2.0)), feeds), {1.75, 1, 2});
  expect_values(evaluate(g, clamp(x, 0.5, 2), feeds), {0.5, 1, 2});
  expect_values(evaluate(g, clamp(x, -std::numeric_limits<double>::infinity(), 2), feeds), {0.25, 1, 2});
  EXPECT_THROW(clamp(x, 2, 1), Error);
  EXPECT_THROW(pow(x, std::nan("")), Error);
  Tensor labels = g.input("labels", {3}, i64);
  EXPECT_THROW(exp(labels), Error);
}

TEST(MathOps, ComparisonsGiveBoolsAndWhereSelects) {
  Graph g;
  Tensor a = g.input("a", {2, 3}), b = g.input("b", {3});
  const Feeds feeds{{"a", f({2, 3}, {1, 2, 3, 4, 5, 6})}, {"b", f({3}, {2, 2, 7})}};
  const HostTensor lt = evaluate(g, less(a, b), feeds);
  EXPECT_EQ(lt.dtype(), DType::boolean);
  expect_values(lt, {1, 0, 1, 0, 0, 1});
  expect_values(evaluate(g, less_equal(a, b), feeds), {1, 1, 1, 0, 0, 1});
  expect_values(evaluate(g, greater(a, b), feeds), {0, 0, 0, 1, 1, 0});
  expect_values(evaluate(g, greater_equal(a, b), feeds), {0, 1, 0, 1, 1, 0});
  expect_values(evaluate(g, equal(a, b), feeds), {0, 1, 0, 0, 0, 0});
  expect_values(evaluate(g, not_equal(a, b), feeds), {1, 0, 1, 1, 1, 1});
  expect_values(evaluate(g, where(less(a, b), a, b * 10.0), feeds), {1, 20, 3, 20, 20, 6});
  Tensor ids = g.input("ids", {3}, i64);
  const Feeds id_feeds{{"ids", HostTensor::of<int64_t>({3}, {5, -1, 5})}};
  expect_values(evaluate(g, equal(ids, fill(g, {}, 5, i64)), id_feeds), {1, 0, 1});
  expect_values(evaluate(g, where(equal(ids, fill(g, {}, 5, i64)), ids, fill(g, {}, 0, i64)), id_feeds), {5, 0, 5});
  EXPECT_THROW(where(a, a, a), Error);           // the condition must be bool
  EXPECT_THROW(less(a, ids), Error);             // dtypes differ
  EXPECT_THROW(where(less(a, b), a, ids), Error);  // dtypes differ
}

TEST(MathOps, CastBetweenEveryDtype) {
  Graph g;
  Tensor x = g.input("x", {5});
  const Feeds feeds{{"x", f({5}, {-2.7f, 0, 1.5f, 3e10f, std::nanf("")})}};
  expect_values(evaluate(g, cast(x, i32), feeds), {-2, 0, 1, std::numeric_limits<int32_t>::max(), 0});
  expect_values(evaluate(g, cast(x, boolean), feeds), {1, 0, 1, 1, 1});
  expect_values(evaluate(g, cast(cast(x, bf16), f32), feeds), {-2.703125, 0, 1.5, 224.0 * (1 << 27), std::nan("")});
  expect_values(evaluate(g, cast(cast(x, f16), f32), feeds), {-2.69921875, 0, 1.5, INFINITY, std::nan("")}, 1e-6);
  Tensor big = g.input("big", {2}, i64);
  const Feeds big_feeds{{"big", HostTensor::of<int64_t>({2}, {(int64_t{1} << 53) + 1, -7})}};
  // Integers to integers are exact, with no detour through float.
  const HostTensor same = evaluate(g, cast(cast(big, i64), i64), big_feeds);
  EXPECT_EQ(same.data<int64_t>()[0], (int64_t{1} << 53) + 1);
  expect_values(evaluate(g, cast(big, i32), big_feeds), {1, -7});  // wraps as a C++ cast of the low bits
  expect_values(evaluate(g, cast(cast(big, boolean), f32), big_feeds), {1, 1});
  EXPECT_EQ(cast(x, f32), x);  // the identity adds no node
}

TEST(MathOps, MaxMinArgmax) {
  Graph g;
  Tensor x = g.input("x", {2, 3});
  const Feeds feeds{{"x", f({2, 3}, {1, 9, 3, 7, 2, 7})}};
  expect_values(evaluate(g, max(x, {1}), feeds), {9, 7});
  expect_values(evaluate(g, max(x, {0}, true), feeds), {7, 9, 7});
  expect_values(evaluate(g, min(x), feeds), {1});
  expect_values(evaluate(g, argmax(x), feeds), {1, 0});  // ties: the first index
  expect_values(evaluate(g, argmax(x, 0), feeds), {1, 0, 1});
  // A tie shares the gradient, as torch.amax does.
  const std::vector<Tensor> grads = g.gradients(max(x, {1}), {x});
  expect_values(evaluate(g, grads[0], feeds), {0, 1, 0, 0.5, 0, 0.5});
  const Feeds nan_feeds{{"x", f({2, 3}, {1, std::nanf(""), 3, 4, 5, 6})}};
  expect_values(evaluate(g, max(x, {1}), nan_feeds), {std::nan(""), 6});
  Tensor ids = g.input("ids", {4}, i64);
  expect_values(evaluate(g, max(ids), {{"ids", HostTensor::of<int64_t>({4}, {3, -9, 12, 4})}}), {12});
}

TEST(MathOps, ArangeTriangleCausalMaskAndConstant) {
  Graph g;
  expect_values(evaluate(g, arange(g, 2, 11, 3)), {2, 5, 8});
  expect_values(evaluate(g, arange(g, 5, 0, -2, f32)), {5, 3, 1});
  EXPECT_THROW(arange(g, 0, 5, 0), Error);
  EXPECT_THROW(arange(g, 0, 5, -1), Error);
  Tensor x = g.input("x", {3, 3});
  const Feeds feeds{{"x", f({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9})}};
  expect_values(evaluate(g, triu(x), feeds), {1, 2, 3, 0, 5, 6, 0, 0, 9});
  expect_values(evaluate(g, triu(x, 1), feeds), {0, 2, 3, 0, 0, 6, 0, 0, 0});
  expect_values(evaluate(g, tril(x, -1), feeds), {0, 0, 0, 4, 0, 0, 7, 8, 0});
  const HostTensor mask = evaluate(g, causal_mask(g, 3));
  EXPECT_EQ(mask.dtype(), DType::boolean);
  expect_values(mask, {1, 0, 0, 1, 1, 0, 1, 1, 1});
  const HostTensor table = HostTensor::of<float>({2, 2}, {0.1f, -3e-39f, INFINITY, 7});
  const HostTensor stored = evaluate(g, constant(g, table));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(stored.data<float>()[i], table.data<float>()[i]) << i;  // bit for bit
  expect_values(evaluate(g, constant(g, HostTensor::of<int64_t>({2}, {INT64_MAX, -1}))), {9.223372036854775807e18, -1});
  expect_values(evaluate(g, constant(g, HostTensor::of<bool>({3}, {true, false, true}))), {1, 0, 1});
}

TEST(MathOps, CrossEntropyIgnoreIndexAndLabelSmoothing) {
  Graph g;
  Tensor logits = g.input("logits", {3, 2});
  Tensor labels = g.input("labels", {3}, i64);
  const Feeds feeds{{"logits", f({3, 2}, {0, 1, 2, 0, 1, 1})}, {"labels", HostTensor::of<int64_t>({3}, {1, -100, 0})}};
  const double a = std::log(1 + std::exp(-1.0));  // -log softmax of the larger of (0, 1)
  const double half = std::log(2.0);
  expect_values(evaluate(g, cross_entropy(logits, labels, CrossEntropyOptions{.ignore_index = -100}), feeds),
                {(a + half) / 2});
  expect_values(evaluate(g,
                         cross_entropy(logits, labels,
                                       CrossEntropyOptions{.reduction = Reduction::none, .ignore_index = -100}),
                         feeds),
                {a, 0, half});
  // Label smoothing 0.2 over 2 classes: the target is 0.9 on the label and 0.1 on the other.
  const double other = 1 + a;  // -log softmax of the smaller
  expect_values(evaluate(g,
                         cross_entropy(logits, labels,
                                       CrossEntropyOptions{.reduction = Reduction::sum,
                                                           .ignore_index = -100,
                                                           .label_smoothing = 0.2}),
                         feeds),
                {0.9 * a + 0.1 * other + half});
  // Every label ignored: a mean of nothing is 0.
  const Feeds none{{"logits", f({3, 2}, {0, 1, 2, 0, 1, 1})}, {"labels", HostTensor::of<int64_t>({3}, {-1, -1, -1})}};
  expect_values(evaluate(g, cross_entropy(logits, labels, CrossEntropyOptions{.ignore_index = -1}), none), {0});
  EXPECT_THROW(cross_entropy(logits, labels, CrossEntropyOptions{.label_smoothing = 1.5}), Error);
}

TEST(MathOps, NoGradientFlowsThroughStopGradient) {
  Graph g;
  Tensor x = g.input("x", {3});
  const Feeds feeds{{"x", f({3}, {1, 2, 3})}};
  // d/dx sum(x * stop_gradient(x)) is stop_gradient(x) = x, not 2x.
  const std::vector<Tensor> grads = g.gradients(sum(x * stop_gradient(x)), {x});
  expect_values(evaluate(g, grads[0], feeds), {1, 2, 3});
  EXPECT_THROW(g.gradients(sum(stop_gradient(x)), {x}), Error);  // no path at all
}

// Layouts: a reshape that merges leading axes keeps the split where the shards stay blocks,
// and integer tensors are never partial.
TEST(MathOps, ReshapeOfSplitLabelsStaysSplitAndCompiles) {
  for (int devices : {2, 4}) {
    Graph g;
    Tensor logits = g.input("logits", {8, 8, 5});
    Tensor labels = g.input("labels", {8, 8}, i64);
    const Placement mesh = Placement::cpu(devices);
    pin(labels, mesh, {S(0)});
    pin(logits, mesh, {S(0)});
    Tensor flat = reshape(labels, {64});
    Tensor rows = reshape(logits, {64, 5});
    Tensor loss = cross_entropy(rows, flat);
    const SbpAssignment layouts = infer_sbp(g, mesh);
    EXPECT_EQ(layouts.nodes[flat.node()].outputs[0], NdSbp({S(0)})) << devices << " devices";
    // The float activations too: merged leading axes stay S(0), with no partial sum to reduce.
    EXPECT_EQ(layouts.nodes[rows.node()].inputs[0], NdSbp({S(0)})) << devices << " devices";
    EXPECT_EQ(layouts.nodes[rows.node()].outputs[0], NdSbp({S(0)})) << devices << " devices";
    int losses = 0;
    for (int id = 0; id < g.num_nodes(); ++id) {
      if (g.node(id).op != "cross_entropy") continue;
      ++losses;
      EXPECT_EQ(layouts.nodes[id].inputs, (std::vector<NdSbp>{NdSbp({S(0)}), NdSbp({S(0)})})) << devices;
    }
    EXPECT_EQ(losses, 1);
    Feeds feeds{{"logits", testing::random_tensor({8, 8, 5}, 3)}, {"labels", HostTensor(Shape{8, 8}, i64)}};
    for (int64_t i = 0; i < 64; ++i) feeds["labels"].set(i, (i * 3) % 5);
    Session session(g, {.fetches = {loss}, .placement = mesh});
    Interpreter reference(g);
    EXPECT_NEAR(session.step(feeds)[0].get(0), reference.evaluate(feeds, {loss})[0].get(0), 1e-5);
  }
}

TEST(MathOps, ReshapeRefusesASplitWhoseShardsWouldNotBeBlocks) {
  // [3, 2] -> [6] over 2 devices: rows [0, 2) and [2, 3) are elements [0, 4) and [4, 6), but
  // S(0) of [6] holds [0, 3) and [3, 6). The reshape must not stay split.
  Graph g;
  Tensor x = g.input("x", {3, 2});
  const Placement mesh = Placement::cpu(2);
  pin(x, mesh, {S(0)});
  Tensor flat = reshape(x, {6});
  Tensor y = flat * 2.0;
  const SbpAssignment layouts = infer_sbp(g, mesh);
  EXPECT_NE(layouts.nodes[flat.node()].inputs[0], NdSbp({S(0)}));
  Session session(g, {.fetches = {y}, .placement = mesh});
  const Feeds feeds{{"x", f({3, 2}, {1, 2, 3, 4, 5, 6})}};
  expect_values(session.step(feeds)[0], {2, 4, 6, 8, 10, 12});
}

TEST(MathOps, IntegerTensorsAreNeverPartial) {
  Graph g;
  Tensor ids = g.input("ids", {6, 4}, i64);
  const Placement mesh = Placement::cpu(2);
  pin(ids, mesh, {S(1)});
  sum(cast(ids, f32));
  Tensor flat = reshape(ids, {24});
  const SbpAssignment layouts = infer_sbp(g, mesh);
  int integers = 0;
  for (int id = 0; id < g.num_nodes(); ++id) {
    for (size_t o = 0; o < g.node(id).outputs.size(); ++o) {
      if (is_floating(g.node(id).outputs[o].dtype)) continue;
      ++integers;
      EXPECT_FALSE(layouts.nodes[id].outputs[o].has_partial()) << g.node(id).name;
    }
  }
  EXPECT_GE(integers, 2);
  EXPECT_NE(layouts.nodes[flat.node()].inputs[0], NdSbp({S(1)})) << "S(1) of [6, 4] is no block of [24]";
}

// The bf16 and f16 kernels of the element-wise, norm, softmax, loss, reduction and embedding ops
// (ops/kernels/cpu/widened.h) compute in f32 and round their results once: op(x in half) gives,
// bit for bit, the half rounding of the f32 op on the same (rounded) values. Integer inputs
// (labels, ids) pass through.
TEST(MathOps, HalfPrecisionKernelsComputeInF32AndRoundOnce) {
  using V = std::vector<Tensor>;
  // ints: [6] i64 in [0, 5), labels for the loss and ids for the embedding.
  using Build = std::function<Tensor(const V&, const Tensor& ints)>;
  struct Case {
    const char* name;
    std::vector<Shape> floats;
    Build build;
  };
  const std::vector<Case> cases{
      {"gelu", {{6, 5}}, [](const V& x, const Tensor&) { return gelu(x[0]); }},
      {"add (broadcast)", {{6, 5}, {5}}, [](const V& x, const Tensor&) { return x[0] + x[1]; }},
      {"scale", {{6, 5}}, [](const V& x, const Tensor&) { return x[0] * 0.3; }},
      {"softmax", {{6, 5}}, [](const V& x, const Tensor&) { return softmax(x[0], -1); }},
      {"layer_norm", {{6, 5}, {5}, {5}}, [](const V& x, const Tensor&) { return layer_norm(x[0], x[1], x[2]); }},
      {"sum", {{6, 5}}, [](const V& x, const Tensor&) { return sum(x[0], {0}); }},
      {"max", {{6, 5}}, [](const V& x, const Tensor&) { return max(x[0], {1}); }},
      {"exp", {{6, 5}}, [](const V& x, const Tensor&) { return exp(x[0]); }},
      {"cross_entropy", {{6, 5}}, [](const V& x, const Tensor& ints) {
         return cross_entropy(x[0], ints, Reduction::none);
       }},
      {"embedding", {{7, 5}}, [](const V& x, const Tensor& ints) { return embedding(x[0], ints); }},
  };
  HostTensor ints(Shape{6}, i64);
  for (int64_t i = 0; i < 6; ++i) ints.set(i, (i * 3) % 5);
  for (DType half : {DType::bf16, DType::f16}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(concat(c.name, " in ", half));
      Graph g;
      std::vector<Tensor> wide, narrow;
      const Tensor labels = g.input("ints", {6}, i64);
      Feeds feeds{{"ints", ints}};
      for (size_t i = 0; i < c.floats.size(); ++i) {
        const std::string name = concat("x", i);
        wide.push_back(g.input(name, c.floats[i]));
        narrow.push_back(cast(wide.back(), half));
        // Values the half type holds exactly, so both sides start from the same numbers.
        const HostTensor values = testing::random_tensor(c.floats[i], 20 + i, -2.0f, 2.0f);
        Graph rounding;
        feeds[name] = evaluate(rounding, cast(cast(rounding.input("v", c.floats[i]), half), DType::f32), {{"v", values}});
      }
      const Tensor exact = c.build(wide, labels);
      const Tensor computed = cast(c.build(narrow, labels), DType::f32);
      const Tensor expected = cast(cast(exact, half), DType::f32);
      Interpreter interpreter(g);
      const std::vector<HostTensor> out = interpreter.evaluate(feeds, {computed, expected, exact});
      ASSERT_EQ(out[0].shape(), out[1].shape());
      int differ_from_f32 = 0;
      const HostTensor& f32 = out[2];
      for (int64_t i = 0; i < out[0].numel(); ++i) {
        EXPECT_EQ(out[0].get(i), out[1].get(i)) << "element " << i;
        differ_from_f32 += out[0].get(i) != f32.get(i);
      }
      if (std::string(c.name) != "max" && std::string(c.name) != "embedding") {
        EXPECT_GT(differ_from_f32, 0) << "no result was rounded: the op ran in f32";
      }
    }
  }
}

// Gradients in half precision reach their kernels too: a broadcast add's gradient (sum_to),
// layer_norm's and gelu's, in bf16 and f16, agree with the f32 gradients within half rounding.
TEST(MathOps, HalfPrecisionGradientsFollowTheF32Ones) {
  for (DType half : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(std::string(name_of(half)));
    Graph g;
    Tensor x = g.input("x", {40, 37});
    Tensor b = g.input("b", {37});
    Tensor gain = g.input("gain", {37});
    const auto loss_of = [&](DType dtype) {
      const auto in = [&](const Tensor& t) { return dtype == DType::f32 ? t : cast(t, dtype); };
      Tensor y = gelu(layer_norm(in(x) + in(b), in(gain), in(b)));
      return sum(cast(y, DType::f32) * cast(in(x), DType::f32));
    };
    const std::vector<Tensor> wide = g.gradients(loss_of(DType::f32), {x, b, gain});
    const std::vector<Tensor> narrow = g.gradients(loss_of(half), {x, b, gain});
    Feeds feeds;
    for (const auto& [name, shape] : std::vector<std::pair<std::string, Shape>>{{"x", {40, 37}}, {"b", {37}}, {"gain", {37}}}) {
      Graph rounding;
      feeds[name] = evaluate(rounding, cast(cast(rounding.input("v", shape), half), DType::f32),
                             {{"v", testing::random_tensor(shape, 31, -1.5f, 1.5f)}});
    }
    Interpreter interpreter(g);
    const std::vector<HostTensor> exact = interpreter.evaluate(feeds, wide);
    const std::vector<HostTensor> rounded = interpreter.evaluate(feeds, narrow);
    for (size_t t = 0; t < exact.size(); ++t) {
      double largest = 0;
      for (int64_t i = 0; i < exact[t].numel(); ++i) largest = std::max(largest, std::abs(exact[t].get(i)));
      ASSERT_GT(largest, 0.1);
      int differ = 0;
      for (int64_t i = 0; i < exact[t].numel(); ++i) {
        EXPECT_NEAR(rounded[t].get(i), exact[t].get(i), largest * (half == DType::bf16 ? 0.05 : 0.01)) << t << " @" << i;
        differ += rounded[t].get(i) != exact[t].get(i);
      }
      EXPECT_GT(differ, 0) << "gradient " << t << " was not computed in " << name_of(half);
    }
  }
}

}  // namespace
}  // namespace tessel
