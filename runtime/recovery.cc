#include "runtime/recovery.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "core/error.h"
#include "core/tensor.h"
#include "runtime/checkpoint.h"
#include "sbp/sbp.h"

namespace tessel::recovery {
namespace {

size_t words_for(size_t bytes) { return (bytes + 7) / 8; }

// A box as int64 words: the axes, the starts, the extents.
void put_box(std::vector<int64_t>& out, const std::vector<int64_t>& starts, const Shape& shape) {
  out.push_back(static_cast<int64_t>(starts.size()));
  out.insert(out.end(), starts.begin(), starts.end());
  for (int64_t extent : shape.dims()) out.push_back(extent);
}

// Reads what put_box wrote, checking every bound: the words come from other ranks.
class Reader {
 public:
  Reader(const std::vector<int64_t>& words, int from) : words_(words), from_(from) {}
  bool done() const { return at_ >= words_.size(); }
  int64_t next() {
    if (at_ >= words_.size()) throw Error::DataLoss(concat("recovery: rank ", from_, "'s description is truncated"));
    return words_[at_++];
  }
  int64_t count(int64_t limit) {
    const int64_t value = next();
    if (value < 0 || value > limit)
      throw Error::DataLoss(concat("recovery: rank ", from_, " described ", value, " items, expected 0 to ", limit));
    return value;
  }
  // A box of a variable of `whole` shape: as many axes, and inside it.
  Region box(const Shape& whole) {
    const int64_t axes = count(16);
    if (axes != whole.rank())
      throw Error::DataLoss(
          concat("recovery: rank ", from_, " described a box of ", axes, " axes in a variable of ", whole.rank()));
    Region region;
    for (int64_t i = 0; i < axes; ++i) region.starts.push_back(count(whole.dims()[i]));
    for (int64_t i = 0; i < axes; ++i) region.extents.push_back(count(whole.dims()[i] - region.starts[i]));
    return region;
  }

 private:
  const std::vector<int64_t>& words_;
  int from_;
  size_t at_ = 0;
};

Region region_of(const std::vector<int64_t>& starts, const Shape& shape) { return {starts, shape.dims()}; }

}  // namespace

void Memory::begin_epoch(const Share& share, checkpoint::RankChannel& channel) {
  share_ = share;
  const int me = share.rank, ranks = share.ranks;
  const std::vector<std::vector<int64_t>> nodes = channel.all_gather({share.node}, "gather the ranks' nodes");
  std::vector<int> node_of(ranks);
  for (int r = 0; r < ranks; ++r) node_of[r] = nodes[r].empty() ? 0 : static_cast<int>(nodes[r][0]);
  const bool several_nodes = std::any_of(node_of.begin(), node_of.end(), [&](int n) { return n != node_of[0]; });
  // Each rank's buddy: the next rank on another node, or on one node the next rank.
  const auto buddy_of = [&](int r) {
    if (ranks == 1) return -1;
    for (int step = 1; step < ranks; ++step) {
      const int other = (r + step) % ranks;
      if (!several_nodes || node_of[other] != node_of[r]) return other;
    }
    return -1;
  };
  buddy_ = buddy_of(me);
  exposed_.clear();
  std::vector<int64_t> mine;  // the exposed slices: variable, box, bytes
  for (size_t i = 0; i < share.slices.size() && buddy_ >= 0; ++i) {
    const Slice& slice = share.slices[i];
    const bool elsewhere = std::any_of(slice.ranks.begin(), slice.ranks.end(), [&](int r) {
      return r != me && (several_nodes ? node_of[r] != node_of[me] : true);
    });
    if (elsewhere) continue;
    exposed_.push_back(i);
    mine.push_back(slice.variable);
    put_box(mine, slice.starts, slice.shape);
    mine.push_back(static_cast<int64_t>(slice.shape.numel() * share.element_bytes.at(slice.variable)));
  }
  const std::vector<std::vector<int64_t>> described = channel.all_gather(mine, "describe the slices for buddies");
  incoming_.clear();
  for (int r = 0; r < ranks; ++r) {
    if (r == me || buddy_of(r) != me) continue;
    Reader reader(described[r], r);
    while (!reader.done()) {
      const int variable = static_cast<int>(reader.count(static_cast<int64_t>(share.names.size()) - 1));
      const Region box = reader.box(share.whole_shapes.at(variable));
      Incoming in{.from = r, .variable = variable, .starts = box.starts, .shape = box.shape()};
      in.bytes = static_cast<size_t>(reader.count(int64_t{1} << 40));
      if (in.bytes != static_cast<size_t>(in.shape.numel()) * share.element_bytes.at(variable)) {
        throw Error::DataLoss(concat("recovery: rank ", r, " would send ", in.bytes, " bytes of a box of ",
                                     in.shape.numel(), " elements of '", share.names.at(variable), "'"));
      }
      incoming_.push_back(std::move(in));
    }
  }
}

int64_t Memory::snapshot(int64_t step, checkpoint::RankChannel& channel, int64_t proposal) {
  // Write over the older snapshot, marked empty until it is whole.
  Held& held = held_[0].step <= held_[1].step ? held_[0] : held_[1];
  held.step = -1;
  held.layout = share_.epoch;
  const size_t own = share_.slices.size();
  held.pieces.resize(own + incoming_.size());
  for (size_t i = 0; i < own; ++i) {
    const Slice& slice = share_.slices[i];
    Piece& piece = held.pieces[i];
    piece.variable = slice.variable;
    piece.starts = slice.starts;
    piece.shape = slice.shape;
    piece.bytes.resize(static_cast<size_t>(slice.shape.numel()) * share_.element_bytes[slice.variable]);
    std::memcpy(piece.bytes.data(), slice.copies.at(0), piece.bytes.size());
  }
  if (share_.ranks > 1) {
    std::vector<std::vector<int64_t>> to_each(share_.ranks);
    std::vector<size_t> from_each(share_.ranks, 0);
    sent_ = 0;
    if (buddy_ >= 0) {
      std::vector<int64_t>& out = to_each[buddy_];
      for (size_t i : exposed_) {
        const Piece& piece = held.pieces[i];
        const size_t at = out.size();
        out.resize(at + words_for(piece.bytes.size()));
        std::memcpy(out.data() + at, piece.bytes.data(), piece.bytes.size());
        sent_ += static_cast<int64_t>(piece.bytes.size());
      }
    }
    for (const Incoming& in : incoming_) from_each[in.from] += words_for(in.bytes);
    for (int r = 0; r < share_.ranks; ++r) {  // the proposal goes to everyone, after the pieces
      if (r == share_.rank) continue;
      to_each[r].push_back(proposal);
      from_each[r] += 1;
    }
    const std::vector<std::vector<int64_t>> received =
        channel.all_to_all(to_each, from_each, concat("send step ", step, "'s snapshot to the buddy rank"));
    for (int r = 0; r < share_.ranks; ++r) {
      if (r != share_.rank) proposal = std::max(proposal, received[r].back());
    }
    std::vector<size_t> offset(share_.ranks, 0);
    for (size_t k = 0; k < incoming_.size(); ++k) {
      const Incoming& in = incoming_[k];
      Piece& piece = held.pieces[own + k];
      piece.variable = in.variable;
      piece.starts = in.starts;
      piece.shape = in.shape;
      piece.bytes.resize(in.bytes);
      std::memcpy(piece.bytes.data(), received[in.from].data() + offset[in.from], in.bytes);
      offset[in.from] += words_for(in.bytes);
    }
  }
  held.step = step;
  return proposal;
}

int64_t Memory::restore(const Share& share, checkpoint::RankChannel& channel, std::string* missing) {
  const int me = share.rank, ranks = share.ranks;
  const int64_t variables = static_cast<int64_t>(share.names.size());
  // What this rank holds (each snapshot: step, layout, pieces) and needs (its slices' boxes).
  std::vector<int64_t> mine;
  std::vector<const Held*> valid;
  for (const Held& held : held_) {
    if (held.step >= 0) valid.push_back(&held);
  }
  mine.push_back(static_cast<int64_t>(valid.size()));
  for (const Held* held : valid) {
    mine.push_back(held->step);
    mine.push_back(held->layout);
    mine.push_back(static_cast<int64_t>(held->pieces.size()));
    for (const Piece& piece : held->pieces) {
      mine.push_back(piece.variable);
      put_box(mine, piece.starts, piece.shape);
    }
  }
  mine.push_back(static_cast<int64_t>(share.slices.size()));
  for (const Slice& slice : share.slices) {
    mine.push_back(slice.variable);
    put_box(mine, slice.starts, slice.shape);
  }
  const std::vector<std::vector<int64_t>> described = channel.all_gather(mine, "describe what each rank holds");

  struct Known {
    int rank, variable;
    Region box;
    size_t index;  // in that rank's snapshot
  };
  std::map<std::pair<int64_t, int64_t>, std::vector<Known>> candidates;  // (step, layout) -> pieces
  std::vector<std::vector<std::pair<int, Region>>> needs(ranks);         // per rank: (variable, box)
  for (int r = 0; r < ranks; ++r) {
    Reader reader(described[r], r);
    const int64_t snapshots = reader.count(2);
    for (int64_t k = 0; k < snapshots; ++k) {
      const int64_t step = reader.next(), layout = reader.next();
      const int64_t pieces = reader.count(int64_t{1} << 24);
      std::vector<Known>& known = candidates[{step, layout}];
      for (int64_t p = 0; p < pieces; ++p) {
        const int variable = static_cast<int>(reader.count(variables - 1));
        known.push_back({r, variable, reader.box(share.whole_shapes.at(variable)), static_cast<size_t>(p)});
      }
    }
    const int64_t slices = reader.count(int64_t{1} << 24);
    for (int64_t k = 0; k < slices; ++k) {
      const int variable = static_cast<int>(reader.count(variables - 1));
      needs[r].emplace_back(variable, reader.box(share.whole_shapes.at(variable)));
    }
  }
  // The newest (step, layout) whose distinct pieces cover every variable (the pieces of one
  // layout tile each variable, so covering is counting).
  const std::vector<Known>* chosen = nullptr;
  int64_t chosen_step = -1, chosen_layout = -1;
  std::string first_missing;
  for (auto it = candidates.rbegin(); it != candidates.rend() && chosen == nullptr; ++it) {
    std::vector<std::set<std::vector<int64_t>>> seen(variables);
    std::vector<int64_t> covered(variables, 0);
    for (const Known& piece : it->second) {
      if (seen[piece.variable].insert(piece.box.starts).second) covered[piece.variable] += piece.box.numel();
    }
    std::string lacking;
    for (int64_t v = 0; v < variables && lacking.empty(); ++v) {
      const int64_t whole = share.whole_shapes.at(v).numel();
      if (covered[v] != whole)
        lacking = concat("variable '", share.names[v], "' at step ", it->first.first, ": ", covered[v], " of ", whole,
                         " elements survived");
    }
    if (lacking.empty()) {
      chosen = &it->second;
      chosen_step = it->first.first;
      chosen_layout = it->first.second;
    } else if (first_missing.empty()) {
      first_missing = lacking;
    }
  }
  if (chosen == nullptr) {
    if (missing != nullptr) *missing = first_missing.empty() ? "no rank holds a snapshot" : first_missing;
    return -1;
  }
  // Snapshots newer than the chosen step hold states that the steps after it will make again.
  for (Held& held : held_) {
    if (held.step > chosen_step) held.step = -1;
  }
  const Held* source = nullptr;  // this rank's snapshot of the chosen step, if it has one
  for (const Held* held : valid) {
    if (held->step == chosen_step && held->layout == chosen_layout) source = held;
  }
  // Every transfer, in one order every rank derives alike: for each receiving rank, each of its
  // needed boxes, each distinct piece that meets it, taken from the receiver if it holds the
  // piece, else from the lowest rank that does.
  std::vector<std::vector<int64_t>> to_each(ranks);
  std::vector<size_t> from_each(ranks, 0);
  struct Arrival {
    int from;
    size_t slice;
    Region meet;
  };
  std::vector<Arrival> arrivals;
  const auto element = [&](int variable) { return share.element_bytes.at(variable); };
  const auto offsets_in = [](const Region& meet, const Region& box) {
    std::vector<int64_t> offset(meet.starts.size());
    for (size_t i = 0; i < offset.size(); ++i) offset[i] = meet.starts[i] - box.starts[i];
    return offset;
  };
  for (int r = 0; r < ranks; ++r) {
    for (size_t n = 0; n < needs[r].size(); ++n) {
      const auto& [variable, need] = needs[r][n];
      std::map<std::vector<int64_t>, std::vector<const Known*>> holders;  // distinct piece -> its holders
      for (const Known& piece : *chosen) {
        if (piece.variable == variable) holders[piece.box.starts].push_back(&piece);
      }
      for (const auto& [starts, held_by] : holders) {
        const Region meet = held_by[0]->box.intersect(need);
        if (meet.empty()) continue;
        const Known* from = held_by[0];
        for (const Known* candidate : held_by) {
          if (candidate->rank == r) from = candidate;
        }
        if (from->rank != me && r != me) continue;  // neither end is here
        const size_t bytes = static_cast<size_t>(meet.numel()) * element(variable);
        if (from->rank == r) {  // a copy within this rank
          const Piece& piece = source->pieces[from->index];
          copy_block(piece.bytes.data(), piece.shape, offsets_in(meet, from->box), share.slices[n].copies.at(0),
                     share.slices[n].shape, offsets_in(meet, need), meet.extents, element(variable));
        } else if (from->rank == me) {  // cut the meeting out of the piece, for rank r
          const Piece& piece = source->pieces[from->index];
          std::vector<int64_t>& out = to_each[r];
          const size_t at = out.size();
          out.resize(at + words_for(bytes));
          copy_block(piece.bytes.data(), piece.shape, offsets_in(meet, from->box),
                     reinterpret_cast<std::byte*>(out.data() + at), meet.shape(),
                     std::vector<int64_t>(meet.starts.size(), 0), meet.extents, element(variable));
        } else {  // r == me: it comes from another rank
          from_each[from->rank] += words_for(bytes);
          arrivals.push_back({from->rank, n, meet});
        }
      }
    }
  }
  const std::vector<std::vector<int64_t>> received =
      channel.all_to_all(to_each, from_each, concat("exchange step ", chosen_step, "'s slices"));
  std::vector<size_t> offset(ranks, 0);
  for (const Arrival& arrival : arrivals) {
    const Slice& slice = share.slices[arrival.slice];
    const size_t bytes = static_cast<size_t>(arrival.meet.numel()) * element(slice.variable);
    copy_block(reinterpret_cast<const std::byte*>(received[arrival.from].data() + offset[arrival.from]),
               arrival.meet.shape(), std::vector<int64_t>(arrival.meet.starts.size(), 0), slice.copies.at(0),
               slice.shape, offsets_in(arrival.meet, region_of(slice.starts, slice.shape)), arrival.meet.extents,
               element(slice.variable));
    offset[arrival.from] += words_for(bytes);
  }
  for (const Slice& slice : share.slices) {  // the other devices' copies of each slice
    const size_t bytes = static_cast<size_t>(slice.shape.numel()) * element(slice.variable);
    for (size_t c = 1; c < slice.copies.size(); ++c) std::memcpy(slice.copies[c], slice.copies[0], bytes);
  }
  return chosen_step;
}

int64_t Memory::newest_step() const { return std::max(held_[0].step, held_[1].step); }

int64_t Memory::bytes_held() const {
  int64_t bytes = 0;
  for (const Held& held : held_) {
    for (const Piece& piece : held.pieces) bytes += static_cast<int64_t>(piece.bytes.size());
  }
  return bytes;
}

int64_t Memory::bytes_sent() const { return sent_; }

}  // namespace tessel::recovery
