// Static memory layout of a device plan, and the control edges that make sharing safe.
#include <glog/logging.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "graph/plan_builder.h"

namespace tessel::plan_builder {

Reachability::Reachability(int actors) : words_((actors + 63) / 64), reach_(actors, std::vector<uint64_t>(words_)) {}

bool Reachability::reaches(int from, int to) const { return (reach_[from][to / 64] >> (to % 64)) & 1; }

void Reachability::add_edge(int from, int to) {
  CHECK_LT(from, to) << "an edge against the schedule";
  if (reaches(from, to)) return;
  std::vector<uint64_t> gained = reach_[to];
  gained[to / 64] |= uint64_t{1} << (to % 64);
  for (int actor = 0; actor <= from; ++actor) {
    if (actor != from && !reaches(actor, from)) continue;
    for (int w = 0; w < words_; ++w) reach_[actor][w] |= gained[w];
  }
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
                                        Reachability& reach, ArenaSize& size) {
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
  std::vector<Block*> order;
  for (Block& block : blocks) order.push_back(&block);
  std::stable_sort(order.begin(), order.end(), [](const Block* a, const Block* b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->first < b->first;
  });
  std::vector<Block*> placed;
  int64_t arena = 0, total = 0;
  for (Block* block : order) {
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
  // readers; across steps A's writer (step k+1) waits for B's readers (step k).
  std::set<ControlEdge> within;
  std::map<int, std::set<int>> back;  // A's writer -> B's readers
  for (size_t i = 0; i < blocks.size(); ++i) {
    for (size_t j = i + 1; j < blocks.size(); ++j) {
      if (!blocks[i].shared || !blocks[j].shared || !blocks[i].overlaps_bytes(blocks[j])) continue;
      const bool i_first = blocks[i].last < blocks[j].first;
      const Block& a = i_first ? blocks[i] : blocks[j];
      const Block& b = i_first ? blocks[j] : blocks[i];
      CHECK_LT(a.last, b.first) << "registers with overlapping lifetimes share bytes";
      for (int reader : readers_of(device, a)) {
        if (reader != b.actor && !reach.reaches(reader, b.actor)) {
          reach.add_edge(reader, b.actor);
          within.insert({reader, b.actor, 0});
        }
      }
      for (int reader : readers_of(device, b)) back[a.actor].insert(reader);
    }
  }
  std::vector<ControlEdge> edges(within.begin(), within.end());
  for (const auto& [writer, readers] : back) {
    for (int reader : readers) {
      // A later reader that this one reaches in the same step already implies its wait.
      const bool implied = std::any_of(readers.begin(), readers.end(),
                                       [&](int other) { return other != reader && reach.reaches(reader, other); });
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
