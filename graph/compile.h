// The compiler's last pass: a logical graph (forward, backward and optimizer updates) becomes
// a plan (proto/plan.proto) of actors, registers and a static memory layout.
//
//   PlanOptions options{.fetches = {loss}};
//   proto::Plan plan = compile_plan(g, options);
//   write_plan(plan, "mlp.plan");  // what tessel-plan prints, and all a rank needs to run
//
// Each needed node becomes an actor; an input, a variable, a kernel or an update. Each fetched
// tensor gets a FETCH actor. Every output gets `register_count` registers. With
// `share_memory`, registers whose lifetimes in the schedule cannot overlap share arena bytes,
// and the compiler adds the control edges that make that safe while steps overlap: the writer
// of a register waits for the readers of the bytes' previous owner in the same step, and that
// owner's writer waits for the readers of the register's previous step.
//
// Callers that read the plan include "proto/plan.pb.h" (a .cc file only: protobuf headers stay
// out of widely included headers).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "graph/graph.h"

namespace tessel {
namespace proto {
class Plan;
class RankPlan;
}  // namespace proto

struct PlanOptions {
  // The tensors every step hands back, in this order.
  std::vector<Tensor> fetches{};
  // True: each step also runs the optimizer updates of minimize(), and dropout is on.
  // False: an evaluation plan that changes no variable.
  bool training = true;
  // Registers per output: 1 makes producer and consumer alternate; 2 or more lets a producer
  // run that many steps ahead. Variables always have one (their storage).
  int register_count = 1;
  std::map<Tensor, int> register_counts{};  // per tensor, overriding register_count
  // Registers with one register and disjoint lifetimes share arena bytes.
  bool share_memory = true;
  // Matmuls fuse the bias_add, relu or gelu (and bf16 -> f32 cast) that follow them on a
  // device into one actor where nothing else reads the intermediates (graph/fuse.cc). False:
  // every op is an actor of its own, as in the logical graph.
  bool fuse = true;
  // Where tensors that nothing pins live (SBP inference, sbp/inference.h): one CPU device by
  // default; Placement::cpu(4) lays an unpinned graph over four.
  Placement placement = Placement::cpu(1);
  // Processes the devices are spread over: the plan's devices, in ascending order, fall into
  // `ranks` equal consecutive groups (4 devices over 2 ranks: cpu:0,1 on rank 0, cpu:2,3 on
  // rank 1). Every edge between ranks becomes a SEND and a RECV actor (comm/transport.h).
  int ranks = 1;
  // -1: the plan holds every rank's share (the whole job, for tessel-plan and tests). A rank r:
  // only rank r's share, lowered for its own devices alone, so that compiling grows with the
  // graph and that rank's devices, not with the job (SBP inference still sees the whole graph).
  // Every rank derives the same channels and communicator groups.
  int rank = -1;
};

// The share of rank `rank` in `plan`; Error::NotFound when the plan has none.
const proto::RankPlan& share_of(const proto::Plan& plan, int rank);

// Throws Error for a fetch of another graph, a register count below 1, an op with no CPU
// kernel for its dtype, or an update that writes something other than a variable, naming
// the node and where it was made.
proto::Plan compile_plan(const Graph& graph, const PlanOptions& options);
// How many plans this process has compiled: tests show that a schedule needs no recompiling.
int64_t compile_count();

enum class PlanFormat { binary, text };
// A plan's bytes are untrusted: more than this is refused before it is parsed.
constexpr uint64_t kMaxPlanBytes = uint64_t{1} << 30;
// Deterministic. A binary plan carries a header with its length and xxh64 checksum.
std::string plan_to_bytes(const proto::Plan& plan, PlanFormat format);
// Error::DataLoss for bytes that are not a plan, or a binary plan whose length or checksum does
// not match its bytes (any flipped bit); Error::InvalidArgument for a plan whose references do
// not hold together.
proto::Plan plan_from_bytes(std::string_view bytes, PlanFormat format);
// Files ending in .pbtxt or .txt are text, others binary. Error::NotFound for a missing file.
void write_plan(const proto::Plan& plan, const std::string& path);
proto::Plan read_plan(const std::string& path);

// Checks what a runtime relies on: every reference within range, edges agreeing at both ends,
// offsets inside the arenas. Error::InvalidArgument naming the actor at fault.
void validate_plan(const proto::Plan& plan);

}  // namespace tessel
