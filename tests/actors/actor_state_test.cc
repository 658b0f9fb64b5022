// The actor state machine driven message by message.
#include "actors/actor_state.h"

#include <gtest/gtest.h>

namespace tessel {
namespace {

// A source feeding one consumer through one output; the test plays the host.
struct Pipeline {
  ActorState producer;
  ActorState consumer{1, {}};
  std::vector<int64_t> consumed;

  explicit Pipeline(int registers) : producer(0, {{.register_count = registers, .consumer_count = 1}}) {}

  // Runs the producer as often as it may; returns how many times it acted.
  int run_producer() {
    int acted = 0;
    while (producer.can_act()) {
      const ActorState::Activation a = producer.begin();
      for (const ActorState::Ready& r : producer.finish(a).ready) consumer.on_ready(0, r.register_index, r.step);
      ++acted;
    }
    return acted;
  }
  // Runs the consumer once, if it can.
  bool run_consumer_once() {
    if (!consumer.can_act()) return false;
    const ActorState::Activation a = consumer.begin();
    consumed.push_back(a.step);
    for (const ActorState::Ack& ack : consumer.finish(a).acks) producer.on_ack(0, ack.register_index);
    return true;
  }
};

class BackPressure : public ::testing::TestWithParam<int> {};

TEST_P(BackPressure, ProducerIsNeverMoreThanRegisterCountStepsAhead) {
  const int registers = GetParam();
  Pipeline p(registers);
  for (int round = 0; round < 20; ++round) {
    p.run_producer();
    const int64_t ahead = p.producer.steps_done() - p.consumer.steps_done();
    EXPECT_EQ(ahead, registers) << "a fast producer fills every register and then waits";
    EXPECT_FALSE(p.producer.can_act());
    ASSERT_TRUE(p.run_consumer_once());
    EXPECT_TRUE(p.producer.can_act()) << "the ack freed a register";
  }
}

INSTANTIATE_TEST_SUITE_P(RegisterCounts, BackPressure, ::testing::Values(1, 2, 3));

TEST(ActorState, OneRegisterMakesProducerAndConsumerTakeTurns) {
  Pipeline p(1);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(p.run_producer(), 1);
    EXPECT_TRUE(p.run_consumer_once());
    EXPECT_FALSE(p.run_consumer_once());  // nothing more until the producer acts again
  }
}

TEST(ActorState, StepsArriveInOrder) {
  Pipeline p(3);
  for (int round = 0; round < 10; ++round) {
    p.run_producer();
    p.run_consumer_once();
    p.run_consumer_once();
  }
  for (size_t i = 0; i < p.consumed.size(); ++i) EXPECT_EQ(p.consumed[i], static_cast<int64_t>(i));
  EXPECT_GT(p.consumed.size(), 10u);
}

TEST(ActorState, ActsOnlyWhenEveryInputIsReadyAndEveryOutputFree) {
  ActorState join(2, {{.register_count = 1, .consumer_count = 2}});
  EXPECT_FALSE(join.can_act());
  join.on_ready(0, 0, 0);
  EXPECT_FALSE(join.can_act()) << "input 1 has nothing yet";
  join.on_ready(1, 0, 0);
  ASSERT_TRUE(join.can_act());
  ActorState::Activation a = join.begin();
  ActorState::Messages m = join.finish(a);
  EXPECT_EQ(m.acks.size(), 2u);
  ASSERT_EQ(m.ready.size(), 1u);
  EXPECT_EQ(m.ready[0].step, 0);
  join.on_ready(0, 0, 1);
  join.on_ready(1, 0, 1);
  EXPECT_FALSE(join.can_act()) << "the single output register is still read by two consumers";
  join.on_ack(0, m.ready[0].register_index);
  EXPECT_FALSE(join.can_act()) << "one of two consumers acked";
  join.on_ack(0, m.ready[0].register_index);
  EXPECT_TRUE(join.can_act());
}

TEST(ActorState, DrainsQueuedStepsThenForwardsEndOfStream) {
  Pipeline p(2);
  p.run_producer();  // steps 0 and 1 queued at the consumer
  p.producer.on_end_of_stream(-1);
  EXPECT_TRUE(p.producer.take_end_of_stream());
  EXPECT_FALSE(p.producer.take_end_of_stream()) << "only once";
  p.consumer.on_end_of_stream(0);
  EXPECT_EQ(p.consumer.phase(), ActorState::Phase::draining);
  EXPECT_FALSE(p.consumer.take_end_of_stream()) << "two steps are still queued";
  EXPECT_TRUE(p.run_consumer_once());
  EXPECT_TRUE(p.run_consumer_once());
  EXPECT_EQ(p.consumer.phase(), ActorState::Phase::done);
  EXPECT_TRUE(p.consumer.take_end_of_stream());
  EXPECT_EQ(p.consumed, (std::vector<int64_t>{0, 1}));
  EXPECT_FALSE(p.producer.can_act());
}

TEST(ActorState, AbortMidStepFreesEveryRegisterAndStops) {
  ActorState actor(1, {{.register_count = 3, .consumer_count = 1}, {.register_count = 2, .consumer_count = 2}});
  actor.on_ready(0, 0, 0);
  actor.on_ready(0, 1, 1);
  ActorState::Messages first = actor.finish(actor.begin());  // step 0 published, unacked
  ActorState::Activation second = actor.begin();             // step 1 in the middle of its kernel
  EXPECT_EQ(actor.output(0).in_use(), 2);
  EXPECT_EQ(actor.output(1).in_use(), 2);
  actor.on_abort();
  EXPECT_EQ(actor.phase(), ActorState::Phase::aborted);
  EXPECT_EQ(actor.output(0).in_use(), 0);
  EXPECT_EQ(actor.output(1).in_use(), 0);
  EXPECT_TRUE(actor.finish(second).ready.empty()) << "nothing is sent after an abort";
  actor.on_ready(0, 2, 2);
  EXPECT_FALSE(actor.can_act());
  EXPECT_FALSE(first.ready.empty());
}

// An edge with an initial token orders step k of its consumer after step k-1 of its
// producer (how shared memory and variables are kept safe across steps).
TEST(ActorState, InitialTokenLetsTheFirstStepGoAndThenWaitsForThePreviousStep) {
  ActorState writer({{}, {.initial_tokens = 1}}, {{.register_count = 1, .consumer_count = 1}});
  ActorState reader(1, {{.register_count = 1, .consumer_count = 1, .initial_tokens = 1}});
  // Step 0: the writer has its data (input 0) and the initial token (input 1).
  writer.on_ready(0, 0, 0);
  ASSERT_TRUE(writer.can_act());
  ActorState::Activation w0 = writer.begin();
  EXPECT_EQ(w0.step, 0);
  const ActorState::Messages written = writer.finish(w0);
  ASSERT_EQ(written.acks.size(), 2u);
  EXPECT_EQ(written.acks[1].input, 1) << "the token goes back to the reader";
  EXPECT_FALSE(reader.output(0).has_free()) << "the reader's token register starts out held";
  reader.on_ack(0, written.acks[1].register_index);
  EXPECT_TRUE(reader.output(0).has_free());

  // Step 1 of the writer needs the reader's step 0.
  writer.on_ack(0, 0);
  writer.on_ready(0, 0, 1);
  EXPECT_FALSE(writer.can_act()) << "step 1 must wait for the reader's step 0";
  reader.on_ready(0, 0, 0);
  ActorState::Activation r0 = reader.begin();
  const ActorState::Messages read = reader.finish(r0);
  ASSERT_EQ(read.ready.size(), 1u);
  writer.on_ready(1, read.ready[0].register_index, read.ready[0].step);
  ASSERT_TRUE(writer.can_act());
  EXPECT_EQ(writer.begin().step, 1);
}

TEST(ActorState, DrainDoesNotWaitForTheTokenAfterTheLastStep) {
  ActorState writer({{}, {.initial_tokens = 1}}, {});
  writer.on_ready(0, 0, 0);
  writer.finish(writer.begin());
  writer.on_end_of_stream(0);
  EXPECT_EQ(writer.phase(), ActorState::Phase::done) << "the token input is not waited on";
  EXPECT_TRUE(writer.take_end_of_stream());
  writer.on_ready(1, 0, 0);  // the reader's last token arrives late: ignored
  EXPECT_FALSE(writer.can_act());
}

}  // namespace
}  // namespace tessel
