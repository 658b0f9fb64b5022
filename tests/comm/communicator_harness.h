// A harness for comm::Communicator's tests (collective_test.cc): a communicator per "rank" of
// this process over the same members (Group), the done of each member's call (Completions), and
// one collective call for every member with its inputs and its outputs by definition
// (Collective), checked byte for byte. Every wait is bounded by kPatience.
#pragma once

#include <glog/logging.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/transport.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/random.h"
#include "tests/comm/comm_support.h"

namespace tessel::testing {

using comm::ReduceOp;
using Done = comm::Communicator::Done;

inline constexpr auto kPatience = std::chrono::seconds(20);  // for any one operation; they take milliseconds

// Where a communicator's members live: all on one rank, or over `ranks` ranks in this process,
// member m on rank m % ranks (interleaved: local and remote members alternate in member order)
// or in consecutive blocks.
struct Spread {
  int ranks = 1;
  bool interleaved = true;
  std::string name() const {
    return ranks == 1 ? "OneRank" : concat(ranks, "Ranks", interleaved ? "Interleaved" : "InBlocks");
  }
};

inline std::vector<int> ranks_of_members(int members, const Spread& spread) {
  std::vector<int> ranks;
  for (int m = 0; m < members; ++m) ranks.push_back(spread.interleaved ? m % spread.ranks : m * spread.ranks / members);
  return ranks;
}

// A communicator per rank over the same members, each rank with its own transport and workers,
// as the ranks of a job have them. Communicators go first, then workers, then transports.
class Group {
 public:
  Group(std::vector<int> member_ranks, int ranks, size_t chunk_bytes = 64) : member_ranks_(std::move(member_ranks)) {
    if (ranks > 1) transports_ = connected_transports(ranks);
    for (int r = 0; r < ranks; ++r) {
      workers_.push_back(std::make_unique<comm::CollectiveWorkers>(2));
      communicators_.push_back(std::make_unique<comm::CpuCommunicator>(
          comm::CommunicatorOptions{.group = 5,
                                    .member_ranks = member_ranks_,
                                    .rank = r,
                                    .transport = ranks > 1 ? transports_[r].get() : nullptr,
                                    .workers = workers_.back().get(),
                                    .chunk_bytes = chunk_bytes}));
    }
  }
  Group(int members, const Spread& spread) : Group(ranks_of_members(members, spread), spread.ranks) {}

  int size() const { return static_cast<int>(member_ranks_.size()); }
  // The communicator that member `member` calls on: its rank's.
  comm::Communicator& of(int member) { return *communicators_.at(member_ranks_.at(member)); }
  comm::Communicator& on_rank(int rank) { return *communicators_.at(rank); }
  // Closes rank `rank`'s communicator and then its workers, as a stopping executor does; its
  // transport stays, and may still complete transfers the communicator started.
  void close(int rank) {
    communicators_.at(rank).reset();
    workers_.at(rank).reset();
  }

 private:
  std::vector<int> member_ranks_;
  std::vector<std::unique_ptr<comm::Transport>> transports_;
  std::vector<std::unique_ptr<comm::CollectiveWorkers>> workers_;
  std::vector<std::unique_ptr<comm::CpuCommunicator>> communicators_;
};

// The `done` of one call per member: what each reported, and how often it ran.
class Completions {
 public:
  explicit Completions(int members) : state_(std::make_shared<State>()) {
    state_->errors.resize(members);
    state_->calls.assign(members, 0);
  }

  Done of(int member) const {
    return [state = state_, member](const std::string& error) {
      std::lock_guard<std::mutex> lock(state->mutex);
      if (state->calls[member]++ == 0) state->errors[member] = error;
      state->changed.notify_all();
    };
  }

  // Waits at most kPatience for `member`'s done; its error ("" when it worked), or nullopt.
  std::optional<std::string> wait(int member) const {
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (!state_->changed.wait_for(lock, kPatience, [&] { return state_->calls[member] > 0; })) return std::nullopt;
    return state_->errors[member];
  }

  // Success when every member's done ran once, reporting no error.
  ::testing::AssertionResult all_succeeded() const {
    for (int m = 0; m < static_cast<int>(state_->calls.size()); ++m) {
      const std::optional<std::string> error = wait(m);
      if (!error) return ::testing::AssertionFailure() << "member " << m << "'s done did not run within the patience";
      if (!error->empty()) return ::testing::AssertionFailure() << "member " << m << " reported: " << *error;
    }
    std::lock_guard<std::mutex> lock(state_->mutex);
    for (int m = 0; m < static_cast<int>(state_->calls.size()); ++m) {
      if (state_->calls[m] != 1)
        return ::testing::AssertionFailure() << "member " << m << "'s done ran " << state_->calls[m] << " times";
    }
    return ::testing::AssertionSuccess();
  }

  int calls(int member) const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->calls[member];
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::string> errors;
    std::vector<int> calls;
  };
  std::shared_ptr<State> state_;
};

// ---------------------------------------------------------------------------------------------
// One collective call for every member: the inputs, the definition's outputs, and buffers for
// what the communicator gives.

enum class Operation { all_reduce, reduce_scatter, all_gather, all_to_all };

struct Collective {
  Operation operation = Operation::all_reduce;
  DType dtype = DType::f32;
  ReduceOp reduce = ReduceOp::sum;
  size_t count = 0;                           // all_reduce: elements on every member
  std::vector<size_t> counts{};               // reduce_scatter, all_gather: per member
  std::vector<std::vector<size_t>> matrix{};  // all_to_all: [i][j], elements member i sends member j
  std::vector<std::vector<std::byte>> send{}, received{}, expected{};  // per member

  std::string describe() const {
    const char* names[] = {"all_reduce", "reduce_scatter", "all_gather", "all_to_all"};
    std::string shape;
    if (operation == Operation::all_reduce) shape = concat(count);
    for (size_t c : counts) shape += concat(shape.empty() ? "" : ",", c);
    for (const std::vector<size_t>& row : matrix) {
      shape += "[";
      for (size_t c : row) shape += concat(c, " ");
      shape += "]";
    }
    return concat(names[static_cast<int>(operation)], " of ", dtype,
                  operation == Operation::all_reduce || operation == Operation::reduce_scatter
                      ? (reduce == ReduceOp::sum ? " (sum)" : " (max)")
                      : "",
                  ", counts ", shape, ", over ", send.size(), " members");
  }

  void issue(comm::Communicator& communicator, int member, Done done) {
    const void* in = send[member].data();
    void* out = received[member].data();
    switch (operation) {
      case Operation::all_reduce:
        return communicator.all_reduce(member, in, out, count, dtype, reduce, std::move(done));
      case Operation::reduce_scatter:
        return communicator.reduce_scatter(member, in, out, counts, dtype, reduce, std::move(done));
      case Operation::all_gather:
        return communicator.all_gather(member, in, out, counts, dtype, std::move(done));
      case Operation::all_to_all: {
        std::vector<size_t> send_counts = matrix[member], receive_counts;
        for (const std::vector<size_t>& row : matrix) receive_counts.push_back(row[member]);
        return communicator.all_to_all(member, in, out, send_counts, receive_counts, dtype, std::move(done));
      }
    }
  }
};

template <typename T>
T value_at(uint64_t seed, uint64_t index) {
  const float u = uniform_at(seed, index);
  if constexpr (std::is_floating_point_v<T>) {
    return std::round((u * 16 - 8) * 64) / 64;  // a few fractional bits: sums are exact
  } else {
    return static_cast<T>(u * 2000) - 1000;
  }
}

template <typename T>
T reduced(T a, T b, ReduceOp op) {
  return op == ReduceOp::sum ? a + b : std::max(a, b);
}

template <typename T>
T* as(std::vector<std::byte>& bytes) {
  return reinterpret_cast<T*>(bytes.data());
}

inline size_t sum_of(const std::vector<size_t>& counts) {
  size_t total = 0;
  for (size_t c : counts) total += c;
  return total;
}

// Fills the inputs and computes the definition for element type T.
template <typename T>
void define(Collective& c, uint64_t seed) {
  const int n = static_cast<int>(c.send.size());
  std::vector<size_t> send_counts(n), receive_counts(n);
  for (int m = 0; m < n; ++m) {
    switch (c.operation) {
      case Operation::all_reduce:
        send_counts[m] = receive_counts[m] = c.count;
        break;
      case Operation::reduce_scatter:
        send_counts[m] = sum_of(c.counts), receive_counts[m] = c.counts[m];
        break;
      case Operation::all_gather:
        send_counts[m] = c.counts[m], receive_counts[m] = sum_of(c.counts);
        break;
      case Operation::all_to_all:
        send_counts[m] = sum_of(c.matrix[m]);
        for (int i = 0; i < n; ++i) receive_counts[m] += c.matrix[i][m];
        break;
    }
    c.send[m].resize(send_counts[m] * sizeof(T));
    c.received[m].assign(receive_counts[m] * sizeof(T), std::byte{0x7f});  // not a result by chance
    c.expected[m].resize(receive_counts[m] * sizeof(T));
    for (size_t i = 0; i < send_counts[m]; ++i) as<T>(c.send[m])[i] = value_at<T>(seed * 64 + m, i);
  }
  // Element `index` of the members' inputs reduced (exact in any order for these values).
  const auto reduction = [&](size_t index) {
    T total = as<T>(c.send[0])[index];
    for (int m = 1; m < n; ++m) total = reduced(total, as<T>(c.send[m])[index], c.reduce);
    return total;
  };
  for (int m = 0; m < n; ++m) {
    T* out = as<T>(c.expected[m]);
    switch (c.operation) {
      case Operation::all_reduce:
        for (size_t i = 0; i < c.count; ++i) out[i] = reduction(i);
        break;
      case Operation::reduce_scatter: {
        size_t offset = 0;
        for (int j = 0; j < m; ++j) offset += c.counts[j];
        for (size_t i = 0; i < c.counts[m]; ++i) out[i] = reduction(offset + i);
        break;
      }
      case Operation::all_gather:
        for (int j = 0; j < n; ++j) {
          if (!c.send[j].empty()) std::memcpy(out, c.send[j].data(), c.send[j].size());  // no null pointers
          out += c.counts[j];
        }
        break;
      case Operation::all_to_all:
        for (int i = 0; i < n; ++i) {  // member i's chunk m, after the chunks before it
          size_t offset = 0;
          for (int j = 0; j < m; ++j) offset += c.matrix[i][j];
          if (c.matrix[i][m] > 0) std::memcpy(out, as<T>(c.send[i]) + offset, c.matrix[i][m] * sizeof(T));
          out += c.matrix[i][m];
        }
        break;
    }
  }
}

// Uneven counts with a zero among them, rotated by `seed` so the zero falls on every member.
inline constexpr size_t kCounts[] = {13, 0, 29, 5, 40};
inline size_t count_at(int index) { return kCounts[index % 5]; }

inline Collective make_collective(Operation operation, DType dtype, ReduceOp reduce, int members, uint64_t seed,
                                  size_t count = 0) {
  Collective c{.operation = operation, .dtype = dtype, .reduce = reduce, .count = count};
  for (int j = 0; j < members; ++j) c.counts.push_back(count_at(j + static_cast<int>(seed)));
  if (operation == Operation::all_to_all) {
    c.matrix.assign(members, std::vector<size_t>(members));
    for (int i = 0; i < members; ++i) {
      for (int j = 0; j < members; ++j) c.matrix[i][j] = count_at(2 * i + 3 * j + static_cast<int>(seed));
    }
  }
  if (operation != Operation::reduce_scatter && operation != Operation::all_gather) c.counts.clear();
  c.send.resize(members), c.received.resize(members), c.expected.resize(members);
  switch (dtype) {
    case DType::f32:
      define<float>(c, seed);
      break;
    case DType::i32:
      define<int32_t>(c, seed);
      break;
    case DType::i64:
      define<int64_t>(c, seed);
      break;
    case DType::boolean:
      CHECK(operation == Operation::all_gather || operation == Operation::all_to_all);
      define<int8_t>(c, seed);
      break;
    case DType::f16:  // moved, never reduced: its bit patterns stand in
    case DType::bf16:
      CHECK(operation == Operation::all_gather || operation == Operation::all_to_all);
      define<int16_t>(c, seed);
      break;
  }
  return c;
}

// Success when every member received the definition's bytes; else names the first difference.
inline ::testing::AssertionResult matches_definition(const Collective& c) {
  const size_t element = size_of(c.dtype);
  for (size_t m = 0; m < c.expected.size(); ++m) {
    if (c.received[m].size() != c.expected[m].size()) {
      return ::testing::AssertionFailure() << c.describe() << ": member " << m << " has " << c.received[m].size()
                                           << " bytes, expected " << c.expected[m].size();
    }
    for (size_t offset = 0; offset < c.expected[m].size(); offset += element) {
      if (std::memcmp(c.received[m].data() + offset, c.expected[m].data() + offset, element) == 0) continue;
      const auto text = [&](const std::vector<std::byte>& bytes) -> std::string {
        const std::byte* at = bytes.data() + offset;
        switch (c.dtype) {
          case DType::f32:
            return concat(*reinterpret_cast<const float*>(at));
          case DType::i32:
            return concat(*reinterpret_cast<const int32_t*>(at));
          case DType::i64:
            return concat(*reinterpret_cast<const int64_t*>(at));
          default:
            return concat("bits ", *reinterpret_cast<const uint16_t*>(at));
        }
      };
      const std::string got = text(c.received[m]), wanted = text(c.expected[m]);
      return ::testing::AssertionFailure() << c.describe() << ": member " << m << ", element " << offset / element
                                           << " is " << got << ", expected " << wanted;
    }
  }
  return ::testing::AssertionSuccess();
}

// Every member calls `c` (in an order that `seed` shuffles: the calls' order must not matter)
// and waits for each done.
inline ::testing::AssertionResult run(Group& group, Collective& c, uint64_t seed) {
  std::vector<int> order(group.size());
  for (int m = 0; m < group.size(); ++m) order[m] = m;
  std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<unsigned>(seed)));
  Completions completions(group.size());
  for (int m : order) c.issue(group.of(m), m, completions.of(m));
  if (::testing::AssertionResult done = completions.all_succeeded(); !done) return done << " (" << c.describe() << ")";
  return matches_definition(c);
}

}  // namespace tessel::testing
