// The coordinator over CAF's middleman on loopback: joins with the job token are admitted,
// others refused, and the job goes on.
#include "comm/coordinator.h"

#include <chrono>
#include <functional>
#include <thread>

#include "tests/test_support.h"

namespace tessel {
namespace {

TEST(Coordinator, AdmitsRanksWithTheTokenAndRefusesOthers) {
  Coordinator coordinator("secret-token", 2);
  ASSERT_GT(coordinator.port(), 0);
  const JoinReply intruder = join_coordinator("127.0.0.1", coordinator.port(), "guess", 0);
  EXPECT_FALSE(intruder.accepted);
  EXPECT_NE(intruder.message.find("wrong job token"), std::string::npos) << intruder.message;
  EXPECT_EQ(coordinator.refused(), 1);
  const JoinReply tokenless = join_coordinator("127.0.0.1", coordinator.port(), "", 0);
  EXPECT_FALSE(tokenless.accepted);
  // The gate cannot tell a missing token from a wrong one: neither proves the job's.
  EXPECT_NE(tokenless.message.find("wrong job token"), std::string::npos) << tokenless.message;
  EXPECT_EQ(coordinator.refused(), 2);
  EXPECT_TRUE(coordinator.members().empty());

  // The job goes on: real ranks still join.
  EXPECT_TRUE(join_coordinator("127.0.0.1", coordinator.port(), "secret-token", 1).accepted);
  EXPECT_FALSE(coordinator.complete());
  EXPECT_TRUE(join_coordinator("127.0.0.1", coordinator.port(), "secret-token", 0).accepted);
  EXPECT_EQ(coordinator.members(), (std::vector<int>{0, 1}));
  EXPECT_TRUE(coordinator.complete());

  const JoinReply twice = join_coordinator("127.0.0.1", coordinator.port(), "secret-token", 1);
  EXPECT_FALSE(twice.accepted);
  EXPECT_NE(twice.message.find("already joined"), std::string::npos) << twice.message;
  EXPECT_FALSE(join_coordinator("127.0.0.1", coordinator.port(), "secret-token", 5).accepted);
  EXPECT_EQ(coordinator.refused(), 4);
}

TEST(Coordinator, UnreachableCoordinatorIsAClearError) {
  uint16_t closed_port = 0;
  {
    Coordinator gone("t", 1);
    closed_port = gone.port();
  }
  EXPECT_TESSEL_ERROR(join_coordinator("127.0.0.1", closed_port, "t", 0, 2), ErrorCode::kFailedPrecondition,
                      "coordinator at 127.0.0.1");
}

TEST(Coordinator, RejectsBadConfiguration) {
  EXPECT_TESSEL_ERROR(Coordinator("", 2), ErrorCode::kInvalidArgument, "token must not be empty");
  EXPECT_TESSEL_ERROR(Coordinator("t", 0), ErrorCode::kInvalidArgument, "at least 1");
}

// Waits until `condition` holds, for at most `seconds`; returns whether it held.
bool eventually(const std::function<bool()>& condition, double seconds = 3) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// Ranks 0 .. world_size-1 join; join_coordinator() sends no heartbeats, so once the roster is
// whole every rank goes silent and misses the deadline.
void join_every_rank(const Coordinator& coordinator, const std::string& token, int world_size) {
  for (int rank = 0; rank < world_size; ++rank) {
    ASSERT_TRUE(join_coordinator("127.0.0.1", coordinator.port(), token, rank).accepted) << "rank " << rank;
  }
  ASSERT_TRUE(coordinator.complete());
}

TEST(Coordinator, WithoutRecoveryASilentRankFailsTheJobInEpochZero) {
  Coordinator coordinator("t", 2, "127.0.0.1", 0, /*heartbeat_deadline_seconds=*/0.2);
  join_every_rank(coordinator, "t", 2);
  ASSERT_TRUE(eventually([&] { return !coordinator.failure().empty(); }));
  EXPECT_NE(coordinator.failure().find("sent no heartbeat"), std::string::npos) << coordinator.failure();
  EXPECT_NE(coordinator.failure().find("the deadline is 0.2 s"), std::string::npos) << coordinator.failure();
  EXPECT_EQ(coordinator.epoch(), 0);
  EXPECT_EQ(coordinator.members(), (std::vector<int>{0, 1})) << "a failed job removes no member";
}

// join_coordinator() cannot heartbeat, so both ranks fall silent together: the first loss starts
// epoch 1 among the other rank, and the job fails only when the second loss leaves no member.
// (A rank that stays alive through epoch 1 needs heartbeats, which only comm/job.h sends.)
TEST(Coordinator, WithRecoveryASilentRankStartsTheNextEpoch) {
  Coordinator coordinator("t", 2, "127.0.0.1", 0, /*heartbeat_deadline_seconds=*/0.2, /*join_timeout_seconds=*/60,
                          {.recovery = true});
  join_every_rank(coordinator, "t", 2);
  ASSERT_TRUE(eventually([&] { return !coordinator.failure().empty(); }));
  EXPECT_EQ(coordinator.epoch(), 1);
  EXPECT_NE(coordinator.failure().find("sent no heartbeat"), std::string::npos) << coordinator.failure();
  EXPECT_NE(coordinator.failure().find("0 rank(s) on 0 node(s) remain, and the job needs 1 node(s)"), std::string::npos)
      << coordinator.failure();
  EXPECT_TRUE(coordinator.members().empty());
  const JoinReply rejoin = join_coordinator("127.0.0.1", coordinator.port(), "t", 0);
  EXPECT_FALSE(rejoin.accepted) << "a lost rank does not come back under its old number";
  EXPECT_NE(rejoin.message.find("already joined"), std::string::npos) << rejoin.message;
}

TEST(Coordinator, WithRecoveryTooFewNodesLeftFailsTheJobWithoutANewEpoch) {
  // join_coordinator() joins every rank from node 0: after a loss, one node remains.
  Coordinator coordinator("t", 2, "127.0.0.1", 0, /*heartbeat_deadline_seconds=*/0.2, /*join_timeout_seconds=*/60,
                          {.recovery = true, .min_nodes = 2});
  join_every_rank(coordinator, "t", 2);
  ASSERT_TRUE(eventually([&] { return !coordinator.failure().empty(); }));
  EXPECT_NE(coordinator.failure().find("rank 0 sent no heartbeat"), std::string::npos) << coordinator.failure();
  EXPECT_NE(coordinator.failure().find("1 rank(s) on 1 node(s) remain, and the job needs 2 node(s)"), std::string::npos)
      << coordinator.failure();
  EXPECT_EQ(coordinator.epoch(), 0);
}

TEST(Coordinator, WithRecoveryARankMissingFromTheFirstRosterStillFailsTheJob) {
  Coordinator coordinator("t", 2, "127.0.0.1", 0, /*heartbeat_deadline_seconds=*/0.2, /*join_timeout_seconds=*/0.3,
                          {.recovery = true});
  ASSERT_TRUE(join_coordinator("127.0.0.1", coordinator.port(), "t", 0).accepted);
  ASSERT_TRUE(eventually([&] { return !coordinator.failure().empty(); }));
  EXPECT_NE(coordinator.failure().find("rank(s) 1 did not join within 0.3 s"), std::string::npos)
      << coordinator.failure();
  EXPECT_EQ(coordinator.epoch(), 0);
  EXPECT_FALSE(coordinator.complete());
}

// A rank joins the running job as rank -1: the coordinator names it after the first members and
// starts the next epoch with it, within --nnodes MAX, once the job has formed, and only with the token.
TEST(Coordinator, WithRecoveryARankJoinsTheRunningJobAsTheNextMember) {
  Coordinator coordinator("t", 2, "127.0.0.1", 0, /*heartbeat_deadline_seconds=*/30, /*join_timeout_seconds=*/60,
                          {.recovery = true, .max_nodes = 1});
  const JoinReply early = join_coordinator("127.0.0.1", coordinator.port(), "t", -1);
  EXPECT_FALSE(early.accepted);
  EXPECT_NE(early.message.find("has not formed yet"), std::string::npos) << early.message;
  join_every_rank(coordinator, "t", 2);
  EXPECT_EQ(coordinator.epoch(), 0);
  const JoinReply stranger = join_coordinator("127.0.0.1", coordinator.port(), "guess", -1);
  EXPECT_FALSE(stranger.accepted);
  EXPECT_NE(stranger.message.find("wrong job token"), std::string::npos) << stranger.message;
  const JoinReply joined = join_coordinator("127.0.0.1", coordinator.port(), "t", -1);
  ASSERT_TRUE(joined.accepted) << joined.message;
  EXPECT_EQ(joined.message, "joined 2 1") << "the next name after ranks 0 and 1, to re-form into epoch 1";
  EXPECT_EQ(coordinator.epoch(), 1);
  EXPECT_EQ(coordinator.members(), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(join_coordinator("127.0.0.1", coordinator.port(), "t", -1).message, "joined 3 2");
  EXPECT_EQ(coordinator.refused(), 2);
}

TEST(Coordinator, ARankJoinsARunningJobOnlyWithRecoveryAndWithinItsNodes) {
  Coordinator plain("t", 1, "127.0.0.1", 0, 30);
  join_every_rank(plain, "t", 1);
  const JoinReply refused = join_coordinator("127.0.0.1", plain.port(), "t", -1);
  EXPECT_FALSE(refused.accepted);
  EXPECT_NE(refused.message.find("runs without recovery, so it takes no new ranks"), std::string::npos)
      << refused.message;
  // The job's one rank is on node 0: with at most 1 node, a rank from node 0 joins, one from node 1 not.
  Coordinator capped("t", 1, "127.0.0.1", 0, 30, 60, {.recovery = true, .max_nodes = 1});
  join_every_rank(capped, "t", 1);
  const JoinReply elsewhere = join_coordinator("127.0.0.1", capped.port(), "t", -1, 10, /*node=*/1);
  EXPECT_FALSE(elsewhere.accepted);
  EXPECT_NE(elsewhere.message.find("node 1 would be the job's node number 2, and it runs on at most 1"),
            std::string::npos)
      << elsewhere.message;
  EXPECT_TRUE(join_coordinator("127.0.0.1", capped.port(), "t", -1, 10, /*node=*/0).accepted);
  EXPECT_EQ(capped.epoch(), 1);
}

}  // namespace
}  // namespace tessel
