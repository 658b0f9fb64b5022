// Private to graph/: the physical graph, one op instance per device plus the boxing pieces
// between them, that compile_plan() turns into actors. It is built from the logical graph and
// the layouts SBP inference chose (sbp/inference.h), in schedule order: logical nodes in id
// order, the pieces converting an op's inputs just before it, each fetch right after its
// tensor, and the optimizer updates last.
#pragma once

#include <string>
#include <vector>

#include "graph/graph.h"
#include "sbp/inference.h"

namespace tessel::physical {

enum class Kind { input, variable, kernel, update, fetch, send, recv, collective };

struct PhysicalNode {
  Kind kind = Kind::kernel;
  std::string op{};  // kernel and update ops
  std::string name{};
  std::string location{};
  int device = 0;                   // index in PhysicalGraph::devices
  std::vector<TensorRef> inputs{};  // outputs of earlier physical nodes
  Attributes attrs{};               // localized for the shard (OpDef::localize)
  std::vector<TensorType> outputs{};
  std::vector<std::string> layouts{};  // per output, the layout of the logical tensor it holds part of
  int logical = -1;                    // the logical node this instantiates; -1 for boxing pieces
  std::vector<int64_t> starts{};       // input: where its shard starts in the feed
  std::string variable{};              // variable: the variable's name
  int fetch_index = -1;
  int channel = -1;    // send and recv: the transfer between two ranks they are the ends of
  int peer_rank = -1;  // send and recv: the rank at the other end
  // collective: its group's global devices in member order (attrs hold the rest: the kind, the
  // group, this member, the group's box and split axes).
  std::vector<int> members{};
};

// One device's shard of a variable: every variable of the graph has one per device of its
// placement, needed by the plan or not, so training and evaluation plans share storage.
struct PhysicalVariable {
  int logical = -1;
  int device = 0;
  TensorType whole, shard;
  std::vector<int64_t> starts{};
  std::string layout{};
  bool elsewhere = false;          // other shards of the variable live on other ranks
  bool writes_checkpoint = false;  // the first device of the placement that holds this slice
  std::vector<int> slice_ranks{};  // the ranks that hold this slice (this one too), ascending
};

struct PhysicalGraph {
  std::vector<int> devices;  // global CPU device indices, ascending
  std::vector<PhysicalNode> nodes;
  std::vector<PhysicalVariable> variables;
  int64_t boxing_bytes = 0;        // per step, over every conversion made
  int64_t boxing_lower_bound = 0;  // the table's bound for the same conversions
};

// The CPU devices the layouts use, ascending. Error::Unimplemented for another device type.
std::vector<int> plan_devices(const SbpAssignment& layouts);

// Which rank each device (an index in `devices`) belongs to, and whose share to lower.
struct RankShare {
  std::vector<int> rank_of;
  int rank = -1;  // only this rank's devices get nodes; -1: every rank's (the whole job)
};

// Nodes are made for the devices of `share.rank` only, in the same order and with the same
// names, channels and communicator groups on every rank: a piece between devices of two ranks
// is a send on the source's rank and a recv on the target's, matched by their channel, which
// every rank numbers alike by walking every conversion of the job (cheap: no nodes are made
// for other ranks' devices).
PhysicalGraph lower(const Graph& graph, const SbpAssignment& layouts, const std::vector<Tensor>& fetches, bool training,
                    const std::vector<int>& devices, const RankShare& share);

// Folds each matmul -> [cast to f32] -> [bias_add] -> [relu | gelu] chain on one device whose
// intermediates nothing else reads into one fused_matmul kernel (graph/fuse.cc), where that
// kernel exists for the matmul's dtype (oneDNN). Returns how many chains it fused.
int fuse_epilogues(PhysicalGraph& graph);

}  // namespace tessel::physical
