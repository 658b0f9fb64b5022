#include "graph/serialize.h"

#include "graph/graph.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

void build_model(Graph& g) {
  Tensor x = g.input("x", {4, 3});
  Tensor labels = g.input("labels", {4}, i32);
  Tensor w = g.param("w", {3, 5}, init::xavier_uniform());
  Tensor gamma = g.param("gamma", {5}, init::ones());
  Tensor beta = g.param("beta", {5}, init::zeros());
  Tensor h = layer_norm(gelu(matmul(x, w)), gamma, beta);
  g.minimize(cross_entropy(concat({h, slice(h, {0, 0}, {4, 1})}, 1), labels), SGD{.lr = 0.5});
}

TEST(Serialize, TextAndBinaryRoundTripsTrainIdentically) {
  Graph original(3);
  build_model(original);
  Graph from_text, from_binary;
  graph_from_text(from_text, graph_to_text(original));
  graph_from_binary(from_binary, graph_to_binary(original));
  ASSERT_EQ(from_text.num_nodes(), original.num_nodes());
  EXPECT_EQ(graph_to_text(from_text), graph_to_text(original));
  EXPECT_EQ(graph_to_binary(from_binary), graph_to_binary(original));

  const Feeds feeds{{"x", testing::random_tensor({4, 3}, 5)}, {"labels", HostTensor::of<int32_t>({4}, {0, 5, 2, 1})}};
  Interpreter a(original), b(from_text);
  for (int step = 0; step < 3; ++step) {
    a.train_step(feeds, {});
    b.train_step(feeds, {});
  }
  EXPECT_EQ(a.variable("w").to_floats(), b.variable("w").to_floats());
}

}  // namespace
}  // namespace tessel
