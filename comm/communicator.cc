#include "comm/communicator.h"

#include <glog/logging.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "comm/tags.h"
#include "comm/transport.h"
#include "core/error.h"

namespace tessel::comm {

namespace {

constexpr int kMaxMembers = 1 << 12;
constexpr int kMaxChunks = 1 << 4;  // per piece: the chunk index has 4 bits of the tag
constexpr int kMaxPhases = 15;      // the phase has 4 bits, and the last value is for send/receive
constexpr int kPointToPointPhase = 15;
// An all-reduce of at most this many bytes over more than 2 members goes by recursive doubling
// (log n rounds of whole-buffer exchanges), where latency, not bandwidth, is its cost.
constexpr size_t kDoublingBytes = size_t{64} << 10;

// The low 40 bits of a piece's tag: source and target member, phase, chunk and the operation's
// sequence number modulo 256 (members are never that many operations apart: each one waits for
// its peers' pieces of the operation before it can finish it).
uint64_t piece_tag(int space, int group, int source, int target, int phase, int chunk, uint64_t sequence) {
  return tag_prefix(TagKind::collective, space, group) | static_cast<uint64_t>(source) << 28 |
         static_cast<uint64_t>(target) << 16 | static_cast<uint64_t>(phase & 0xf) << 12 |
         static_cast<uint64_t>(chunk & 0xf) << 8 | (sequence & 0xff);
}

struct Piece {
  std::byte* data = nullptr;
  size_t bytes = 0;
};

// One round of exchange: this member's piece for each member (its own included), and the
// piece it takes from each; with `reduce`, pieces after the first are reduced into the target.
struct Phase {
  std::vector<Piece> send, receive;  // per member
  bool reduce = false;
  // The member whose piece is taken first, and lands as it is (copied, or received in place):
  // one on another rank where there is one, which saves a copy; else the first in member order.
  int first = -1;
  std::vector<int> order{};  // the members in the order their pieces are taken: first, then the rest
};

template <typename T>
void reduce_into(std::byte* target, const std::byte* source, size_t bytes, ReduceOp op) {
  T* out = reinterpret_cast<T*>(target);
  const T* in = reinterpret_cast<const T*>(source);
  const size_t count = bytes / sizeof(T);
  if (op == ReduceOp::sum) {
    for (size_t i = 0; i < count; ++i) out[i] += in[i];
  } else {
    for (size_t i = 0; i < count; ++i) out[i] = std::max(out[i], in[i]);
  }
}

// bf16 and f16: each element is widened to f32, combined, and rounded back (to nearest even), so
// a reduction over n members rounds n - 1 times (as NCCL's does), in an order the members' layout
// over the ranks fixes: the same bits on every run of one layout, not across layouts.
template <uint16_t (*narrow)(float), float (*widen)(uint16_t)>
void reduce_rounded(std::byte* target, const std::byte* source, size_t bytes, ReduceOp op) {
  uint16_t* out = reinterpret_cast<uint16_t*>(target);
  const uint16_t* in = reinterpret_cast<const uint16_t*>(source);
  const size_t count = bytes / sizeof(uint16_t);
  for (size_t i = 0; i < count; ++i) {
    const float a = widen(out[i]), b = widen(in[i]);
    out[i] = narrow(op == ReduceOp::sum ? a + b : std::max(a, b));
  }
}

void combine(std::byte* target, const std::byte* source, size_t bytes, bool reduce, DType dtype, ReduceOp op) {
  if (!reduce) {
    if (target != source) std::memcpy(target, source, bytes);
    return;
  }
  switch (dtype) {
    case DType::f32:
      return reduce_into<float>(target, source, bytes, op);
    case DType::i32:
      return reduce_into<int32_t>(target, source, bytes, op);
    case DType::i64:
      return reduce_into<int64_t>(target, source, bytes, op);
    case DType::bf16:
      return reduce_rounded<float_to_bf16, bf16_to_float>(target, source, bytes, op);
    case DType::f16:
      return reduce_rounded<float_to_f16, f16_to_float>(target, source, bytes, op);
    default:
      LOG(FATAL) << "a collective reduces " << dtype;  // refused when the operation was called
  }
}

// Each chunk from another rank is reduced on its own as it arrives, so a chunk holds whole
// elements: its size is a multiple of 8 bytes, the largest element.
size_t chunk_size(size_t bytes, size_t chunk_bytes) {
  constexpr size_t kElementMultiple = 8;
  const size_t chunk = std::max(std::max<size_t>(chunk_bytes, 1), (bytes + kMaxChunks - 1) / kMaxChunks);
  return (chunk + kElementMultiple - 1) / kElementMultiple * kElementMultiple;
}

}  // namespace

struct CpuCommunicator::State : std::enable_shared_from_this<CpuCommunicator::State> {
  // An operation: a collective (`point_to_point` false, every member takes part) or the k-th
  // transfer from `source` to `target`.
  struct Key {
    bool point_to_point = false;
    int source = 0, target = 0;
    uint64_t sequence = 0;
    auto operator<=>(const Key&) const = default;
  };

  // One local member's part of an operation.
  struct MemberOp {
    bool arrived = false, finished = false;
    std::vector<Phase> phases;
    DType dtype = DType::f32;
    ReduceOp op = ReduceOp::sum;
    Done done;
    int phase = 0;                     // the phase being received (phases.size(): all received)
    int next = 0;                      // the position in the phase's order of the piece taken next
    bool busy = false, again = false;  // a worker is advancing it; more came meanwhile
    int sends_in_flight = 0;
    int local_reads = 0;  // pieces of this member that local members still have to take
    // Pieces from other ranks, in the current phase: chunks arrived and taken per member.
    std::vector<std::vector<char>> arrived_chunks;
    std::vector<size_t> next_chunk;
    std::vector<size_t> chunk;                               // per member: the chunk size of its piece
    std::vector<std::vector<std::byte>>* scratch = nullptr;  // per member: pieces to reduce
    std::vector<uint64_t> receives;                          // posted (cancelling one that completed does nothing)
  };

  struct Op {
    std::vector<MemberOp> members;
    int expected = 0, finished = 0;  // local members taking part, and those done
  };

  CommunicatorOptions options;
  int size = 0;
  std::vector<bool> local;
  std::mutex mutex;
  std::condition_variable idle;
  int combining = 0;         // workers copying, reducing or running a `done` outside the lock
  std::string disagreement;  // set when two members' calls do not match
  bool aborted = false;
  std::string why;
  std::map<Key, Op> ops;
  std::vector<uint64_t> next_sequence;                                // per member: its next collective
  std::map<std::pair<int, int>, uint64_t> next_send, next_receive;    // (source, target) -> the next
  std::vector<std::vector<std::vector<std::byte>>> scratch;           // per local member, per member
  std::vector<std::vector<std::vector<std::byte>>> doubling_scratch;  // per member, per round

  int rank_of(int member) const { return options.member_ranks[member]; }

  void post(std::function<void()> task) { options.workers->post(std::move(task)); }
  // From the transport's progress thread: onto the workers unless aborted, since the owner may
  // destroy the workers once abort() (or the destructor) returned.
  void post_from_transport(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!aborted) post(std::move(task));
  }

  void start(const Key& key, int member, std::vector<Phase> phases, DType dtype, ReduceOp op, Done done) {
    std::unique_lock<std::mutex> lock(mutex);
    if (aborted) {
      post([done = std::move(done), why = why] { done(why); });
      return;
    }
    Op& operation = ops[key];
    if (operation.members.empty()) {
      operation.members.resize(size);
      if (key.point_to_point) {
        operation.expected = static_cast<int>(local[key.source]) + static_cast<int>(local[key.target]);
      } else {
        operation.expected = static_cast<int>(std::count(local.begin(), local.end(), true));
      }
    }
    MemberOp& me = operation.members[member];
    CHECK(!me.arrived) << "member " << member << " of communicator " << options.group << " called one operation twice";
    me.arrived = true;
    me.phases = std::move(phases);
    me.dtype = dtype;
    me.op = op;
    me.done = std::move(done);
    me.scratch = &scratch[member];
    for (Phase& phase : me.phases) {
      for (int j = 0; j < size; ++j) {
        if (j != member && local[j] && phase.send[j].bytes > 0) ++me.local_reads;
        if (phase.receive[j].bytes == 0) continue;
        if (phase.first < 0 || (local[phase.first] && !local[j])) phase.first = j;
      }
      if (phase.first >= 0) phase.order.push_back(phase.first);
      for (int j = 0; j < size; ++j) {
        if (j != phase.first) phase.order.push_back(j);
      }
    }
    start_phase(key, member, me);
    lock.unlock();
    // Local members may have waited for this one's pieces.
    for (int j = 0; j < size; ++j) {
      if (local[j]) post([self = shared_from_this(), key, j] { self->advance(key, j); });
    }
  }

  // Posts the receives of this member's current phase from other ranks and sends its pieces to them.
  void start_phase(const Key& key, int member, MemberOp& me) {
    if (me.phase >= static_cast<int>(me.phases.size())) return;
    const Phase& phase = me.phases[me.phase];
    const int tag_phase = key.point_to_point ? kPointToPointPhase : me.phase;
    me.arrived_chunks.assign(size, {});
    me.next_chunk.assign(size, 0);
    me.chunk.assign(size, 0);
    for (int j = 0; j < size; ++j) {
      if (local[j]) continue;
      const Piece& out = phase.send[j];
      if (out.bytes > 0) {
        const size_t chunk = chunk_size(out.bytes, options.chunk_bytes);
        for (size_t offset = 0, c = 0; offset < out.bytes; offset += chunk, ++c) {
          ++me.sends_in_flight;
          options.transport->send(
              rank_of(j),
              piece_tag(options.tag_space, options.group, member, j, tag_phase, static_cast<int>(c), key.sequence),
              out.data + offset, std::min(chunk, out.bytes - offset),
              [self = shared_from_this(), key, member](const Completion& done) {
                self->post_from_transport([self, key, member, done] { self->on_sent(key, member, done); });
              },
              options.transport_group);
        }
      }
      const Piece& in = phase.receive[j];
      if (in.bytes == 0) continue;
      const size_t chunk = chunk_size(in.bytes, options.chunk_bytes);
      const size_t chunks = (in.bytes + chunk - 1) / chunk;
      me.chunk[j] = chunk;
      me.arrived_chunks[j].assign(chunks, 0);
      std::byte* target = in.data;
      if (phase.reduce && j != phase.first) {  // the first piece lands in place; the others are reduced into it
        std::vector<std::byte>& buffer = (*me.scratch)[j];
        if (buffer.size() < in.bytes) buffer.resize(in.bytes);
        target = buffer.data();
      }
      for (size_t c = 0; c < chunks; ++c) {
        const size_t offset = c * chunk, bytes = std::min(chunk, in.bytes - offset);
        const uint64_t id = options.transport->receive(
            piece_tag(options.tag_space, options.group, j, member, tag_phase, static_cast<int>(c), key.sequence),
            ~uint64_t{0}, target + offset, bytes,
            [self = shared_from_this(), key, member, j, c, bytes](const Completion& done) {
              self->post_from_transport(
                  [self, key, member, j, c, bytes, done] { self->on_arrived(key, member, j, c, bytes, done); });
            },
            options.transport_group);
        me.receives.push_back(id);
      }
    }
  }

  void on_sent(const Key& key, int member, const Completion& done) {
    if (!done.ok) return abort(concat("communicator ", options.group, ": member ", member, " sending: ", done.error));
    std::unique_lock<std::mutex> lock(mutex);
    auto it = ops.find(key);
    if (aborted || it == ops.end()) return;
    --it->second.members[member].sends_in_flight;
    finish_if_done(lock, key, member);
  }

  void on_arrived(const Key& key, int member, int source, size_t chunk, size_t bytes, const Completion& done) {
    if (!done.ok)
      return abort(concat("communicator ", options.group, ": member ", member, " receiving from member ", source, ": ",
                          done.error));
    if (done.bytes != bytes) {
      return abort(concat("communicator ", options.group, ": member ", member, " received ", done.bytes,
                          " bytes from member ", source, " where ", bytes, " were expected"));
    }
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = ops.find(key);
      if (aborted || it == ops.end()) return;
      it->second.members[member].arrived_chunks[source][chunk] = 1;
    }
    advance(key, member);
  }

  // Takes the member's pieces in member order as far as they are there, phase after phase.
  void advance(const Key& key, int member) {
    std::unique_lock<std::mutex> lock(mutex);
    auto it = ops.find(key);
    if (aborted || it == ops.end()) return;
    Op& operation = it->second;
    MemberOp& me = operation.members[member];
    if (!me.arrived || me.finished) return;
    if (me.busy) {
      me.again = true;
      return;
    }
    me.busy = true;
    std::vector<int> wake;
    do {
      me.again = false;
      while (!aborted && disagreement.empty() && take_next(lock, key, operation, member, wake)) {
      }
      if (aborted) return;  // the operation is gone
      if (!disagreement.empty()) {
        const std::string why = disagreement;
        lock.unlock();
        return abort(why);
      }
    } while (me.again);
    me.busy = false;
    for (int j : wake) post([self = shared_from_this(), key, j] { self->advance(key, j); });
    finish_if_done(lock, key, member);
  }

  // One piece (or one chunk of one); false when the next one is not there yet.
  bool take_next(std::unique_lock<std::mutex>& lock, const Key& key, Op& operation, int member,
                 std::vector<int>& wake) {
    MemberOp& me = operation.members[member];
    if (me.phase >= static_cast<int>(me.phases.size())) return false;
    const Phase& phase = me.phases[me.phase];
    if (me.next == size) {  // the phase is received: local members may take this one's next pieces
      ++me.phase;
      me.next = 0;
      for (int j = 0; j < size; ++j) {
        if (local[j] && j != member) wake.push_back(j);
      }
      start_phase(key, member, me);
      return true;
    }
    const int j = phase.order[me.next];
    const Piece target = phase.receive[j];
    if (target.bytes == 0) {
      ++me.next;
      return true;
    }
    const bool reduce = phase.reduce && j != phase.first;
    if (local[j]) {
      MemberOp& peer = operation.members[j];
      if (!peer.arrived || peer.phase < me.phase) return false;  // its piece is not final yet
      // Members that called different operations, or counts that disagree, are refused (a
      // plan's bytes are untrusted): the communicator is aborted with the reason.
      if (me.phase >= static_cast<int>(peer.phases.size()) ||
          peer.phases[me.phase].send[member].bytes != target.bytes) {
        disagreement =
            concat("communicator ", options.group, ": member ", j, " and member ", member,
                   " called operations that do not match (a piece of ",
                   me.phase < static_cast<int>(peer.phases.size()) ? peer.phases[me.phase].send[member].bytes : 0,
                   " bytes where ", target.bytes, " are taken)");
        return false;
      }
      const Piece source = peer.phases[me.phase].send[member];
      ++combining;
      lock.unlock();
      combine(target.data, source.data, target.bytes, reduce, me.dtype, me.op);
      lock.lock();
      if (--combining == 0) idle.notify_all();
      if (aborted) return false;
      ++me.next;
      if (j != member && --peer.local_reads == 0) wake.push_back(j);
      return true;
    }
    std::vector<char>& arrived = me.arrived_chunks[j];
    size_t& next_chunk = me.next_chunk[j];
    if (next_chunk < arrived.size() && arrived[next_chunk]) {
      if (reduce) {
        const size_t offset = next_chunk * me.chunk[j];
        const size_t bytes = std::min(me.chunk[j], target.bytes - offset);
        const std::byte* source = (*me.scratch)[j].data() + offset;
        ++combining;
        lock.unlock();
        combine(target.data + offset, source, bytes, true, me.dtype, me.op);
        lock.lock();
        if (--combining == 0) idle.notify_all();
        if (aborted) return false;
      }
      ++next_chunk;
      if (next_chunk == arrived.size()) ++me.next;
      return true;
    }
    return false;
  }

  void finish_if_done(std::unique_lock<std::mutex>& lock, const Key& key, int member) {
    auto it = ops.find(key);
    if (it == ops.end()) return;
    Op& operation = it->second;
    MemberOp& me = operation.members[member];
    if (!me.arrived || me.finished || me.busy || me.phase < static_cast<int>(me.phases.size()) ||
        me.sends_in_flight > 0 || me.local_reads > 0)
      return;
    me.finished = true;
    Done done = std::move(me.done);
    if (++operation.finished == operation.expected) ops.erase(it);
    ++combining;  // abort() waits for it: no `done` runs once abort() returned
    lock.unlock();
    done("");
    lock.lock();
    if (--combining == 0) idle.notify_all();
  }

  void abort(const std::string& reason) {
    std::vector<Done> dones;
    {
      std::unique_lock<std::mutex> lock(mutex);
      if (aborted) return;
      aborted = true;
      why = reason;
      idle.wait(lock, [&] { return combining == 0; });
      for (auto& [key, operation] : ops) {
        for (MemberOp& me : operation.members) {
          if (options.transport != nullptr) {
            for (uint64_t id : me.receives) options.transport->cancel(id);
          }
          if (me.arrived && !me.finished && me.done) dones.push_back(std::move(me.done));
        }
      }
      ops.clear();
    }
    for (const Done& done : dones) done(reason);
  }
};

CpuCommunicator::CpuCommunicator(CommunicatorOptions options) : state_(std::make_shared<State>()) {
  State& s = *state_;
  const int size = static_cast<int>(options.member_ranks.size());
  if (size == 0 || size > kMaxMembers) {
    throw Error::InvalidArgument(
        concat("communicator ", options.group, " has ", size, " members, expected 1 to ", kMaxMembers));
  }
  if (options.group < 0 || options.group >= kTagChannels) {
    throw Error::InvalidArgument(concat("communicator group ", options.group, " is outside 0 to ", kTagChannels - 1,
                                        " (a plan with that many collectives needs fewer, larger ones)"));
  }
  if (options.tag_space < 0 || options.tag_space >= kTagSpaces) {
    throw Error::InvalidArgument(concat("tag space ", options.tag_space, " is outside 0 to ", kTagSpaces - 1));
  }
  if (options.workers == nullptr) throw Error::InvalidArgument("a communicator needs collective workers");
  s.size = size;
  for (int rank : options.member_ranks) s.local.push_back(rank == options.rank);
  if (options.transport == nullptr && std::count(s.local.begin(), s.local.end(), false) > 0) {
    throw Error::InvalidArgument(
        concat("communicator ", options.group, " has members on other ranks, so it needs this rank's transport"));
  }
  s.next_sequence.assign(size, 0);
  s.scratch.resize(size, std::vector<std::vector<std::byte>>(size));
  s.doubling_scratch.resize(size);
  s.options = std::move(options);
}

CpuCommunicator::~CpuCommunicator() { abort("the communicator was closed"); }

int CpuCommunicator::size() const { return state_->size; }

namespace {

std::byte* bytes_at(const void* data, size_t offset) {
  return const_cast<std::byte*>(static_cast<const std::byte*>(data)) + offset;
}

std::vector<Piece> pieces(const void* data, const std::vector<size_t>& counts, size_t element) {
  std::vector<Piece> result;
  size_t offset = 0;
  for (size_t count : counts) {
    result.push_back({bytes_at(data, offset * element), count * element});
    offset += count;
  }
  return result;
}

std::vector<Piece> repeated(const void* data, size_t bytes, int size) {
  return std::vector<Piece>(size, Piece{bytes_at(data, 0), bytes});
}

// Recursive doubling over the largest power of two p <= n members: in round k each of them
// exchanges its whole partial result with member m ^ 2^k and adds the two (a + b and b + a are
// the same bits, so partners, and in the end all p members, hold identical results). The n - p
// members above p first fold their input into member m - p and at the end receive its result.
// Every round writes a fresh buffer (`scratch`, the member's own), so nothing is overwritten
// while a peer may still read it. The phases are numbered alike on every member.
std::vector<Phase> doubling_phases(int n, int member, const void* send, void* recv, size_t bytes,
                                   std::vector<std::vector<std::byte>>& scratch) {
  int p = 1, rounds = 0;
  while (p * 2 <= n) p *= 2, ++rounds;
  CHECK_LE(rounds + 2, kMaxPhases);
  size_t used = 0;
  const auto fresh = [&]() {
    if (scratch.size() <= used) scratch.emplace_back();
    scratch[used].resize(bytes);
    return scratch[used++].data();
  };
  const auto empty = [&](bool reduce) {
    return Phase{.send = std::vector<Piece>(n), .receive = std::vector<Piece>(n), .reduce = reduce};
  };
  std::byte* current = bytes_at(send, 0);
  std::vector<Phase> phases;
  Phase fold = empty(true);
  if (member >= p) {
    fold.send[member - p] = {current, bytes};
  } else if (member < n - p) {
    std::byte* out = fresh();
    fold.send[member] = {current, bytes};
    fold.receive[member] = fold.receive[member + p] = {out, bytes};
    current = out;
  }
  phases.push_back(std::move(fold));
  for (int k = 0; k < rounds; ++k) {
    Phase round = empty(true);
    if (member < p) {
      const int partner = member ^ (1 << k);
      std::byte* out = k + 1 == rounds ? bytes_at(recv, 0) : fresh();
      round.send[member] = round.send[partner] = {current, bytes};
      round.receive[member] = round.receive[partner] = {out, bytes};
      current = out;
    }
    phases.push_back(std::move(round));
  }
  Phase unfold = empty(false);
  if (member >= p) {
    unfold.receive[member - p] = {bytes_at(recv, 0), bytes};
  } else if (member < n - p) {
    unfold.send[member + p] = {bytes_at(recv, 0), bytes};
  }
  phases.push_back(std::move(unfold));
  return phases;
}

}  // namespace

namespace {
// Error text for a reduction of a dtype the reductions do not cover, or empty.
std::string unreducible(DType dtype) {
  if (dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16 || dtype == DType::i32 ||
      dtype == DType::i64) {
    return "";
  }
  return concat("collectives reduce f32, bf16, f16, i32 and i64, not ", dtype);
}
}  // namespace

void CpuCommunicator::all_reduce(int member, const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                                 Done done) {
  if (const std::string error = unreducible(dtype); !error.empty()) return state_->post([done, error] { done(error); });
  const int n = size();
  const size_t element = size_of(dtype);
  if (n > 2 && count * element <= kDoublingBytes) {
    const State::Key key{.sequence = state_->next_sequence.at(member)++};
    std::vector<Phase> phases =
        doubling_phases(n, member, send, recv, count * element, state_->doubling_scratch.at(member));
    return state_->start(key, member, std::move(phases), dtype, op, std::move(done));
  }
  std::vector<size_t> counts(n);
  for (int j = 0; j < n; ++j) counts[j] = count / n + (static_cast<size_t>(j) < count % n ? 1 : 0);
  const std::vector<Piece> chunks = pieces(recv, counts, element);
  Phase reduce_scatter{.send = pieces(send, counts, element),
                       .receive = repeated(chunks[member].data, chunks[member].bytes, n),
                       .reduce = true};
  Phase all_gather{.send = repeated(chunks[member].data, chunks[member].bytes, n), .receive = chunks};
  const State::Key key{.sequence = state_->next_sequence.at(member)++};
  state_->start(key, member, {std::move(reduce_scatter), std::move(all_gather)}, dtype, op, std::move(done));
}

void CpuCommunicator::reduce_scatter(int member, const void* send, void* recv, const std::vector<size_t>& counts,
                                     DType dtype, ReduceOp op, Done done) {
  if (const std::string error = unreducible(dtype); !error.empty()) return state_->post([done, error] { done(error); });
  CHECK_EQ(static_cast<int>(counts.size()), size());
  const size_t element = size_of(dtype);
  Phase phase{.send = pieces(send, counts, element),
              .receive = repeated(recv, counts[member] * element, size()),
              .reduce = true};
  const State::Key key{.sequence = state_->next_sequence.at(member)++};
  state_->start(key, member, {std::move(phase)}, dtype, op, std::move(done));
}

void CpuCommunicator::all_gather(int member, const void* send, void* recv, const std::vector<size_t>& counts,
                                 DType dtype, Done done) {
  CHECK_EQ(static_cast<int>(counts.size()), size());
  const size_t element = size_of(dtype);
  Phase phase{.send = repeated(send, counts[member] * element, size()), .receive = pieces(recv, counts, element)};
  const State::Key key{.sequence = state_->next_sequence.at(member)++};
  state_->start(key, member, {std::move(phase)}, dtype, ReduceOp::sum, std::move(done));
}

void CpuCommunicator::all_to_all(int member, const void* send, void* recv, const std::vector<size_t>& send_counts,
                                 const std::vector<size_t>& recv_counts, DType dtype, Done done) {
  CHECK_EQ(static_cast<int>(send_counts.size()), size());
  CHECK_EQ(static_cast<int>(recv_counts.size()), size());
  const size_t element = size_of(dtype);
  Phase phase{.send = pieces(send, send_counts, element), .receive = pieces(recv, recv_counts, element)};
  const State::Key key{.sequence = state_->next_sequence.at(member)++};
  state_->start(key, member, {std::move(phase)}, dtype, ReduceOp::sum, std::move(done));
}

void CpuCommunicator::send(int member, int peer, const void* data, size_t bytes, Done done) {
  CHECK(peer >= 0 && peer < size() && peer != member);
  Phase phase{.send = std::vector<Piece>(size()), .receive = std::vector<Piece>(size())};
  phase.send[peer] = {bytes_at(data, 0), bytes};
  uint64_t sequence;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    sequence = state_->next_send[{member, peer}]++;
  }
  state_->start({true, member, peer, sequence}, member, {std::move(phase)}, DType::f32, ReduceOp::sum, std::move(done));
}

void CpuCommunicator::receive(int member, int peer, void* data, size_t bytes, Done done) {
  CHECK(peer >= 0 && peer < size() && peer != member);
  Phase phase{.send = std::vector<Piece>(size()), .receive = std::vector<Piece>(size())};
  phase.receive[peer] = {bytes_at(data, 0), bytes};
  uint64_t sequence;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    sequence = state_->next_receive[{peer, member}]++;
  }
  state_->start({true, peer, member, sequence}, member, {std::move(phase)}, DType::f32, ReduceOp::sum, std::move(done));
}

void CpuCommunicator::abort(const std::string& why) { state_->abort(why); }

}  // namespace tessel::comm
