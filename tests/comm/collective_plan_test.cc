// COLLECTIVE actors through plans: every conversion of collective_cases.h lowers to the
// collectives it names (one actor per device and changed mesh axis, of the expected op), and
// over several steps in flight every rank's fetched result equals the one-device interpreter's,
// with the plan's devices in this process or spread over 2 and 3 ranks (each with its own
// transport and session, as a job's processes have them).
#include <gmock/gmock.h>

#include <cctype>
#include <numeric>

#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/comm/collective_cases.h"
#include "tests/comm/comm_support.h"
#include "tests/test_support.h"

namespace tessel {
namespace testing {
void PrintTo(const CollectiveCase& c, std::ostream* out) { *out << c.name; }  // in test names, not bytes
}  // namespace testing
namespace {

using testing::CollectiveCase;
using testing::CollectiveGraph;

constexpr int kSteps = 4;

// "P(sum) -> S(1) on 3 devices" as a test name: Psum_to_S1_on_3_devices.
std::string test_name(const std::string& text) {
  std::string name;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      name += c;
    } else if (c == '>') {
      name += "to";
    } else if (c == ' ' && !name.empty() && name.back() != '_') {
      name += '_';
    }
  }
  return name;
}

std::vector<std::vector<HostTensor>> one_device_values(CollectiveGraph& built, const CollectiveCase& c) {
  Interpreter reference(*built.graph);
  std::vector<std::vector<HostTensor>> values;
  for (int step = 0; step < kSteps; ++step) {
    values.push_back(reference.evaluate(testing::collective_feeds(c, step), built.fetches));
  }
  return values;
}

// Checks rank `rank`'s fetches (one per check) of every step against the interpreter's.
void expect_rank_has_the_values(const CollectiveCase& c, const CollectiveGraph& built, int rank,
                                const std::vector<std::vector<HostTensor>>& fetched,
                                const std::vector<std::vector<HostTensor>>& expected) {
  ASSERT_EQ(fetched.size(), static_cast<size_t>(kSteps)) << "rank " << rank;
  const size_t checks = built.checks.size();
  for (int step = 0; step < kSteps; ++step) {
    for (size_t check = 0; check < checks; ++check) {
      const size_t f = rank * checks + check;
      EXPECT_EQ(testing::difference(c, fetched[step][f], expected[step][f]), "")
          << "rank " << rank << ", step " << step << ", " << built.check_names[check];
    }
  }
}

class CollectivesInOneProcess : public ::testing::TestWithParam<CollectiveCase> {};

TEST_P(CollectivesInOneProcess, LowerToCollectiveActorsAndGiveTheOneDeviceValues) {
  const CollectiveCase& c = GetParam();
  CollectiveGraph built = testing::build_collective_graph(c, 1);
  Session session(*built.graph, built.fetches, {.register_count = 2, .placement = c.placement});
  EXPECT_EQ(testing::describe(testing::collectives_of(session.plan())), testing::describe(c.collectives));
  const auto fetched =
      session.run(kSteps, [&](int64_t step) -> std::optional<Feeds> { return testing::collective_feeds(c, step); });
  expect_rank_has_the_values(c, built, 0, fetched, one_device_values(built, c));
}

std::vector<CollectiveCase> cases_in_one_process() {
  std::vector<CollectiveCase> cases;
  for (int devices = 1; devices <= 5; ++devices) {
    for (CollectiveCase& c : testing::one_axis_cases(devices)) cases.push_back(std::move(c));
  }
  for (CollectiveCase& c : testing::mesh_cases()) cases.push_back(std::move(c));
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Conversions, CollectivesInOneProcess, ::testing::ValuesIn(cases_in_one_process()),
                         [](const auto& info) { return test_name(info.param.name); });

// ---------------------------------------------------------------------------------------------

struct OverRanks {
  CollectiveCase conversion;
  int ranks = 2;
};

void PrintTo(const OverRanks& c, std::ostream* out) { *out << c.conversion.name << " over " << c.ranks << " ranks"; }

class CollectivesOverRanks : public ::testing::TestWithParam<OverRanks> {};

// Each rank compiles the same plan: its collective actors name their members' ranks, and
// every rank's own copy of the result, fetched on its first device, is the one-device value.
TEST_P(CollectivesOverRanks, ReachMembersOnOtherRanksAndGiveEveryRankTheOneDeviceValues) {
  const CollectiveCase& c = GetParam().conversion;
  const int ranks = GetParam().ranks;
  const int per_rank = c.placement.size() / ranks;
  std::vector<CollectiveGraph> graphs;
  for (int r = 0; r < ranks; ++r) graphs.push_back(testing::build_collective_graph(c, ranks));
  auto transports = testing::connected_transports(ranks);
  std::vector<std::vector<std::vector<HostTensor>>> fetched(ranks);
  std::vector<std::string> collectives(ranks);
  std::vector<int> members_elsewhere(ranks, 0), wrong_member_ranks(ranks, 0);
  testing::on_every_rank(ranks, [&](int r) {
    Session session(
        *graphs[r].graph, graphs[r].fetches,
        {.register_count = 2, .placement = c.placement, .ranks = ranks, .rank = r, .transport = transports[r].get()});
    // The session holds this rank's share; the whole-job plan holds every rank's collectives.
    collectives[r] = testing::describe(testing::collectives_of(
        compile_plan(*graphs[r].graph,
                     {.fetches = graphs[r].fetches, .register_count = 2, .placement = c.placement, .ranks = ranks})));
    for (const proto::DevicePlan& device : share_of(session.plan(), r).devices()) {
      for (const proto::ActorDef& actor : device.actors()) {
        if (actor.kind() != proto::COLLECTIVE) continue;
        const auto& members = actor.attrs().at("members").ints().values();
        const auto& member_ranks = actor.attrs().at("member_ranks").ints().values();
        for (int m = 0; m < members.size(); ++m) {
          wrong_member_ranks[r] += m >= member_ranks.size() || member_ranks[m] != members[m] / per_rank;
          members_elsewhere[r] += m < member_ranks.size() && member_ranks[m] != r;
        }
      }
    }
    fetched[r] =
        session.run(kSteps, [&](int64_t step) -> std::optional<Feeds> { return testing::collective_feeds(c, step); });
  });
  const auto expected = one_device_values(graphs[0], c);
  for (int r = 0; r < ranks; ++r) {
    SCOPED_TRACE(concat("rank ", r, " of ", ranks));
    EXPECT_EQ(collectives[r], testing::describe(c.collectives));
    EXPECT_EQ(wrong_member_ranks[r], 0);
    expect_rank_has_the_values(c, graphs[r], r, fetched[r], expected);
  }
  // On a line of devices every group spans the ranks; on the 2x2 mesh over 2 ranks, the groups
  // along mesh axis 1 are each one rank's two devices.
  const int across = std::accumulate(members_elsewhere.begin(), members_elsewhere.end(), 0);
  if (!c.collectives.empty() && c.placement.mesh_rank() == 1) {
    EXPECT_GT(across, 0) << "no collective has a member on another rank";
  }
}

std::vector<OverRanks> cases_over_ranks() {
  std::vector<OverRanks> cases;
  for (const auto& [devices, ranks] : std::vector<std::pair<int, int>>{{2, 2}, {4, 2}, {6, 2}, {3, 3}, {6, 3}}) {
    for (CollectiveCase& c : testing::one_axis_cases(devices)) cases.push_back({std::move(c), ranks});
  }
  for (CollectiveCase& c : testing::mesh_cases()) cases.push_back({std::move(c), 2});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Conversions, CollectivesOverRanks, ::testing::ValuesIn(cases_over_ranks()),
                         [](const auto& info) {
                           return test_name(concat(info.param.conversion.name, " over ", info.param.ranks, " ranks"));
                         });

}  // namespace
}  // namespace tessel
