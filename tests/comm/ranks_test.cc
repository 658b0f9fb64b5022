// Several ranks in one process, each with its own transport (UCX) and its own executor: the
// plan's edges between ranks become SEND and RECV actors, and every layout must train to the
// same parameters as the one-device interpreter. (tests/launch/ runs them as processes.)
#include <gmock/gmock.h>

#include <cmath>
#include <future>
#include <numeric>
#include <thread>

#include "apps/models/parallel.h"
#include "comm/transport.h"
#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/comm/comm_support.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

using testing::connected_transports;
using testing::on_every_rank;

TEST(Transport, MovesTaggedBytesBetweenRanksAndReportsArrivals) {
  auto transports = connected_transports(2);
  std::vector<float> source(1 << 20), target(source.size(), 0);
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<float>(i);
  std::promise<comm::Completion> received, sent;
  transports[1]->receive(0x1200, ~uint64_t{0xff}, target.data(), target.size() * 4,
                         [&](const comm::Completion& done) { received.set_value(done); });
  transports[0]->send(1, 0x1234, source.data(), source.size() * 4,
                      [&](const comm::Completion& done) { sent.set_value(done); });
  const comm::Completion arrival = received.get_future().get();
  EXPECT_TRUE(sent.get_future().get().ok);
  EXPECT_TRUE(arrival.ok) << arrival.error;
  EXPECT_EQ(arrival.tag, 0x1234u);  // the mask let any low byte match; the sender's tag comes back
  EXPECT_EQ(arrival.bytes, source.size() * 4);
  EXPECT_EQ(target, source);
  EXPECT_EQ(transports[0]->bytes_sent(), source.size() * 4);
  EXPECT_EQ(transports[1]->bytes_received(), source.size() * 4);

  // A cancelled receive never completes, and a later message goes to the next receive.
  int64_t first = 0, second = 0;
  bool cancelled_completed = false;
  const uint64_t id =
      transports[1]->receive(7, ~uint64_t{0}, &first, 8, [&](const comm::Completion&) { cancelled_completed = true; });
  transports[1]->cancel(id);
  std::promise<void> got;
  transports[1]->receive(7, ~uint64_t{0}, &second, 8, [&](const comm::Completion&) { got.set_value(); });
  transports[1]->describe();  // runs on its progress thread after the posts and the cancel above
  transports[0]->send_value(1, 7, 42);
  got.get_future().get();
  EXPECT_EQ(second, 42);
  EXPECT_EQ(first, 0);
  EXPECT_FALSE(cancelled_completed);
}

// Receives `bytes` on `to` under `tag` from `from`; the completion, or a failure after 10 s.
comm::Completion transfer(comm::Transport& from, int to_rank, comm::Transport& to, uint64_t tag, const void* source,
                          void* target, size_t bytes) {
  std::promise<comm::Completion> received;
  to.receive(tag, ~uint64_t{0}, target, bytes, [&](const comm::Completion& done) { received.set_value(done); });
  from.send(to_rank, tag, source, bytes, {});
  std::future<comm::Completion> arrival = received.get_future();
  if (arrival.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return {.ok = false, .error = "nothing arrived within 10 s"};
  }
  return arrival.get();
}

TEST(Transport, DeliversEveryByteOfSmallAndLargeMessages) {
  auto transports = connected_transports(2);
  for (size_t bytes : {size_t{8}, size_t{64} << 10, size_t{4} << 20}) {
    std::vector<uint32_t> source(bytes / 4), target(bytes / 4, 0);
    std::iota(source.begin(), source.end(), static_cast<uint32_t>(bytes));
    const comm::Completion done =
        transfer(*transports[0], 1, *transports[1], bytes, source.data(), target.data(), bytes);
    ASSERT_TRUE(done.ok) << bytes << " bytes: " << done.error;
    EXPECT_EQ(target, source) << bytes << " bytes";
  }
}

TEST(Transport, TagsKeepMessagesApart) {
  auto transports = connected_transports(2);
  int64_t first = 0, second = 0;
  const int64_t one = 1, two = 2;
  std::promise<void> got_first, got_second;
  // Posted in the other order than the messages go out: each finds its own by tag.
  transports[1]->receive(2, ~uint64_t{0}, &second, sizeof second,
                         [&](const comm::Completion&) { got_second.set_value(); });
  transports[1]->receive(1, ~uint64_t{0}, &first, sizeof first,
                         [&](const comm::Completion&) { got_first.set_value(); });
  transports[0]->send(1, 1, &one, sizeof one, {});
  transports[0]->send(1, 2, &two, sizeof two, {});
  ASSERT_EQ(got_first.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_EQ(got_second.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 2);
}

TEST(Transport, TakesSharedMemoryWithinOneMachineAndRefusesForeignAddresses) {
  auto transports = connected_transports(2);
  const std::string chosen = transports[0]->describe();
  // Both transports live in this process, so on one machine: UCX's shared-memory transports
  // carry the bytes, not loopback tcp.
  EXPECT_THAT(chosen, ::testing::ContainsRegex("(sysv|posix|cma|xpmem)/memory"));
  EXPECT_THAT(chosen, ::testing::Not(::testing::HasSubstr("tcp/")));
  comm::Transport other;
  EXPECT_TESSEL_ERROR(other.connect({other.address(), {1, 2}}, 0), ErrorCode::kInvalidArgument,
                      "the address of rank 1 has 2 bytes, expected one made by Transport::address()");
}

// All-reduces a [2, n] sum over 2 ranks, with the P(sum) -> B conversion or without it (then
// only the final scalar crosses), one session after another on the same transports: each
// session's SEND and RECV actors use the same tags as the last one's, so no credit or end
// message of one may be left for the next to take.
TEST(RanksInOneProcess, SessionsOneAfterAnotherShareTheTransport) {
  auto transports = connected_transports(2);
  const int64_t n = 1 << 16;
  on_every_rank(2, [&](int r) {
    for (int round = 0; round < 40; ++round) {
      const bool convert = round % 2 == 0;
      Graph g;
      Tensor x = g.input("x", Shape{2, 1});
      pin(x, Placement::cpu(2), {S(0)});
      Tensor partial = sum(broadcast_to(x, Shape{2, n}), {0});
      Tensor total = sum(convert ? to(partial, {B}) : partial);
      Session session(g, {total},
                      {.register_count = 1 + round % 3,
                       .placement = Placement::cpu(2),
                       .ranks = 2,
                       .rank = r,
                       .transport = transports[r].get()});
      for (int step = 0; step < 1 + round % 4; ++step) {
        const float a = static_cast<float>(round), b = static_cast<float>(step + 1);
        const std::vector<HostTensor> fetched =
            session.step({{"x", HostTensor::of(Shape{2, 1}, std::vector<float>{a, b})}});
        if (fetched[0].defined()) {
          EXPECT_NEAR(fetched[0].get(0), (a + b) * n, 1e-4 * (a + b) * n) << "round " << round << ", step " << step;
        }
      }
    }
  });
}

// Rank 1 fetches a tensor that only rank 0 computes (its RECV and FETCH need nothing of rank
// 1) beside one of its own, whose feed comes late. Rank 0 finishes its step and closes its
// session first, so its SEND ends the stream: rank 1's RECV and the FETCH behind it stop after
// the step they were sent, before rank 1's own step is done. That is no error.
TEST(RanksInOneProcess, ActorsFedOnlyByAFinishedRankStopBeforeTheRanksRunEnds) {
  auto transports = connected_transports(2);
  std::vector<std::vector<HostTensor>> fetched(2);
  on_every_rank(2, [&](int r) {
    Graph g;
    Tensor x = g.input("x", Shape{3});
    Tensor y = g.input("y", Shape{3});
    pin(x, Placement::cpu_devices({0}), {B});
    pin(y, Placement::cpu_devices({1}), {B});
    Tensor x_on_rank_1 = to(scale(x, 2), Placement::cpu_devices({1}), {B});
    Tensor y_doubled = scale(y, 2);
    Session session(g, {x_on_rank_1, y_doubled},
                    {.placement = Placement::cpu(2), .ranks = 2, .rank = r, .transport = transports[r].get()});
    const Feeds feeds = {{"x", HostTensor::of(Shape{3}, std::vector<float>{1, 2, 3})},
                         {"y", HostTensor::of(Shape{3}, std::vector<float>{4, 5, 6})}};
    fetched[r] = session
                     .run(1,
                          [&](int64_t) -> std::optional<Feeds> {
                            if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
                            return feeds;
                          })
                     .at(0);
  });
  ASSERT_EQ(fetched[1].size(), 2u);
  EXPECT_EQ(fetched[1][0].get(2), 6);
  EXPECT_EQ(fetched[1][1].get(2), 12);
}

struct RankResult {
  std::vector<float> losses;  // from the rank holding the fetch
  std::map<std::string, std::vector<VariableShardValue>> shards;
  int sends = 0, recvs = 0;
  int collectives_across = 0;  // members of this rank's collectives that live on other ranks
};

// Trains `name` over `ranks` ranks of one process and checks every rank's shards against the
// interpreter.
void expect_ranks_match_one_device(const std::string& name, int ranks, int steps) {
  SCOPED_TRACE(concat(name, " over ", ranks, " ranks"));
  std::vector<models::ParallelExample> examples;
  for (int r = 0; r < ranks; ++r) examples.push_back(models::build_parallel_example(name));
  auto transports = connected_transports(ranks);
  std::vector<RankResult> results(ranks);
  on_every_rank(ranks, [&](int r) {
    models::ParallelExample& example = examples[r];
    Session session(*example.graph, {example.loss},
                    {.placement = example.placement, .ranks = ranks, .rank = r, .transport = transports[r].get()});
    for (const proto::DevicePlan& device : share_of(session.plan(), r).devices()) {
      for (const proto::ActorDef& actor : device.actors()) {
        results[r].sends += actor.kind() == proto::SEND;
        results[r].recvs += actor.kind() == proto::RECV;
        if (actor.kind() == proto::COLLECTIVE) {  // a collective with members on other ranks moves bytes between them
          for (int64_t rank : actor.attrs().at("member_ranks").ints().values())
            results[r].collectives_across += rank != r;
        }
      }
    }
    session.run(
        steps, [&](int64_t step) -> std::optional<Feeds> { return example.feeds(step); },
        [&](int64_t, const std::vector<HostTensor>& fetched) {
          if (fetched[0].defined()) results[r].losses.push_back(fetched[0].get(0));
        });
    for (const Tensor& param : example.graph->params()) {
      const std::string variable = example.graph->node(param.node()).attrs.get_string("name");
      results[r].shards[variable] = session.local_shards(variable);
    }
  });
  models::ParallelExample reference_example = models::build_parallel_example(name);
  Interpreter reference(*reference_example.graph);
  std::vector<float> expected_losses;
  for (int step = 0; step < steps; ++step) {
    expected_losses.push_back(reference.train_step(reference_example.feeds(step), {reference_example.loss})[0].get(0));
  }
  int ranks_with_loss = 0, transfers = 0;
  for (int r = 0; r < ranks; ++r) {
    transfers += results[r].sends + results[r].recvs + results[r].collectives_across;
    if (results[r].losses.empty()) continue;
    ++ranks_with_loss;
    ASSERT_EQ(results[r].losses.size(), expected_losses.size());
    for (int step = 0; step < steps; ++step) EXPECT_NEAR(results[r].losses[step], expected_losses[step], 1e-5);
  }
  EXPECT_EQ(ranks_with_loss, 1);
  EXPECT_GT(transfers, 0);
  for (const auto& [variable, unused] : results[0].shards) {
    const HostTensor whole = reference.variable(variable);
    int64_t covered = 0;
    for (int r = 0; r < ranks; ++r) {
      for (const VariableShardValue& shard : results[r].shards.at(variable)) {
        const HostTensor expected = block_of(whole, shard.starts, shard.value.shape());
        for (int64_t i = 0; i < expected.numel(); ++i) {
          ASSERT_NEAR(shard.value.get(i), expected.get(i), 1e-5 * std::max(1.0, std::abs(expected.get(i))))
              << variable << " on " << shard.device << ", element " << i;
        }
        covered += shard.value.numel();
      }
    }
    EXPECT_GE(covered, whole.numel()) << variable << ": the ranks' shards do not cover it";
  }
}

class RanksInOneProcess : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(RanksInOneProcess, TrainToTheOneDeviceParameters) {
  expect_ranks_match_one_device(std::get<0>(GetParam()), std::get<1>(GetParam()), 6);
}

INSTANTIATE_TEST_SUITE_P(Examples, RanksInOneProcess,
                         ::testing::Combine(::testing::Values("data-parallel", "tensor-parallel", "pipeline", "hybrid"),
                                            ::testing::Values(2, 4)),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_" + std::to_string(std::get<1>(info.param));
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

TEST(RanksInOneProcess, DevicesThatDoNotSplitEvenlyAreRefused) {
  models::ParallelExample example = models::build_parallel_example("data-parallel");
  EXPECT_TESSEL_ERROR(
      compile_plan(*example.graph, {.fetches = {example.loss}, .placement = example.placement, .ranks = 3}),
      ErrorCode::kInvalidArgument, "do not split evenly over 3 ranks");
}

}  // namespace
}  // namespace tessel
