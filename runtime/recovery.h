// Recovery's memory: snapshots of every rank's variables at step boundaries, kept where a lost
// rank's slices survive it, and the exchange that fills a new layout from them (DESIGN.md,
// "Failure and elasticity", steps 5 and 6). Session drives it (runtime/session.h).
//
// At each snapshot every rank copies the slices of the variables it holds (parameters and
// optimizer state, one copy per slice). A slice that some rank on another node also holds needs
// nothing more: that copy is the redundancy. A slice that no other node holds is also sent to the
// rank's buddy: the next rank on another node (on a single node, the next rank). The newest two
// snapshots are kept, because ranks may stand one step apart when a failure strikes.
//
// After a failure and a re-plan, the survivors gather what each holds and what each now needs,
// and all pick the same step: the newest at which every slice of every variable survived on some
// rank, in one layout. Each needed box is then cut from the pieces that hold it, on the rank
// that holds it (itself first, else the lowest), and sent over the new epoch's transport.
// The new layout need not resemble the old one: a box may gather pieces from several ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/shape.h"

namespace tessel {
namespace checkpoint {
class RankChannel;
}

namespace recovery {

// A slice of a variable that this rank holds in the current layout.
struct Slice {
  int variable = 0;  // its index among the graph's variables (checkpoint::variables_of's order)
  std::vector<int64_t> starts;
  Shape shape;
  std::vector<std::byte*> copies;  // its bytes on each device of this rank that holds it
  std::vector<int> ranks;          // the ranks holding it, this one too, ascending
};

// This rank's part of an epoch's layout.
struct Share {
  int epoch = 0;
  int rank = 0, ranks = 1;
  int node = 0;                         // the node this rank runs on
  std::vector<std::string> names{};     // per variable
  std::vector<Shape> whole_shapes{};    // per variable
  std::vector<size_t> element_bytes{};  // per variable
  std::vector<Slice> slices{};
};

class Memory {
 public:
  // Every rank together, at the start of each epoch, with the layout's slices (whose bytes must
  // stay where they are until the next begin_epoch): learns every rank's node and what its
  // buddies will send it.
  void begin_epoch(const Share& share, checkpoint::RankChannel& channel);
  // Every rank together, at a step boundary with nothing in flight: copies this rank's slices and
  // sends the ones no other node holds to the buddy. Error::Aborted when the channel was aborted
  // (the snapshot is then dropped, and the one before it stands). Each rank also proposes the
  // steps until the next snapshot; all get back the largest proposal, so they agree on it.
  int64_t snapshot(int64_t step, checkpoint::RankChannel& channel, int64_t proposal = 1);
  // Every rank together, after a re-plan: fills every copy of every slice of `share` and returns
  // the step the values are of; snapshots of later steps are dropped (those steps run again). -1 when no step has every
  // slice on some rank; `missing` then names a variable's slice that survived nowhere.
  int64_t restore(const Share& share, checkpoint::RankChannel& channel, std::string* missing);

  int64_t newest_step() const;  // -1 before the first snapshot
  int64_t bytes_held() const;   // own and buddies' copies, over both snapshots
  int64_t bytes_sent() const;   // to the buddy, at the last snapshot

 private:
  struct Piece {
    int variable = 0;
    std::vector<int64_t> starts;
    Shape shape;
    std::vector<std::byte> bytes;
  };
  struct Held {
    int64_t step = -1;  // -1: empty, or being written
    int layout = -1;    // the epoch whose layout the pieces have
    std::vector<Piece> pieces;
  };
  // A buddy's slice that comes here at each snapshot: its variable, box and bytes.
  struct Incoming {
    int from = 0;
    int variable = 0;
    std::vector<int64_t> starts;
    Shape shape;
    size_t bytes = 0;
  };

  Share share_;
  int buddy_ = -1;                  // where this rank's exposed slices go; -1: nowhere
  std::vector<size_t> exposed_;     // indices in share_.slices of the slices sent to the buddy
  std::vector<Incoming> incoming_;  // from the ranks whose buddy this is, in rank order
  Held held_[2];
  int64_t sent_ = 0;
};

}  // namespace recovery
}  // namespace tessel
