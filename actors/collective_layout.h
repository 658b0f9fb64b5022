// Private to actors/: how a COLLECTIVE actor's shards (proto/plan.proto) map onto its
// communicator's flat buffers. A group of n members covers one box of the tensor; the input of
// member m is the box, or its m-th split along `from_axis`; the output is the box, or its m-th
// split along `to_axis`. Where a split is not the outermost axis, its chunks are not contiguous
// in memory and are packed before (reduce-scatter, all-to-all) or unpacked after (all-gather,
// all-to-all) the communicator's call.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "core/shape.h"
#include "sbp/collective.h"

namespace tessel::hosting {

class CollectiveLayout {
 public:
  // Error::InvalidArgument (a plan's bytes are untrusted) when the axes do not fit the box,
  // the member is out of range, or the shards' shapes differ from `input` and `output`.
  CollectiveLayout(CollectiveKind kind, const Shape& box, int from_axis, int to_axis, int members, int member,
                   DType dtype, const Shape& input, const Shape& output);

  // Starts the collective on `communicator`: packs `input` if needed, and when done (before
  // `done` runs on a worker thread) unpacks into `output`. Scratch buffers are this layout's,
  // so one call at a time.
  void issue(comm::Communicator& communicator, comm::ReduceOp op, const std::byte* input, std::byte* output,
             comm::Communicator::Done done);

 private:
  Shape chunk(const Shape& of, int axis, int index) const;  // `of` with `axis` cut to split `index`
  std::vector<int64_t> start(int axis, int index) const;    // where split `index` of `axis` starts
  std::vector<size_t> counts(const Shape& of, int axis) const;

  CollectiveKind kind_;
  Shape box_;
  int from_axis_, to_axis_, members_, member_;
  DType dtype_;
  bool pack_ = false, unpack_ = false;
  std::vector<size_t> send_counts_, recv_counts_;
  std::vector<std::byte> packed_, unpacked_;
};

}  // namespace tessel::hosting
