#include "sbp/sbp.h"

#include "tests/test_support.h"

namespace tessel {
namespace {

TEST(Sbp, PrintsAndParsesEveryKind) {
  for (const Sbp& sbp : {S(0), S(3), B, P, Sbp::partial_max()}) EXPECT_EQ(Sbp::parse(sbp.to_string()), sbp);
  EXPECT_EQ(S(1).to_string(), "S(1)");
  EXPECT_EQ(P.to_string(), "P(sum)");
  EXPECT_EQ(Sbp::parse(" P "), P);
}

TEST(Sbp, NdSbpPrintsAndParses) {
  const NdSbp two{S(0), B};
  EXPECT_EQ(two.to_string(), "(S(0), B)");
  EXPECT_EQ(NdSbp::parse("(S(0), B)"), two);
  EXPECT_EQ(NdSbp::parse("(P(max),S(1))"), (NdSbp{Sbp::partial_max(), S(1)}));
  EXPECT_EQ(NdSbp::parse("S(2)"), NdSbp{S(2)});
}

TEST(Sbp, MalformedTextIsRejected) {
  EXPECT_TESSEL_ERROR(Sbp::parse("S(x)"), ErrorCode::kInvalidArgument, "'S(x)' is not an SBP");
  EXPECT_TESSEL_ERROR(Sbp::parse("Q"), ErrorCode::kInvalidArgument, "expected S(axis), B, P");
  EXPECT_TESSEL_ERROR(NdSbp::parse("(S(0), B"), ErrorCode::kInvalidArgument, "closing parenthesis");
  EXPECT_TESSEL_ERROR(S(-1), ErrorCode::kInvalidArgument, "must not be negative");
}

TEST(Sbp, SplitOfAMissingAxisNamesTheTensor) {
  EXPECT_TESSEL_ERROR(NdSbp{S(2)}.check_fits({4, 4}, 1, "w1"), ErrorCode::kInvalidArgument, "tensor 'w1'",
                      "S(2) splits axis 2", "[4, 4]");
  EXPECT_TESSEL_ERROR((NdSbp{S(0), B}).check_fits({4, 4}, 1, "x"), ErrorCode::kInvalidArgument, "mesh has 1 axes");
  EXPECT_NO_THROW((NdSbp{S(1), B}).check_fits({4, 4}, 2, "x"));
}

TEST(Placement, ValidatesDevicesAndMesh) {
  EXPECT_NO_THROW((Placement{DeviceType::cpu, {0, 1, 2, 3}, {2, 2}}.validate()));
  EXPECT_TESSEL_ERROR((Placement{DeviceType::cpu, {}, {0}}.validate()), ErrorCode::kInvalidArgument, "no");
  EXPECT_TESSEL_ERROR((Placement{DeviceType::cpu, {0, 0}, {2}}.validate()), ErrorCode::kInvalidArgument, "twice");
  EXPECT_TESSEL_ERROR((Placement{DeviceType::cpu, {0, 1, 2}, {2, 2}}.validate()), ErrorCode::kInvalidArgument,
                      "4 slots for 3 devices");
  EXPECT_EQ((Placement{DeviceType::cuda, {4, 5}, {2}}.to_string()), "cuda:{4,5} mesh [2]");
}

TEST(Placement, UnevenSplitsGiveTheFirstShardsOneMore) {
  // 10 rows on 4 devices: 3, 3, 2, 2.
  EXPECT_EQ(shard_range(10, 4, 0), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(shard_range(10, 4, 1), (std::pair<int64_t, int64_t>{3, 6}));
  EXPECT_EQ(shard_range(10, 4, 2), (std::pair<int64_t, int64_t>{6, 8}));
  EXPECT_EQ(shard_range(10, 4, 3), (std::pair<int64_t, int64_t>{8, 10}));
  for (int64_t extent : {0, 1, 7, 64}) {
    for (int count : {1, 2, 3, 5}) {
      int64_t covered = 0;
      for (int i = 0; i < count; ++i) {
        auto [begin, end] = shard_range(extent, count, i);
        EXPECT_EQ(begin, covered);
        covered = end;
      }
      EXPECT_EQ(covered, extent);
    }
  }
}

// Placements follow the job: the axis given as -1 takes the devices the others leave.
TEST(Placement, AMeshForTheJobTakesEveryDevice) {
  EXPECT_EQ(Placement::cpu_mesh_for(8, {-1, 2}), Placement::cpu_mesh(4, 2));
  EXPECT_EQ(Placement::cpu_mesh_for(2, {-1, 2}), Placement::cpu_mesh(1, 2));
  EXPECT_EQ(Placement::cpu_mesh_for(6, {-1}), Placement::cpu(6));
  EXPECT_EQ(Placement::cpu_mesh_for(6, {3, 2}), Placement::cpu_mesh(3, 2));
  EXPECT_TESSEL_ERROR(Placement::cpu_mesh_for(6, {-1, 4}), ErrorCode::kInvalidArgument,
                      "a mesh of shape [-1, 4] over 6 devices: the other axes take 4 devices, which do not divide 6");
  EXPECT_TESSEL_ERROR(Placement::cpu_mesh_for(6, {4, 2}), ErrorCode::kInvalidArgument, "it holds 8 devices");
  EXPECT_TESSEL_ERROR(Placement::cpu_mesh_for(6, {-1, -1}), ErrorCode::kInvalidArgument, "at most one -1");
}

// Numbers too large for their field are refused by name, never wrapped: cpu:{4294967296} used to
// parse as cpu:{0}, and S(99999999999) to throw std::out_of_range.
TEST(Placement, HugeNumbersInTextAreErrors) {
  EXPECT_TESSEL_ERROR(Placement::parse("cpu:{4294967296}"), ErrorCode::kInvalidArgument,
                      "'4294967296' is too large for a device index");
  EXPECT_TESSEL_ERROR(Placement::parse("cpu:{0,1} mesh [99999999999999999999]"), ErrorCode::kInvalidArgument,
                      "too large for a mesh extent");
  EXPECT_TESSEL_ERROR(Sbp::parse("S(99999999999)"), ErrorCode::kInvalidArgument, "expected an axis below 10000");
  EXPECT_EQ(Placement::parse("cpu:{7}").devices, std::vector<int>{7});
}

}  // namespace
}  // namespace tessel
