#include <gtest/gtest.h>

#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

TEST(Session, SmokeMatchesInterpreter) {
  Graph g(7);
  Tensor x = g.input("x", {4, 3});
  Tensor y = g.input("y", {4}, DType::i64);
  Tensor w = g.param("w", {3, 5}, init::normal(0.5));
  Tensor loss = cross_entropy(relu(matmul(x, w)), y);
  g.minimize(loss, SGD{.lr = 0.1});
  Session session(g, {loss});
  Interpreter reference(g);
  for (int step = 0; step < 5; ++step) {
    Feeds feeds{{"x", testing::random_tensor({4, 3}, step)}, {"y", HostTensor::of<int64_t>({4}, {0, 1, 2, 3})}};
    auto got = session.step(feeds);
    auto want = reference.train_step(feeds, {loss});
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].get(0), want[0].get(0)) << "step " << step;
  }
}

}  // namespace
}  // namespace tessel
