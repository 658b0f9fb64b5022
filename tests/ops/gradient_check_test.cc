// Every differentiable op's gradient rule, checked against central finite differences over
// several shapes, broadcasting included.
#include <cmath>
#include <functional>
#include <memory>
#include <set>

#include "graph/compile.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

using Build = std::function<Tensor(Graph&, const std::vector<Tensor>&)>;

struct GradientCase {
  std::string name;
  std::vector<Shape> shapes;  // the differentiable inputs x0, x1, ...
  Build build;
  Feeds integer_feeds = {};  // inputs the build adds itself (labels, indices)
  float low = -1, high = 1;  // range of the random inputs
  double eps = 5e-3;         // the finite difference's step
};

// Keeps values away from the kinks of relu and the like, where differences are not derivatives.
HostTensor away_from_zero(HostTensor t) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    float& v = t.data<float>()[i];
    if (std::fabs(v) < 0.05f) v += v < 0 ? -0.1f : 0.1f;
  }
  return t;
}

void PrintTo(const GradientCase& c, std::ostream* out) { *out << c.name; }

// Where the losses and gradients are computed: the reference interpreter (each op its own kernel),
// or a compiled evaluation plan, where matmuls fuse their epilogues (oneDNN, graph/fuse.cc).
enum class Runner { interpreter, fused_plan };

void check_gradients(const GradientCase& c, Runner runner = Runner::interpreter) {
  Graph g;
  std::vector<Tensor> xs;
  Feeds feeds = c.integer_feeds;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    const std::string name = "x" + std::to_string(i);
    xs.push_back(g.input(name, c.shapes[i]));
    feeds[name] = away_from_zero(testing::random_tensor(c.shapes[i], 100 + i, c.low, c.high));
  }
  const Tensor y = c.build(g, xs);
  // Weighting the output by random values makes every output gradient different, so that
  // rules that would be right only for a uniform gradient (softmax) are caught.
  const Tensor weights = g.input("weights", y.shape());
  feeds["weights"] = testing::random_tensor(y.shape(), 7);
  const Tensor loss = sum(y * weights);
  const std::vector<Tensor> grads = g.gradients(loss, xs);

  Interpreter interpreter(g);
  std::unique_ptr<Session> session;
  if (runner == Runner::fused_plan) {
    session = std::make_unique<Session>(g, std::vector<Tensor>{loss});
    int fused = 0;
    const proto::Plan plan = compile_plan(g, {.fetches = {loss}, .training = false});
    for (const proto::ActorDef& actor : plan.ranks(0).devices(0).actors()) fused += actor.op() == "fused_matmul";
    EXPECT_GT(fused, 0) << c.name << ": nothing fused";
  }
  const auto evaluate = [&](const std::vector<Tensor>& fetches) {
    return session ? session->evaluate(feeds, fetches) : interpreter.evaluate(feeds, fetches, /*training_mode=*/true);
  };
  const std::vector<HostTensor> analytic = evaluate(grads);
  const double eps = c.eps;
  for (size_t i = 0; i < xs.size(); ++i) {
    ASSERT_EQ(analytic[i].shape(), c.shapes[i]);
    HostTensor& x = feeds["x" + std::to_string(i)];
    const int64_t n = x.numel();
    const int64_t stride = std::max<int64_t>(1, n / 24);  // at most ~24 probes per input
    for (int64_t j = 0; j < n; j += stride) {
      const float original = x.data<float>()[j];
      x.data<float>()[j] = static_cast<float>(original + eps);
      const double plus = evaluate({loss})[0].get(0);
      x.data<float>()[j] = static_cast<float>(original - eps);
      const double minus = evaluate({loss})[0].get(0);
      x.data<float>()[j] = original;
      const double numeric = (plus - minus) / (2 * eps);
      const double exact = analytic[i].get(j);
      EXPECT_NEAR(exact, numeric, 3e-3 + 1e-2 * std::fabs(numeric))
          << c.name << ": d loss / d x" << i << "[" << j << "]";
    }
  }
}

HostTensor labels_of(Shape shape, int64_t classes, DType dtype) {
  HostTensor t(shape, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, static_cast<double>((i * 7 + 3) % classes));
  return t;
}

std::vector<GradientCase> cases() {
  using V = std::vector<Tensor>;
  std::vector<GradientCase> all = {
      {"matmul", {{3, 4}, {4, 5}}, [](Graph&, const V& x) { return matmul(x[0], x[1]); }},
      {"matmul_transpose_a",
       {{4, 3}, {4, 5}},
       [](Graph&, const V& x) { return matmul(x[0], x[1], {.transpose_a = true}); }},
      {"matmul_transpose_b",
       {{3, 4}, {5, 4}},
       [](Graph&, const V& x) { return matmul(x[0], x[1], {.transpose_b = true}); }},
      {"matmul_transpose_both",
       {{4, 3}, {5, 4}},
       [](Graph&, const V& x) { return matmul(x[0], x[1], {.transpose_a = true, .transpose_b = true}); }},
      {"matmul_batched", {{2, 3, 4}, {2, 4, 2}}, [](Graph&, const V& x) { return matmul(x[0], x[1]); }},
      {"matmul_batched_by_matrix", {{2, 3, 4}, {4, 2}}, [](Graph&, const V& x) { return matmul(x[0], x[1]); }},
      {"matmul_rank4_by_matrix", {{2, 2, 3, 4}, {4, 2}}, [](Graph&, const V& x) { return matmul(x[0], x[1]); }},
      {"matmul_batched_by_matrix_transposed_b",
       {{2, 3, 4}, {2, 4}},
       [](Graph&, const V& x) { return matmul(x[0], x[1], {.transpose_b = true}); }},
      {"matmul_matrix_by_batched_transposed",
       {{4, 3}, {2, 4, 2}},
       [](Graph&, const V& x) { return matmul(x[0], x[1], {.transpose_a = true}); }},
      {"add", {{3, 4}, {3, 4}}, [](Graph&, const V& x) { return x[0] + x[1]; }},
      {"add_broadcast_row", {{3, 4}, {4}}, [](Graph&, const V& x) { return x[0] + x[1]; }},
      {"sub_broadcast_both", {{2, 1, 4}, {3, 1}}, [](Graph&, const V& x) { return x[0] - x[1]; }},
      {"mul_broadcast_column", {{3, 4}, {3, 1}}, [](Graph&, const V& x) { return x[0] * x[1]; }},
      {"mul_scalar_tensor", {{}, {2, 3}}, [](Graph&, const V& x) { return x[0] * x[1]; }},
      {"div", {{3, 4}, {3, 4}}, [](Graph&, const V& x) { return x[0] / x[1]; }, {}, 0.5f, 1.5f},
      {"div_broadcast", {{2, 3}, {3}}, [](Graph&, const V& x) { return x[0] / x[1]; }, {}, 0.5f, 1.5f},
      {"scale", {{5}}, [](Graph&, const V& x) { return scale(x[0], -2.5); }},
      {"bias_add", {{3, 4}, {4}}, [](Graph&, const V& x) { return bias_add(x[0], x[1]); }},
      {"bias_add_3d", {{2, 2, 3}, {3}}, [](Graph&, const V& x) { return bias_add(x[0], x[1]); }},
      {"relu", {{3, 5}}, [](Graph&, const V& x) { return relu(x[0]); }},
      {"gelu", {{3, 5}}, [](Graph&, const V& x) { return gelu(x[0]); }, {}, -3.0f, 3.0f},
      {"tanh", {{3, 5}}, [](Graph&, const V& x) { return tanh(x[0]); }, {}, -2.0f, 2.0f},
      {"sigmoid", {{3, 5}}, [](Graph&, const V& x) { return sigmoid(x[0]); }, {}, -3.0f, 3.0f},
      {"softmax_last_axis", {{3, 5}}, [](Graph&, const V& x) { return softmax(x[0]); }, {}, -2.0f, 2.0f},
      {"softmax_axis_0", {{4, 3}}, [](Graph&, const V& x) { return softmax(x[0], 0); }, {}, -2.0f, 2.0f},
      {"softmax_middle_axis", {{2, 3, 2}}, [](Graph&, const V& x) { return softmax(x[0], 1); }},
      {"log_softmax", {{3, 5}}, [](Graph&, const V& x) { return log_softmax(x[0]); }, {}, -2.0f, 2.0f},
      {"log_softmax_axis_0", {{4, 3}}, [](Graph&, const V& x) { return log_softmax(x[0], 0); }},
      {"cross_entropy_mean_i64",
       {{6, 4}},
       [](Graph& g, const V& x) { return cross_entropy(x[0], g.input("labels", {6}, i64)); },
       {{"labels", labels_of({6}, 4, i64)}},
       -2.0f,
       2.0f},
      {"cross_entropy_sum_i32",
       {{5, 3}},
       [](Graph& g, const V& x) { return cross_entropy(x[0], g.input("labels", {5}, i32), Reduction::sum); },
       {{"labels", labels_of({5}, 3, i32)}}},
      {"cross_entropy_none_3d",
       {{2, 3, 4}},
       [](Graph& g, const V& x) {
         return cross_entropy(x[0], g.input("labels", {2, 3}, i64), Reduction::none);
       },
       {{"labels", labels_of({2, 3}, 4, i64)}}},
      {"sum_all", {{3, 4}}, [](Graph&, const V& x) { return sum(x[0]); }},
      {"sum_axis", {{2, 3, 4}}, [](Graph&, const V& x) { return sum(x[0], {1}); }},
      {"sum_axes_keepdims",
       {{2, 3, 4}},
       [](Graph&, const V& x) {
         return sum(x[0], {0, -1}, true);
       }},
      {"mean_all", {{3, 4}}, [](Graph&, const V& x) { return mean(x[0]); }},
      {"mean_axis", {{3, 4}}, [](Graph&, const V& x) { return mean(x[0], {0}); }},
      {"reshape",
       {{2, 6}},
       [](Graph&, const V& x) {
         return reshape(x[0], {3, -1});
       }},
      {"transpose_2d",
       {{3, 4}},
       [](Graph&, const V& x) {
         return transpose(x[0], {1, 0});
       }},
      {"transpose_3d",
       {{2, 3, 4}},
       [](Graph&, const V& x) {
         return transpose(x[0], {2, 0, 1});
       }},
      {"concat_axis_0",
       {{2, 3}, {1, 3}},
       [](Graph&, const V& x) {
         return concat({x[0], x[1]}, 0);
       }},
      {"concat_axis_1_three",
       {{2, 1}, {2, 3}, {2, 2}},
       [](Graph&, const V& x) {
         return concat({x[0], x[1], x[2]}, 1);
       }},
      {"slice",
       {{4, 5}},
       [](Graph&, const V& x) {
         return slice(x[0], {1, 0}, {3, 4});
       }},
      {"slice_3d",
       {{3, 4, 2}},
       [](Graph&, const V& x) {
         return slice(x[0], {0, 1, 1}, {2, 4, 2});
       }},
      {"layer_norm", {{3, 6}, {6}, {6}}, [](Graph&, const V& x) { return layer_norm(x[0], x[1], x[2]); }},
      {"layer_norm_3d", {{2, 2, 4}, {4}, {4}}, [](Graph&, const V& x) { return layer_norm(x[0], x[1], x[2]); }},
      // Rows past one block of 32 and a width past one vector of 16 lanes (layer_norm_grad_row).
      {"layer_norm_wide", {{70, 37}, {37}, {37}}, [](Graph&, const V& x) { return layer_norm(x[0], x[1], x[2]); }},
      {"embedding_i64",
       {{5, 3}},
       [](Graph& g, const V& x) { return embedding(x[0], g.input("ids", {4}, i64)); },
       {{"ids", HostTensor::of<int64_t>({4}, {4, 0, 4, 2})}}},
      {"embedding_i32_2d",
       {{4, 2}},
       [](Graph& g, const V& x) {
         return embedding(x[0], g.input("ids", {2, 3}, i32));
       },
       {{"ids", HostTensor::of<int32_t>({2, 3}, {1, 1, 3, 0, 2, 1})}}},
      {"dropout", {{4, 6}}, [](Graph&, const V& x) { return dropout(x[0], 0.3, 11); }},
      {"to", {{4, 6}}, [](Graph&, const V& x) { return to(x[0], Placement::cpu(2), {S(0)}); }},
      {"broadcast_to", {{3, 1}}, [](Graph&, const V& x) { return broadcast_to(x[0], {2, 3, 4}); }},
      {"sum_to", {{2, 3, 4}}, [](Graph&, const V& x) { return sum_to(x[0], {3, 1}); }},
      {"exp", {{3, 4}}, [](Graph&, const V& x) { return exp(x[0]); }},
      {"log", {{3, 4}}, [](Graph&, const V& x) { return log(x[0]); }, {}, 0.5f, 2.0f},
      {"sqrt", {{3, 4}}, [](Graph&, const V& x) { return sqrt(x[0]); }, {}, 0.5f, 2.0f},
      {"rsqrt", {{3, 4}}, [](Graph&, const V& x) { return rsqrt(x[0]); }, {}, 0.5f, 2.0f},
      {"abs", {{3, 4}}, [](Graph&, const V& x) { return abs(x[0]); }},
      {"pow_cube", {{3, 4}}, [](Graph&, const V& x) { return pow(x[0], 3); }},
      {"pow_root", {{3, 4}}, [](Graph&, const V& x) { return pow(x[0], 0.5); }, {}, 0.5f, 2.0f},
      {"clamp", {{4, 6}}, [](Graph&, const V& x) { return clamp(x[0], -0.5, 0.4); }},
      {"where_broadcast",
       {{3, 4}, {4}},
       [](Graph& g, const V& x) { return where(greater(x[0], fill(g, {}, 0.0)), x[0] * x[0], x[1]); }},
      {"cast_through_f16",
       {{3, 4}},
       [](Graph&, const V& x) { return cast(cast(x[0], f16), f32); },
       {},
       -1.0f,
       1.0f,
       0.25},  // linear: a wide step steps over f16's rounding
      {"stop_gradient",
       {{3, 4}},
       [](Graph& g, const V& x) { return x[0] * stop_gradient(g.input("c", {3, 4})); },
       {{"c", testing::random_tensor({3, 4}, 5)}}},
      {"max_axis", {{3, 5}}, [](Graph&, const V& x) { return max(x[0], {1}); }},
      {"max_all", {{3, 5}}, [](Graph&, const V& x) { return max(x[0]); }},
      {"min_axes_keepdims", {{2, 3, 4}}, [](Graph&, const V& x) { return min(x[0], {0, 2}, true); }},
      {"triu", {{2, 4, 5}}, [](Graph&, const V& x) { return triu(x[0], 1); }},
      {"tril", {{4, 5}}, [](Graph&, const V& x) { return tril(x[0], -1); }},
      {"causal_attention_scores",
       {{2, 4, 4}},
       [](Graph& g, const V& x) {
         const Tensor minus_infinity = fill(g, {}, -1e9);
         return softmax(where(causal_mask(g, 4), x[0], minus_infinity));
       }},
      {"cross_entropy_ignore_index_mean",
       {{6, 4}},
       [](Graph& g, const V& x) {
         return cross_entropy(x[0], g.input("labels", {6}, i64), CrossEntropyOptions{.ignore_index = 2});
       },
       {{"labels", labels_of({6}, 4, i64)}}},
      {"cross_entropy_label_smoothing",
       {{5, 4}},
       [](Graph& g, const V& x) {
         return cross_entropy(x[0], g.input("labels", {5}, i64),
                              CrossEntropyOptions{.reduction = Reduction::none, .label_smoothing = 0.1});
       },
       {{"labels", labels_of({5}, 4, i64)}}},
      {"chain_mlp",
       {{4, 3}, {3, 5}, {5}},
       [](Graph&, const V& x) { return log_softmax(gelu(bias_add(matmul(x[0], x[1]), x[2]))); }},
  };
  return all;
}

class GradientCheck : public ::testing::TestWithParam<GradientCase> {};

TEST_P(GradientCheck, MatchesFiniteDifferences) { check_gradients(GetParam()); }

INSTANTIATE_TEST_SUITE_P(AllOps, GradientCheck, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// Every matmul layout the kernels handle: transposes, batches on both sides, a batch by a matrix.
struct MatmulVariant {
  std::string name;
  Shape a, b;
  MatmulOptions options;
};
const std::vector<MatmulVariant>& matmul_variants() {
  static const std::vector<MatmulVariant> variants = {
      {"plain", {5, 4}, {4, 6}, {}},
      {"transpose_a", {4, 5}, {4, 6}, {.transpose_a = true}},
      {"transpose_b", {5, 4}, {6, 4}, {.transpose_b = true}},
      {"transpose_both", {4, 5}, {6, 4}, {.transpose_a = true, .transpose_b = true}},
      {"batched", {2, 3, 4}, {2, 4, 6}, {}},
      {"batched_by_matrix", {2, 3, 4}, {4, 6}, {}},
      {"rank4_by_matrix", {2, 2, 3, 4}, {4, 6}, {}},
      {"batched_by_matrix_transposed_b", {2, 3, 4}, {6, 4}, {.transpose_b = true}},
      {"matrix_by_batched_transposed", {4, 3}, {2, 4, 6}, {.transpose_a = true}},
  };
  return variants;
}

// Each variant, with a bias and a relu or gelu after it, checked through a compiled plan: the
// forward product is a fused_matmul (oneDNN's f32 primitive, with its bias and activation as
// post-ops), the backward products OpenBLAS's.
std::vector<GradientCase> fused_cases() {
  std::vector<GradientCase> all;
  for (const MatmulVariant& v : matmul_variants()) {
    for (const char* activation : {"relu", "gelu"}) {
      const int64_t n = v.options.transpose_b ? v.b[v.b.rank() - 2] : v.b[v.b.rank() - 1];
      const bool relu_out = std::string(activation) == "relu";
      all.push_back({concat(v.name, "_bias_", activation),
                     {v.a, v.b, Shape{n}},
                     [options = v.options, relu_out](Graph&, const std::vector<Tensor>& x) {
                       const Tensor z = bias_add(matmul(x[0], x[1], options), x[2]);
                       return relu_out ? relu(z) : gelu(z);
                     },
                     {},
                     -1.0f,
                     1.0f,
                     // A smaller step for relu: one of ±eps that crosses its kink is no derivative.
                     relu_out ? 1e-3 : 5e-3});
    }
  }
  return all;
}

class FusedGradientCheck : public ::testing::TestWithParam<GradientCase> {};

TEST_P(FusedGradientCheck, MatchesFiniteDifferences) {
  if (!OpRegistry::global().has_kernel("fused_matmul", DeviceType::cpu, DType::f32)) {
    GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no fused_matmul kernel";
  }
  check_gradients(GetParam(), Runner::fused_plan);
}

INSTANTIATE_TEST_SUITE_P(OneDnn, FusedGradientCheck, ::testing::ValuesIn(fused_cases()),
                         [](const auto& info) { return info.param.name; });

// bf16 matmuls (oneDNN), forward and backward, through a compiled plan: the gradients of
// sum(w * relu(cast(matmul(cast(a), cast(b))) + bias)) against the f32 gradients of the same
// bf16-rounded operands, within bf16's rounding (2^-7 of the largest, for the two roundings
// of the incoming gradient and of the product). Finite differences cannot see through bf16.
TEST(GradientCheckBf16, MatmulVariantsMatchTheF32GradientsWithinBf16Rounding) {
  if (!OpRegistry::global().has_kernel("matmul", DeviceType::cpu, DType::bf16)) {
    GTEST_SKIP() << "built without oneDNN (libdnnl-dev): no bf16 matmul kernel";
  }
  for (const MatmulVariant& v : matmul_variants()) {
    SCOPED_TRACE(v.name);
    Graph g;
    const Tensor a = g.input("a", v.a), b = g.input("b", v.b);
    const Tensor a16 = cast(a, DType::bf16), b16 = cast(b, DType::bf16);
    const Tensor low = cast(matmul(a16, b16, v.options), DType::f32);
    const Tensor exact = matmul(cast(a16, DType::f32), cast(b16, DType::f32), v.options);
    const Tensor weights = g.input("weights", low.shape());
    const std::vector<Tensor> low_grads = g.gradients(sum(relu(low) * weights), {a, b});
    const std::vector<Tensor> exact_grads = g.gradients(sum(relu(exact) * weights), {a, b});
    const Feeds feeds{{"a", testing::random_tensor(v.a, 1)},
                      {"b", testing::random_tensor(v.b, 2)},
                      {"weights", testing::random_tensor(low.shape(), 3)}};
    Session session(g, {low});
    const std::vector<HostTensor> out =
        session.evaluate(feeds, {low_grads[0], low_grads[1], exact_grads[0], exact_grads[1]});
    for (int i = 0; i < 2; ++i) {
      const std::vector<float> got = out[i].to_floats(), want = out[i + 2].to_floats();
      float largest = 0, worst = 0;
      for (float w : want) largest = std::max(largest, std::fabs(w));
      for (size_t j = 0; j < got.size(); ++j) worst = std::max(worst, std::fabs(got[j] - want[j]));
      EXPECT_GT(largest, 0.1f) << "input " << i;
      EXPECT_LE(worst, largest / 128) << "input " << i;
    }
  }
}

TEST(GradientCheckCoverage, EveryDifferentiableOpHasACase) {
  std::set<std::string> covered;
  for (const GradientCase& c : cases()) {
    Graph g;
    std::vector<Tensor> xs;
    for (size_t i = 0; i < c.shapes.size(); ++i) xs.push_back(g.input("x" + std::to_string(i), c.shapes[i]));
    c.build(g, xs);
    for (const Node& node : g.nodes()) covered.insert(node.op);
  }
  for (const std::string& op : OpRegistry::global().op_names()) {
    if (!OpRegistry::global().op(op).gradient) continue;
    EXPECT_TRUE(covered.count(op)) << "no gradient check covers " << op;
  }
}

}  // namespace
}  // namespace tessel
