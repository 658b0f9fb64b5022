// collective_job: one rank of a job that tessel-launch starts. Every conversion of
// tests/comm/collective_cases.h (each collective kind, uneven extents) runs through a plan over
// the job's ranks, with one and with two devices per rank, and every rank checks that the plan
// has the COLLECTIVE actors it should and that its own fetched copy of the result equals the
// one-device interpreter at every step.
//
//   tessel-launch --nproc-per-node 3 -- collective_job
//
// Prints "PASS: ..." and exits 0, or prints "FAIL: ..." for each difference and exits 1.
// Without TESSEL_RANK (not started by the launcher) it is a job of one rank.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/job.h"
#include "core/logging.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/comm/collective_cases.h"

namespace tessel {
namespace {

constexpr int kSteps = 3;

struct Outcome {
  std::vector<std::string> failures;
  int members_elsewhere = 0;  // members of this rank's collectives that live on other ranks
};

// Runs one conversion on this rank; what differs, if anything.
Outcome check(const testing::CollectiveCase& c, int ranks, int rank, comm::Transport* transport) {
  Outcome outcome;
  testing::CollectiveGraph built = testing::build_collective_graph(c, ranks);
  std::vector<std::vector<HostTensor>> fetched;
  {
    Session session(
        *built.graph, built.fetches,
        {.register_count = 2, .placement = c.placement, .ranks = ranks, .rank = rank, .transport = transport});
    // The session holds this rank's share; the whole-job plan holds every rank's collectives.
    const std::string collectives = testing::describe(testing::collectives_of(compile_plan(
        *built.graph, {.fetches = built.fetches, .register_count = 2, .placement = c.placement, .ranks = ranks})));
    if (collectives != testing::describe(c.collectives)) {
      outcome.failures.push_back(
          concat("the plan has ", collectives, " collective actors, expected ", testing::describe(c.collectives)));
    }
    for (const proto::DevicePlan& device : share_of(session.plan(), rank).devices()) {
      for (const proto::ActorDef& actor : device.actors()) {
        if (actor.kind() != proto::COLLECTIVE) continue;
        for (int64_t member_rank : actor.attrs().at("member_ranks").ints().values()) {
          outcome.members_elsewhere += member_rank != rank;
        }
      }
    }
    fetched =
        session.run(kSteps, [&](int64_t step) -> std::optional<Feeds> { return testing::collective_feeds(c, step); });
  }  // the session drains here, on every rank alike
  Interpreter reference(*built.graph);
  const size_t checks = built.checks.size();
  for (int step = 0; step < kSteps; ++step) {
    const std::vector<HostTensor> expected = reference.evaluate(testing::collective_feeds(c, step), built.fetches);
    for (size_t check = 0; check < checks; ++check) {
      const size_t f = rank * checks + check;
      const std::string difference = testing::difference(c, fetched.at(step).at(f), expected.at(f));
      if (!difference.empty()) {
        outcome.failures.push_back(concat("step ", step, ", ", built.check_names[check], ": ", difference));
      }
    }
  }
  return outcome;
}

}  // namespace
}  // namespace tessel

int main(int, char** argv) {
  using namespace tessel;
  init_logging(argv[0]);
  try {
    const std::optional<comm::JobConfig> config = comm::job_config_from_environment();
    const std::unique_ptr<comm::Job> job = config ? std::make_unique<comm::Job>(*config) : nullptr;
    const int ranks = job ? job->world_size() : 1, rank = job ? job->rank() : 0;
    int conversions = 0, members_elsewhere = 0, failures = 0;
    for (const int per_rank : {1, 2}) {
      std::vector<testing::CollectiveCase> cases = testing::one_axis_cases(ranks * per_rank);
      if (ranks * per_rank == 4) {
        for (testing::CollectiveCase& c : testing::mesh_cases()) cases.push_back(std::move(c));
      }
      for (const testing::CollectiveCase& c : cases) {
        const Outcome outcome = check(c, ranks, rank, job ? &job->transport() : nullptr);
        ++conversions;
        members_elsewhere += outcome.members_elsewhere;
        for (const std::string& failure : outcome.failures) {
          std::printf("FAIL: rank %d of %d, %s over %d ranks: %s\n", rank, ranks, c.name.c_str(), ranks,
                      failure.c_str());
          ++failures;
        }
      }
    }
    if (ranks > 1 && members_elsewhere == 0) {
      std::printf("FAIL: rank %d of %d: no collective of this rank has a member on another rank\n", rank, ranks);
      ++failures;
    }
    if (failures == 0) {
      std::printf(
          "PASS: rank %d of %d: %d conversions over 1 and 2 devices per rank, with %d collective members on "
          "other ranks, equal one device at every step\n",
          rank, ranks, conversions, members_elsewhere);
    }
    std::fflush(stdout);
    if (job) job->finish();
    return failures == 0 ? 0 : 1;
  } catch (const Error& error) {
    std::printf("FAIL: collective_job: %s\n", error.what());
    return 1;
  }
}
