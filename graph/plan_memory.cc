// Static memory layout of a device plan, and the control edges that make sharing safe.
#include <glog/logging.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "graph/plan_builder.h"

namespace tessel::plan_builder {

namespace {
constexpr int kSearchBudget = 4096;  // actors one reaches() query visits at most
}  // namespace

StepOrder::StepOrder(int actors) : successors_(actors), visited_(actors, 0) {}

void StepOrder::add_edge(int from, int to) {
  CHECK_LT(from, to) << "an edge against the schedule";
  successors_[from].push_back(to);
}

bool StepOrder::reaches(int from, int to) const {
  if (from >= to) return false;
  if (++query_ == 0) std::fill(visited_.begin(), visited_.end(), 0), query_ = 1;
  frontier_.assign(1, from);
  visited_[from] = query_;
  int visited = 1;
  while (!frontier_.empty()) {
    const int actor = frontier_.back();
    frontier_.pop_back();
    for (int next : successors_[actor]) {
      if (next == to) return true;
      if (next > to || visited_[next] == query_) continue;  // edges only go forward
      if (++visited > kSearchBudget) return false;
      visited_[next] = query_;
      frontier_.push_back(next);
    }
  }
  return false;
}

namespace {

constexpr int64_t kForever = std::numeric_limits<int64_t>::max();

// One register buffer: output `output` of actor `actor`, register `index`.
struct Block {
  int actor = 0, output = 0, index = 0;
  int64_t bytes = 0;  // aligned
  int64_t first = 0, last = 0;
  bool shared = false;
  int64_t offset = -1;

  bool lives_with(const Block& other) const { return first <= other.last && other.first <= last; }
  bool overlaps_bytes(const Block& other) const {
    return offset < other.offset + other.bytes && other.offset < offset + bytes;
  }
};

// The lowest offset where `block` fits beside every placed block alive at the same time.
int64_t first_fit(const Block& block, const std::vector<Block*>& placed) {
  std::vector<std::pair<int64_t, int64_t>> taken;  // [begin, end)
  for (const Block* other : placed) {
    if (block.lives_with(*other)) taken.emplace_back(other->offset, other->offset + other->bytes);
  }
  std::sort(taken.begin(), taken.end());
  int64_t offset = 0;
  for (const auto& [begin, end] : taken) {
    if (begin >= offset + block.bytes) break;
    offset = std::max(offset, end);
  }
  return offset;
}

// The actors that read a block's bytes in a step: its consumers, or its writer if none.
std::vector<int> readers_of(const proto::DevicePlan& device, const Block& block) {
  std::vector<int> readers;
  for (const proto::Endpoint& consumer : device.actors(block.actor).outputs(block.output).consumers()) {
    readers.push_back(consumer.actor());
  }
  if (readers.empty()) readers.push_back(block.actor);
  return readers;
}

}  // namespace

std::vector<ControlEdge> lay_out_memory(proto::DevicePlan& device, const std::vector<int>& device_of, int device_index,
                                        StepOrder& order, ArenaSize& size) {
  std::vector<Block> blocks;
  for (const proto::ActorDef& actor : device.actors()) {
    if (device_of[actor.id()] != device_index) continue;
    if (actor.kind() == proto::VARIABLE) continue;  // variables live in their own arena
    if (actor.kind() == proto::SEND) continue;      // its output is the RECV's registers
    for (int o = 0; o < actor.outputs_size(); ++o) {
      const proto::OutputDef& output = actor.outputs(o);
      if (output.control()) continue;
      for (int r = 0; r < output.register_count(); ++r) {
        Block block{.actor = actor.id(), .output = o, .index = r, .bytes = aligned(output.register_bytes())};
        block.shared = output.shared();
        block.first = block.shared ? output.first_use() : 0;
        block.last = block.shared ? output.last_use() : kForever;
        blocks.push_back(block);
      }
    }
  }
  // Largest first, then earliest: the usual greedy order for interval packing.
  std::vector<Block*> by_size;
  for (Block& block : blocks) by_size.push_back(&block);
  std::stable_sort(by_size.begin(), by_size.end(), [](const Block* a, const Block* b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->first < b->first;
  });
  std::vector<Block*> placed;
  int64_t arena = 0, total = 0;
  for (Block* block : by_size) {
    block->offset = first_fit(*block, placed);
    placed.push_back(block);
    arena = std::max(arena, block->offset + block->bytes);
    total += block->bytes;
  }
  size.arena_bytes = arena;
  size.register_bytes = total;
  for (const Block& block : blocks) {
    proto::OutputDef* output = device.mutable_actors(block.actor)->mutable_outputs(block.output);
    if (output->offsets_size() <= block.index) output->mutable_offsets()->Resize(block.index + 1, 0);
    output->set_offsets(block.index, block.offset);
  }

  // Bytes shared by A (earlier) and B (later): within a step B's writer waits for A's
  // readers; across steps A's writer (step k+1) waits for B's readers (step k). Ordering each
  // owner of some bytes after the one before it, and the first owner of the next step after
  // the last of this one, orders every pair (each waits for the next through the data edges
  // from a writer to its readers), so one sweep in lifetime order over who owns which bytes
  // finds every edge needed.
  struct Owners {
    int64_t end = 0;
    const Block* first = nullptr;  // of these bytes, in the step
    const Block* last = nullptr;
  };
  std::map<int64_t, Owners> owned;  // disjoint byte ranges by start
  std::vector<const Block*> by_lifetime;
  for (const Block& block : blocks) {
    if (block.shared) by_lifetime.push_back(&block);
  }
  std::stable_sort(by_lifetime.begin(), by_lifetime.end(),
                   [](const Block* a, const Block* b) { return a->first < b->first; });
  std::set<ControlEdge> within;
  const auto order_after = [&](const Block& a, const Block& b) {  // b's writer after a's readers
    CHECK_LT(a.last, b.first) << "registers with overlapping lifetimes share bytes";
    for (int reader : readers_of(device, a)) {
      if (reader != b.actor && !order.reaches(reader, b.actor)) {
        order.add_edge(reader, b.actor);
        within.insert({reader, b.actor, 0});
      }
    }
  };
  // Splits the ranges at `at`, so that a range starts there if one covers it.
  const auto split_at = [&](int64_t at) {
    auto it = owned.upper_bound(at);
    if (it == owned.begin()) return;
    --it;
    if (it->first < at && at < it->second.end) {
      Owners tail = it->second;
      it->second.end = at;
      owned.emplace(at, tail);
    }
  };
  for (const Block* block : by_lifetime) {
    const int64_t begin = block->offset, end = block->offset + block->bytes;
    split_at(begin);
    split_at(end);
    std::set<const Block*> before;
    int64_t covered = begin;
    std::vector<std::pair<int64_t, Owners>> pieces;
    for (auto it = owned.lower_bound(begin); it != owned.end() && it->first < end; it = owned.erase(it)) {
      if (it->first > covered) pieces.push_back({covered, {it->first, block, block}});  // bytes new to the step
      before.insert(it->second.last);
      pieces.push_back({it->first, {it->second.end, it->second.first, block}});
      covered = it->second.end;
    }
    if (covered < end) pieces.push_back({covered, {end, block, block}});
    for (const auto& [start, owners] : pieces) owned.emplace(start, owners);
    for (const Block* previous : before) order_after(*previous, *block);
  }
  std::vector<ControlEdge> edges(within.begin(), within.end());
  std::map<int, std::set<int>> back;  // first owner's writer -> last owner's readers
  for (const auto& [start, owners] : owned) {
    if (owners.first == owners.last) continue;
    for (int reader : readers_of(device, *owners.last)) back[owners.first->actor].insert(reader);
  }
  for (const auto& [writer, readers] : back) {
    for (int reader : readers) {
      // A later reader that this one reaches in the same step already implies its wait.
      const bool implied = std::any_of(readers.begin(), readers.end(),
                                       [&](int other) { return other != reader && order.reaches(reader, other); });
      if (!implied) edges.push_back({reader, writer, 1});
    }
  }
  return edges;
}

void add_control_edges(proto::DevicePlan& device, const std::vector<ControlEdge>& edges) {
  // One control output per (actor, initial tokens), in the order the edges came.
  std::map<std::pair<int, int>, int> outputs;
  for (const ControlEdge& edge : edges) {
    proto::ActorDef* from = device.mutable_actors(edge.from);
    auto [it, added] = outputs.try_emplace({edge.from, edge.initial_tokens}, from->outputs_size());
    if (added) {
      proto::OutputDef* output = from->add_outputs();
      output->set_control(true);
      output->set_register_count(1);
      output->set_initial_tokens(edge.initial_tokens);
    }
    proto::ActorDef* to = device.mutable_actors(edge.to);
    proto::OutputDef* output = from->mutable_outputs(it->second);
    proto::Endpoint* consumer = output->add_consumers();
    consumer->set_actor(edge.to);
    consumer->set_port(to->inputs_size());
    proto::InputDef* input = to->add_inputs();
    input->mutable_producer()->set_actor(edge.from);
    input->mutable_producer()->set_port(it->second);
    input->set_control(true);
    input->set_initial_tokens(edge.initial_tokens);
  }
}

}  // namespace tessel::plan_builder
