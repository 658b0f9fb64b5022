// comm::Communicator, specified by its definitions: for each operation, with 1 to 5 members and
// uneven counts (a member with nothing among them), every member's result equals the operation
// computed directly, bit for bit (the values have few fractional bits, so sums are exact in any
// order), whether every member
// lives in this process or the members are spread over 2 or 3 transports whose pieces travel
// in chunks of 64 bytes. Every wait is bounded: a member whose `done` never runs fails the test.
#include <gmock/gmock.h>

#include <chrono>
#include <functional>
#include <thread>

#include "comm/communicator.h"
#include "tests/comm/communicator_harness.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

using comm::ReduceOp;
using testing::Collective;
using testing::Completions;
using testing::Group;
using testing::make_collective;
using testing::matches_definition;
using testing::Operation;
using testing::run;
using testing::Spread;

class CommunicatorDefinition : public ::testing::TestWithParam<std::tuple<int, Spread>> {
 protected:
  int members() const { return std::get<0>(GetParam()); }
  Spread spread() const { return std::get<1>(GetParam()); }
};

TEST_P(CommunicatorDefinition, AllReduceGivesEveryMemberTheReductionInMemberOrder) {
  Group group(members(), spread());
  uint64_t seed = 0;
  struct Kind {
    DType dtype;
    ReduceOp reduce;
  };
  for (const Kind kind :
       {Kind{f32, ReduceOp::sum}, Kind{f32, ReduceOp::max}, Kind{i32, ReduceOp::max}, Kind{i64, ReduceOp::sum}}) {
    // Fewer elements than members leaves some with no chunk to reduce; 20,011 floats make
    // pieces of more than 16 chunks of 64 bytes, so the chunks grow (the smaller counts over 3
    // or more members go by recursive doubling).
    for (size_t count : {size_t{1}, size_t{3}, size_t{37}, size_t{301}, size_t{20011}}) {
      Collective c = make_collective(Operation::all_reduce, kind.dtype, kind.reduce, members(), ++seed, count);
      ASSERT_TRUE(run(group, c, seed));
    }
  }
}

TEST_P(CommunicatorDefinition, ReduceScatterGivesEachMemberItsChunkReduced) {
  Group group(members(), spread());
  for (uint64_t seed = 0; seed < 5; ++seed) {
    for (const ReduceOp reduce : {ReduceOp::sum, ReduceOp::max}) {
      for (const DType dtype : {f32, i64}) {
        Collective c = make_collective(Operation::reduce_scatter, dtype, reduce, members(), seed);
        ASSERT_TRUE(run(group, c, seed));
      }
    }
  }
}

TEST_P(CommunicatorDefinition, AllGatherGivesEveryMemberAllPiecesInMemberOrder) {
  Group group(members(), spread());
  for (uint64_t seed = 0; seed < 5; ++seed) {
    for (const DType dtype : {f32, i64, f16}) {  // nothing is reduced, so f16 moves too
      Collective c = make_collective(Operation::all_gather, dtype, ReduceOp::sum, members(), seed);
      ASSERT_TRUE(run(group, c, seed));
    }
  }
}

TEST_P(CommunicatorDefinition, AllToAllGivesMemberJTheChunkJOfEveryMember) {
  Group group(members(), spread());
  for (uint64_t seed = 0; seed < 5; ++seed) {
    for (const DType dtype : {f32, i32, bf16}) {
      Collective c = make_collective(Operation::all_to_all, dtype, ReduceOp::sum, members(), seed);
      ASSERT_TRUE(run(group, c, seed));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Members, CommunicatorDefinition,
                         ::testing::Combine(::testing::Range(1, 6),
                                            ::testing::Values(Spread{1}, Spread{2}, Spread{3}, Spread{2, false})),
                         [](const auto& info) {
                           return concat(std::get<0>(info.param), "Members", std::get<1>(info.param).name());
                         });

// ---------------------------------------------------------------------------------------------

// Three hundred operations of every kind one after another on one communicator, each member
// issuing its next one from the done of its last, so members run up to an operation apart;
// more operations than the 256 sequence numbers a tag holds.
TEST(Communicator, OperationsInARowStayRightPastTheTagsSequenceNumbers) {
  constexpr int kMembers = 4, kOperations = 300;
  Group group({0, 1, 1, 0}, 2);
  std::vector<Collective> operations;
  for (int k = 0; k < kOperations; ++k) {
    const Operation operation = static_cast<Operation>(k % 4);
    operations.push_back(make_collective(operation, k % 3 == 0 ? i64 : f32, k % 5 == 0 ? ReduceOp::max : ReduceOp::sum,
                                         kMembers, k, 7 + k % 50));
  }
  Completions finished(kMembers);
  std::vector<std::string> errors(kMembers);  // each member's first, written by its own chain only
  std::function<void(int, int)> issue = [&](int member, int k) {
    operations[k].issue(group.of(member), member, [&, member, k](const std::string& error) {
      if (!error.empty() || k + 1 == kOperations) {
        errors[member] = error.empty() ? "" : concat("operation ", k, ": ", error);
        return finished.of(member)("");
      }
      issue(member, k + 1);
    });
  };
  for (int m = 0; m < kMembers; ++m) issue(m, 0);
  ASSERT_TRUE(finished.all_succeeded());
  for (int m = 0; m < kMembers; ++m) EXPECT_EQ(errors[m], "") << "member " << m;
  for (int k = 0; k < kOperations; ++k) ASSERT_TRUE(matches_definition(operations[k])) << "operation " << k;
}

// Each chunk of a piece from another rank is reduced as it arrives, so chunks hold whole
// elements: with a chunk_bytes that is no multiple of the element, and with a piece of more
// than 16 chunks, whose chunks grow past chunk_bytes to an odd size (40,024 bytes / 16).
TEST(Communicator, ChunksFromOtherRanksHoldWholeElements) {
  for (const size_t chunk_bytes : {size_t{6}, size_t{64}}) {
    SCOPED_TRACE(concat("chunk_bytes ", chunk_bytes));
    Group group({0, 1}, 2, chunk_bytes);
    Collective longs = make_collective(Operation::all_reduce, i64, ReduceOp::sum, 2, 1, 100);
    EXPECT_TRUE(run(group, longs, 1));
    Collective floats = make_collective(Operation::all_reduce, f32, ReduceOp::sum, 2, 2, 20011);
    EXPECT_TRUE(run(group, floats, 2));
  }
}

// Point to point: the k-th send from a to b meets b's k-th receive from a, between two members
// of this rank (0 and 1) and with one on another rank (2), whichever side calls first, and with
// several sends done before the first receive is posted.
TEST(Communicator, SendMeetsTheReceiveOfTheSameOrdinalLocallyAndAcrossRanks) {
  Group group({0, 0, 1}, 2);
  struct Transfer {
    int from, to;
    bool receive_first;
  };
  int message = 0;
  for (const Transfer transfer : {Transfer{0, 1, false}, Transfer{1, 0, true}, Transfer{0, 2, false},
                                  Transfer{2, 1, true}, Transfer{1, 2, true}, Transfer{2, 0, false}}) {
    SCOPED_TRACE(concat("member ", transfer.from, " to member ", transfer.to));
    for (size_t bytes : {size_t{0}, size_t{8}, size_t{200}, size_t{1000}}) {
      std::vector<uint8_t> source(bytes), target(bytes, 0);
      for (size_t i = 0; i < bytes; ++i) source[i] = static_cast<uint8_t>(i * 7 + ++message);
      Completions completions(group.size());
      const auto receive = [&] {
        group.of(transfer.to).receive(transfer.to, transfer.from, target.data(), bytes, completions.of(transfer.to));
      };
      if (transfer.receive_first) receive();
      group.of(transfer.from).send(transfer.from, transfer.to, source.data(), bytes, completions.of(transfer.from));
      if (!transfer.receive_first) receive();
      for (int member : {transfer.from, transfer.to}) ASSERT_EQ(completions.wait(member), "") << bytes << " bytes";
      EXPECT_EQ(target, source) << bytes << " bytes";
    }
  }
  // Member 2 (rank 1) sends three messages to member 0 (rank 0) before member 0 receives one:
  // they wait in the transport, and each receive takes the one of its ordinal.
  std::vector<std::vector<int32_t>> sources = {{1, 2, 3}, std::vector<int32_t>(40, 4), {5}}, targets;
  for (size_t k = 0; k < sources.size(); ++k) {
    Completions sent(group.size());
    group.of(2).send(2, 0, sources[k].data(), sources[k].size() * 4, sent.of(2));
    ASSERT_EQ(sent.wait(2), "") << "send " << k;
  }
  for (size_t k = 0; k < sources.size(); ++k) {
    targets.emplace_back(sources[k].size(), 0);
    Completions received(group.size());
    group.of(0).receive(0, 2, targets[k].data(), targets[k].size() * 4, received.of(0));
    ASSERT_EQ(received.wait(0), "") << "receive " << k;
  }
  EXPECT_EQ(targets, sources);
}

// ---------------------------------------------------------------------------------------------
// Failures reach the members through done.

class CommunicatorAbort : public ::testing::TestWithParam<Spread> {};

// Member 0 all-reduces; member 1 (on this rank or the other one) never calls, so member 0 waits
// for its piece until abort(), which ends it with the reason. Later calls fail the same way.
TEST_P(CommunicatorAbort, EndsAnInFlightMemberWithTheReason) {
  std::vector<float> send(40, 1), received(80, 0);
  Group group(2, GetParam());
  Completions first(2);
  group.of(0).all_reduce(0, send.data(), received.data(), send.size(), f32, ReduceOp::sum, first.of(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(first.calls(0), 0) << "member 0 finished without its peer";
  group.of(0).abort("the test stops it");
  EXPECT_EQ(first.wait(0), "the test stops it");
  Completions later(2);
  group.of(0).all_gather(0, send.data(), received.data(), {40, 40}, f32, later.of(0));
  EXPECT_EQ(later.wait(0), "the test stops it");
  EXPECT_EQ(first.calls(0), 1);
}

// Closing a communicator is an abort: an in-flight member's done runs once, with why. Its
// workers may go right after: a send the transport completes later must not reach them.
TEST_P(CommunicatorAbort, ClosingEndsAnInFlightMember) {
  std::vector<float> send(12, 1), received(12, 0);
  Group group(2, GetParam());
  Completions completions(2);
  group.of(0).reduce_scatter(0, send.data(), received.data(), {5, 7}, f32, ReduceOp::max, completions.of(0));
  group.close(0);
  EXPECT_EQ(completions.wait(0), "the communicator was closed");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // for the transport to complete the send
  EXPECT_EQ(completions.calls(0), 1);
}

INSTANTIATE_TEST_SUITE_P(Members, CommunicatorAbort, ::testing::Values(Spread{1}, Spread{2}),
                         [](const auto& info) { return info.param.name(); });

// Reductions cover f32, bf16, f16, i32 and i64. The half types are widened to f32, combined and
// rounded back, so two members' sum is the rounded sum of their values. A bool reduction is
// refused through done, and since a refused call is no operation, the members' next one still
// works.
TEST(Communicator, HalfPrecisionReductionsRoundAndBoolIsRefused) {
  Group group({0, 1}, 2);
  for (const DType dtype : {f16, bf16}) {
    SCOPED_TRACE(std::string(name_of(dtype)));
    const auto narrow = [&](float v) { return dtype == bf16 ? float_to_bf16(v) : float_to_f16(v); };
    const auto widen = [&](uint16_t v) { return dtype == bf16 ? bf16_to_float(v) : f16_to_float(v); };
    std::vector<std::vector<uint16_t>> ins(2);
    for (int m = 0; m < 2; ++m) {
      for (int i = 0; i < 9; ++i) ins[m].push_back(narrow(0.37f * i - 1.3f + 0.011f * static_cast<float>((m + 1) * i)));
    }
    // A tie: (1 + ulp) + ulp / 2 is halfway between 1 + ulp and 1 + 2 ulp; to nearest even it is
    // 1 + 2 ulp (truncation would give 1 + ulp).
    const float ulp = dtype == bf16 ? 0x1p-7f : 0x1p-10f;
    ins[0].push_back(narrow(1 + ulp));
    ins[1].push_back(narrow(ulp / 2));
    std::vector<std::vector<uint16_t>> sums(2, std::vector<uint16_t>(10)), maxima(2, std::vector<uint16_t>(10));
    Completions reduced(2), scattered(2);
    for (int m = 0; m < 2; ++m) {
      group.of(m).all_reduce(m, ins[m].data(), sums[m].data(), 10, dtype, ReduceOp::sum, reduced.of(m));
      group.of(m).reduce_scatter(m, ins[m].data(), maxima[m].data(), {4, 6}, dtype, ReduceOp::max, scattered.of(m));
    }
    for (int m = 0; m < 2; ++m) {
      ASSERT_EQ(reduced.wait(m), "");
      ASSERT_EQ(scattered.wait(m), "");
    }
    int rounded = 0;
    for (int i = 0; i < 10; ++i) {
      const uint16_t sum = narrow(widen(ins[0][i]) + widen(ins[1][i]));
      EXPECT_EQ(sums[0][i], sum) << i;
      EXPECT_EQ(sums[1][i], sum) << i;
      rounded += widen(sum) != widen(ins[0][i]) + widen(ins[1][i]);
    }
    EXPECT_GE(rounded, 3) << "the values must need rounding for the test to tell";
    EXPECT_EQ(sums[0][9], narrow(1 + 2 * ulp)) << "the tie is rounded to even";
    // Member 0 holds the maxima of elements [0, 4), member 1 of [4, 10), each at its start.
    for (int i = 0; i < 10; ++i) {
      const int member = i < 4 ? 0 : 1, at = i < 4 ? i : i - 4;
      EXPECT_EQ(maxima[member][at], widen(ins[0][i]) > widen(ins[1][i]) ? ins[0][i] : ins[1][i]) << i;
    }
  }
  std::vector<uint8_t> flags(10, 1), out(10, 0);
  Completions refused(2);
  for (int m = 0; m < 2; ++m) {
    group.of(m).all_reduce(m, flags.data(), out.data(), flags.size(), DType::boolean, ReduceOp::sum, refused.of(m));
  }
  for (int m = 0; m < 2; ++m) {
    EXPECT_EQ(refused.wait(m), concat("collectives reduce f32, bf16, f16, i32 and i64, not ", DType::boolean));
  }
  Collective c = make_collective(Operation::all_reduce, f32, ReduceOp::sum, 2, 3, 33);
  EXPECT_TRUE(run(group, c, 3));
}

TEST(Communicator, RefusesAGroupItCannotRun) {
  comm::CollectiveWorkers workers(1);
  EXPECT_TESSEL_ERROR(comm::CpuCommunicator({.member_ranks = {}, .workers = &workers}), ErrorCode::kInvalidArgument,
                      "has 0 members, expected 1 to 4096");
  EXPECT_TESSEL_ERROR(comm::CpuCommunicator({.group = -1, .member_ranks = {0}, .workers = &workers}),
                      ErrorCode::kInvalidArgument, "communicator group -1 is outside 0 to 32767");
  EXPECT_TESSEL_ERROR(comm::CpuCommunicator({.member_ranks = {0}}), ErrorCode::kInvalidArgument,
                      "a communicator needs collective workers");
  EXPECT_TESSEL_ERROR(comm::CpuCommunicator({.group = 3, .member_ranks = {0, 1}, .workers = &workers}),
                      ErrorCode::kInvalidArgument, "communicator 3 has members on other ranks",
                      "needs this rank's transport");
}

// Members that call different operations (what a plan whose actors of one group disagree would
// give a communicator) end with an error naming the mismatch, never by reading past a piece.
TEST(Communicator, MembersCallingDifferentOperationsAreRefused) {
  Group group(std::vector<int>{0, 0}, 1);
  std::vector<float> send(8, 1), gathered(8, 0), reduced(8, 0);
  Completions done(2);
  // Their first pieces already disagree (2 floats against 4), so neither can finish first: with
  // {4, 4} member 0 could complete its one phase before member 1 saw the mismatch in its second.
  group.of(0).all_gather(0, send.data(), gathered.data(), {2, 2}, f32, done.of(0));
  group.of(1).all_reduce(1, send.data(), reduced.data(), 8, f32, ReduceOp::sum, done.of(1));
  for (int member : {0, 1}) {
    const std::optional<std::string> error = done.wait(member);
    ASSERT_TRUE(error.has_value()) << "member " << member << "'s done did not run";
    EXPECT_THAT(*error, ::testing::HasSubstr("called operations that do not match")) << "member " << member;
  }
}

}  // namespace
}  // namespace tessel
