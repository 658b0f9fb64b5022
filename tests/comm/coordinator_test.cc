// The coordinator over CAF's middleman on loopback: joins with the job token are admitted,
// others refused, and the job goes on.
#include "comm/coordinator.h"

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
  EXPECT_NE(tokenless.message.find("no job token"), std::string::npos) << tokenless.message;
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

}  // namespace
}  // namespace tessel
