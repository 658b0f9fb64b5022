// The Session API over the actor runtime: results, feeding, variables, evaluation, errors.
#include "runtime/session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

TEST(Session, TrainsLikeTheInterpreter) {
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

struct Classifier {
  Graph g{3};
  Tensor x = g.input("x", {4, 3});
  Tensor y = g.input("y", {4}, DType::i64);
  Tensor w = g.param("w", {3, 5}, init::normal(0.5));
  Tensor logits = matmul(x, w);
  Tensor loss = cross_entropy(logits, y);
  Classifier() { g.minimize(loss, SGD{.lr = 0.1}); }
  static Feeds feeds(int64_t step, std::vector<int64_t> labels = {0, 1, 2, 3}) {
    return {{"x", testing::random_tensor({4, 3}, step)}, {"y", HostTensor::of<int64_t>({4}, labels)}};
  }
};

TEST(Session, RunsFromAnIteratorOfFeeds) {
  Classifier c;
  Session session(c.g, {c.loss});
  std::vector<Feeds> batches = {Classifier::feeds(0), Classifier::feeds(1), Classifier::feeds(2)};
  const auto outputs = session.run(batches.begin(), batches.end());
  EXPECT_EQ(outputs.size(), 3u);
  EXPECT_EQ(session.steps_done(), 3);
  // A feed function may stop early by returning nullopt.
  const auto two = session.run(10, [](int64_t step) -> std::optional<Feeds> {
    if (step >= 5) return std::nullopt;
    return Classifier::feeds(step);
  });
  EXPECT_EQ(two.size(), 2u);
  EXPECT_EQ(session.steps_done(), 5);
  // Each completed step is reported, in order, with what it fetched.
  std::vector<int64_t> reported;
  std::vector<double> reported_losses;
  const auto more = session.run(
      3, [](int64_t step) -> std::optional<Feeds> { return Classifier::feeds(step); },
      [&](int64_t step, const std::vector<HostTensor>& fetched) {
        reported.push_back(step);
        reported_losses.push_back(fetched.at(0).get(0));
      });
  EXPECT_EQ(reported, (std::vector<int64_t>{5, 6, 7}));
  ASSERT_EQ(more.size(), 3u);
  for (size_t i = 0; i < more.size(); ++i) EXPECT_EQ(reported_losses[i], more[i][0].get(0));
}

TEST(Session, EvaluationUsesCurrentVariablesAndChangesNothing) {
  Classifier c;
  Session session(c.g, {c.loss});
  Interpreter reference(c.g);
  session.step(Classifier::feeds(0));
  reference.train_step(Classifier::feeds(0), {c.loss});
  const HostTensor before = session.variable("w");
  const HostTensor got = session.evaluate(Classifier::feeds(7), {c.logits})[0];
  const HostTensor want = reference.evaluate(Classifier::feeds(7), {c.logits})[0];
  EXPECT_EQ(got.to_floats(), want.to_floats());
  EXPECT_EQ(session.variable("w").to_floats(), before.to_floats());
  EXPECT_EQ(session.steps_done(), 1);
}

TEST(Session, SetVariableIsWhatTheNextStepReads) {
  Classifier c;
  Session session(c.g, {c.logits});
  session.set_variable("w", HostTensor(Shape{3, 5}, DType::f32));  // zeros
  const HostTensor logits = session.step(Classifier::feeds(0))[0];
  for (float v : logits.to_floats()) EXPECT_EQ(v, 0.0f);
  EXPECT_TESSEL_ERROR(session.set_variable("w", HostTensor(Shape{5, 3}, DType::f32)), ErrorCode::kShapeMismatch,
                      "variable 'w' is [3, 5] f32");
  EXPECT_TESSEL_ERROR(session.variable("nope"), ErrorCode::kNotFound, "no variable named 'nope'");
}

TEST(Session, BadFeedsAreErrorsBeforeTheStepStarts) {
  Classifier c;
  Session session(c.g, {c.loss});
  Feeds wrong_shape = Classifier::feeds(0);
  wrong_shape["x"] = testing::random_tensor({4, 4}, 0);
  EXPECT_TESSEL_ERROR(session.step(wrong_shape), ErrorCode::kShapeMismatch, "feed 'x' is [4, 4] f32",
                      "expects [4, 3] f32");
  Feeds unknown = Classifier::feeds(0);
  unknown["z"] = testing::random_tensor({1}, 0);
  EXPECT_TESSEL_ERROR(session.step(unknown), ErrorCode::kNotFound, "feed 'z' names no input", "x, y");
  EXPECT_TESSEL_ERROR(session.step({{"x", testing::random_tensor({4, 3}, 0)}}), ErrorCode::kFailedPrecondition,
                      "input 'y'", "was not fed");
  // None of those started a step; the session still trains.
  EXPECT_EQ(session.steps_done(), 0);
  EXPECT_EQ(session.step(Classifier::feeds(0)).size(), 1u);
  // A bad feed in the middle of a run: the steps fed before it complete, then the error.
  EXPECT_TESSEL_ERROR(
      session.run(
          6, [&](int64_t step) -> std::optional<Feeds> { return step == 3 ? wrong_shape : Classifier::feeds(step); }),
      ErrorCode::kShapeMismatch, "feed 'x'");
  EXPECT_EQ(session.steps_done(), 3);
  EXPECT_EQ(session.run(1, [](int64_t step) -> std::optional<Feeds> { return Classifier::feeds(step); }).size(), 1u);
  EXPECT_EQ(session.steps_done(), 4);
}

TEST(Session, KernelErrorAbortsEveryActorAndNamesTheOp) {
  Classifier c;
  Session session(c.g, {c.loss}, {.worker_threads = 2});
  session.step(Classifier::feeds(0));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TESSEL_ERROR(session.run(5,
                                  [](int64_t step) -> std::optional<Feeds> {
                                    return Classifier::feeds(step, step == 2 ? std::vector<int64_t>{0, 1, 9, 3}
                                                                             : std::vector<int64_t>{0, 1, 2, 3});
                                  }),
                      ErrorCode::kOutOfRange, "cross_entropy", "session_test.cc");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10)) << "an abort, not a timeout";
  EXPECT_TESSEL_ERROR(session.step(Classifier::feeds(0)), ErrorCode::kFailedPrecondition,
                      "aborted by an earlier error");
}

TEST(Session, InterpreterFlagRunsTheReference) {
  Classifier c;
  Session actors(c.g, {c.loss});
  Session reference(c.g, {c.loss}, {.use_interpreter = true});
  for (int step = 0; step < 3; ++step) {
    EXPECT_EQ(actors.step(Classifier::feeds(step))[0].get(0), reference.step(Classifier::feeds(step))[0].get(0));
  }
  EXPECT_EQ(actors.variable("w").to_floats(), reference.variable("w").to_floats());
}

TEST(Session, PlanWithNothingToDoIsAnError) {
  Graph g;
  g.input("x", {2});
  EXPECT_TESSEL_ERROR(Session(g, std::vector<Tensor>{}), ErrorCode::kInvalidArgument,
                      "fetches nothing and updates nothing");
}

// A second call while one runs is refused, whether it comes from the step callback (the same
// thread) or from another thread; it used to deadlock. The session then goes on.
TEST(Session, ASecondCallWhileOneRunsIsRefused) {
  Graph g;
  Tensor x = g.input("x", {2, 3});
  Tensor w = g.param("w", {3, 1}, init::normal(0.1));
  Tensor loss = mean(matmul(x, w));
  g.minimize(loss, SGD{.lr = 0.1});
  Session session(g, {loss});
  const Feeds feeds{{"x", HostTensor(Shape{2, 3}, f32)}};
  std::string from_callback, from_thread;
  session.run(
      2, [&](int64_t) -> std::optional<Feeds> { return feeds; },
      [&](int64_t step, const std::vector<HostTensor>&) {
        if (step != 0) return;
        try {
          session.step(feeds);
        } catch (const Error& error) {
          from_callback = error.what();
        }
        std::thread other([&] {
          try {
            session.evaluate(feeds, {loss});
          } catch (const Error& error) {
            from_thread = error.what();
          }
        });
        other.join();
      });
  EXPECT_THAT(from_callback, ::testing::HasSubstr("Session::run was called while another call of this session ran"));
  EXPECT_THAT(from_thread, ::testing::HasSubstr("Session::evaluate was called while another call"));
  EXPECT_EQ(session.steps_done(), 2);
  EXPECT_EQ(session.step(feeds).size(), 1u);  // free again
}

// A NaN in a feed reaches every gradient, and relu(NaN) = 0 would hide it from the loss: the first
// update that meets it is an Error naming the step, the parameter and its gradient. With
// MinimizeOptions::check_finite off, the NaN goes into the weights unnoticed.
TEST(Session, ANonFiniteGradientIsAnErrorNamingTheStepAndTheParameter) {
  for (const bool check : {true, false}) {
    Graph g(3);
    Tensor x = g.input("x", {4, 3});
    Tensor y = g.input("y", {4}, DType::i64);
    Tensor w = g.param("w", {3, 5}, init::normal(0.5));
    Tensor loss = cross_entropy(matmul(x, w), y);
    g.minimize(loss, AdamW{.lr = 0.01}, {.check_finite = check});
    Session session(g, {loss});
    const auto feeds = [](int64_t step) {
      HostTensor x = testing::random_tensor({4, 3}, step);
      if (step == 2) x.data<float>()[4] = std::numeric_limits<float>::quiet_NaN();
      return Feeds{{"x", x}, {"y", HostTensor::of<int64_t>({4}, {0, 1, 2, 3})}};
    };
    session.run(2, [&](int64_t step) -> std::optional<Feeds> { return feeds(step); });
    if (!check) {
      session.run(1, [&](int64_t step) -> std::optional<Feeds> { return feeds(step); });
      EXPECT_TRUE(std::isnan(session.variable("w").get(0))) << "unchecked, the NaN is in the weights";
      continue;
    }
    EXPECT_TESSEL_ERROR(session.run(1, [&](int64_t step) -> std::optional<Feeds> { return feeds(step); }),
                        ErrorCode::kOutOfRange, "step 2: the gradient of parameter 'w' is nan at element");
  }
}

// A learning rate that makes the training diverge: the first update that steps a parameter past
// the largest float is an Error naming the step, not a NaN trained on for good.
TEST(Session, ATrainingThatDivergesStopsWithAnError) {
  Graph g(5);
  Tensor x = g.input("x", {4, 3});
  Tensor t = g.input("t", {4, 5});
  Tensor w = g.param("w", {3, 5}, init::normal(0.5));
  Tensor e = matmul(x, w) - t;
  Tensor loss = mean(e * e);
  g.minimize(loss, SGD{.lr = 1e6});
  Session session(g, {loss});
  EXPECT_TESSEL_ERROR(session.run(100,
                                  [](int64_t step) -> std::optional<Feeds> {
                                    return Feeds{{"x", testing::random_tensor({4, 3}, step)},
                                                 {"t", testing::random_tensor({4, 5}, step + 100)}};
                                  }),
                      ErrorCode::kOutOfRange, "the update made parameter 'w' ");
  EXPECT_LT(session.steps_done(), 100);
}

// A thread count beyond reason is refused by name before any thread starts (a million workers
// would have been a million threads).
TEST(Session, ThreadCountsBeyondReasonAreRefused) {
  Classifier c;
  EXPECT_TESSEL_ERROR(Session(c.g, {c.loss}, {.worker_threads = 1000000}), ErrorCode::kInvalidArgument,
                      "ExecutorOptions::worker_threads is 1000000, expected 1 to 1024");
  EXPECT_TESSEL_ERROR(Session(c.g, {c.loss}, {.worker_threads = 0}), ErrorCode::kInvalidArgument,
                      "worker_threads is 0");
  EXPECT_TESSEL_ERROR(Session(c.g, {c.loss}, {.steps_in_flight = 0}), ErrorCode::kInvalidArgument,
                      "steps_in_flight is 0");
  EXPECT_TESSEL_ERROR(Session(c.g, {c.loss}, {.placement = Placement::cpu(2), .kernel_threads_per_device = 5000}),
                      ErrorCode::kInvalidArgument, "kernel_threads_per_device is 5000");
}

}  // namespace
}  // namespace tessel
