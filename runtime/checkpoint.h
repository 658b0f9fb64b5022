// Checkpoints: sharded, atomic, checksummed, and loadable onto any layout (DESIGN.md, "Failure
// and elasticity", step 5). Session::save and Session::restore are the user's calls; this is
// what they stand on, and what tessel-checkpoint reads.
//
// A checkpoint root holds committed checkpoints, one directory per step:
//
//   ROOT/step-000000000100/MANIFEST         proto::CheckpointManifest, framed and checksummed
//   ROOT/step-000000000100/rank-00000.bin   the shards rank 0 wrote, back to back
//   ROOT/step-000000000100/rank-00001.bin   ...
//
// Every rank writes its own shards (a broadcast variable once, by the first device that holds
// each slice) into ROOT/.partial-step-...-NONCE, fsyncs them and describes them; rank 0 then
// writes the MANIFEST, fsyncs it and renames the directory: a crash at any moment leaves the
// previous checkpoints and possibly this one, never a half one under a committed name. The
// root must be on a filesystem every rank sees.
//
// Loading onto another layout is an intersection of slices: each rank reads, of every saved
// shard that meets one of its own, the checksummed chunks that cover the meeting, and verifies
// each chunk it reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/shape.h"
#include "core/tensor.h"

namespace tessel {
class Graph;
namespace comm {
class Transport;
}

// What a save wrote or a restore read.
struct CheckpointInfo {
  std::string path;                       // ROOT/step-000000000100
  int64_t step = 0;                       // completed training steps
  std::map<std::string, int64_t> data{};  // the program's data-stream position
  int64_t bytes = 0;                      // tensor bytes this rank wrote (save) or read (restore)
  // Restoring "the latest": the newer checkpoints passed over, each with why.
  std::vector<std::string> skipped{};
};

namespace checkpoint {

constexpr int64_t kChunkBytes = 256 << 10;  // checksum granularity of a shard's bytes

// One device's shard of a variable, on this rank.
struct LocalShard {
  std::string device;  // "cpu:2"
  std::vector<int64_t> starts;
  Shape shape;
  bool writes = false;        // this copy goes into checkpoints (VariableDef.writes_checkpoint)
  std::byte* data = nullptr;  // its bytes, row-major
};

// A variable of the graph and this rank's shards of it (none when it lives elsewhere only).
struct LocalVariable {
  std::string name;
  Shape shape;  // the whole variable
  DType dtype = DType::f32;
  bool trainable = false;
  std::string layout;
  std::vector<LocalShard> shards;
};

// The variables of `graph` in its order, with no shards: Session fills in its own.
std::vector<LocalVariable> variables_of(const Graph& graph);

// Agreement between the ranks of a job around a save or a restore, and recovery's exchanges
// (runtime/recovery.h): collectives of a few values over one member per rank, on their own tag
// space of the job's transport. Channels that run at the same time take distinct groups. With
// one rank each returns its input.
class RankChannel {
 public:
  // `transport` may be null when ranks == 1. Group 0 is the checkpoints', 1 recovery's.
  RankChannel(int ranks, int rank, comm::Transport* transport, int group = 0);
  ~RankChannel();
  RankChannel(const RankChannel&) = delete;
  RankChannel& operator=(const RankChannel&) = delete;

  int ranks() const { return ranks_; }
  int rank() const { return rank_; }
  // Every rank's `values`, reduced by max. Error::FailedPrecondition naming the wait when another
  // rank does not take part within `timeout_seconds`; Error::Aborted once abort() was called.
  std::vector<int64_t> all_max(std::vector<int64_t> values, const std::string& what, double timeout_seconds = 600);
  // Every rank's `values` (of any length), in rank order.
  std::vector<std::vector<int64_t>> all_gather(const std::vector<int64_t>& values, const std::string& what,
                                               double timeout_seconds = 600);
  // to_each[r] goes to rank r; from_each[r] values come from rank r (its to_each[this rank] size).
  std::vector<std::vector<int64_t>> all_to_all(const std::vector<std::vector<int64_t>>& to_each,
                                               const std::vector<size_t>& from_each, const std::string& what,
                                               double timeout_seconds = 600);
  // From any thread: the operation in flight and every later one fail with Error::Aborted.
  void abort(const std::string& why);

 private:
  int ranks_, rank_;
  struct State;
  std::unique_ptr<State> state_;
};

// This rank's written shards, copied out at a step boundary: what a save holds in memory while
// it writes.
struct Snapshot {
  int64_t step = 0;
  std::map<std::string, int64_t> data{};
  std::vector<LocalVariable> variables;             // shards' `data` is null: the bytes are below
  std::vector<std::unique_ptr<std::byte[]>> bytes;  // per written shard, in variables' order
  std::vector<size_t> sizes;                        // of each
};

// Copies every shard with `writes` (the only part of a save that waits on training). The
// buffers of `recycled`, an earlier snapshot of the same variables that nothing writes any more,
// are reused: fresh memory would first be faulted in page by page, which costs more than the copy.
Snapshot take_snapshot(const std::vector<LocalVariable>& variables, int64_t step, std::map<std::string, int64_t> data,
                       Snapshot* recycled = nullptr);

// Writes `snapshot` as ROOT/step-N and commits it, every rank of `channel` together; keeps the
// newest `keep` committed checkpoints (at least 1) and removes older ones and abandoned partial
// directories. Returns where it went. Throws Error (naming the file) when this or another rank
// could not write; the root is then as it was.
CheckpointInfo write(const std::string& root, const Snapshot& snapshot, const Graph& graph, RankChannel& channel,
                     int keep);

// Fills every local shard's bytes from the checkpoint `path`: a committed checkpoint, or a root,
// whose newest complete checkpoint is taken, falling back past damaged ones (listed in
// `skipped`, and logged). Every rank of `channel` calls it and all load the same checkpoint.
// Nothing is written into a shard until every byte it needs was read and verified.
//
// Refused with Error::FailedPrecondition when the graph's variables differ from the saved ones
// (naming the first that differs), Error::DataLoss when no checkpoint there is complete and
// intact (naming the file, the variable and what was expected), Error::NotFound when there is none.
CheckpointInfo restore(const std::string& path, const std::vector<LocalVariable>& variables, const Graph& graph,
                       RankChannel& channel);

// The committed checkpoints under `root` (step-N directories), newest first. Empty for a
// root that does not exist.
std::vector<std::string> list(const std::string& root);

// For tessel-checkpoint: a readable account of the checkpoint at `path` (variables, shapes,
// shards, step, bytes), after verifying its manifest.
std::string describe(const std::string& path);
// Reads every byte of every shard and checks every checksum. Error::DataLoss names the first fault.
// Returns the tensor bytes verified.
int64_t verify(const std::string& path);

}  // namespace checkpoint
}  // namespace tessel
