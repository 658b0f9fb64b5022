// Epilogue fusion on the physical graph (physical.h): a matmul and what follows it on its
// device become one fused_matmul kernel, so the bias and activation are applied to each block of
// the product while it is in cache (oneDNN post-ops, ops/kernels/cpu/onednn_matmul.cc) instead
// of in passes of their own over memory.
//
// A chain is matmul -> [cast bf16 to f32] -> [bias_add] -> [relu | gelu], at least one link
// after the matmul. Each link must be the only reader of the previous one's output, so the
// intermediates are never needed: a fetched, sent or differentiated intermediate stops the
// chain there. In a training plan gelu_grad reads gelu's input, so a gelu stays unfused and the
// chain ends at the bias; relu_grad reads relu's output, so relu fuses forward and backward alike.
//
// The rewrite is local to one device's kernels and keeps every other node and edge, so it is
// correct for any layout: the fused node computes what the chain computed, up to oneDNN's
// rounding (the tests hold fused and unfused plans to 1e-5).
#include <map>
#include <vector>

#include "graph/physical.h"
#include "ops/registry.h"

namespace tessel::physical {
namespace {

bool is_kernel(const PhysicalNode& node, const char* op) { return node.kind == Kind::kernel && node.op == op; }

}  // namespace

int fuse_epilogues(PhysicalGraph& g) {
  std::map<TensorRef, std::vector<int>> readers;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const TensorRef& in : g.nodes[i].inputs) readers[in].push_back(static_cast<int>(i));
  }
  // The one kernel that reads output 0 of `node` as its first input and nothing else of it, on
  // the same device; -1 when there is none.
  const auto only_reader = [&](int node) {
    const auto found = readers.find({node, 0});
    if (found == readers.end() || found->second.size() != 1) return -1;
    const PhysicalNode& reader = g.nodes[found->second[0]];
    if (reader.device != g.nodes[node].device || reader.inputs.empty() || reader.inputs[0] != TensorRef{node, 0})
      return -1;
    for (size_t i = 1; i < reader.inputs.size(); ++i) {
      if (reader.inputs[i].node == node) return -1;
    }
    return found->second[0];
  };
  const OpRegistry& registry = OpRegistry::global();
  std::vector<bool> removed(g.nodes.size(), false);
  int fused = 0;
  for (size_t m = 0; m < g.nodes.size(); ++m) {
    PhysicalNode& product = g.nodes[m];
    if (!is_kernel(product, "matmul") || product.outputs.size() != 1) continue;
    const DType operands = product.outputs[0].dtype;
    if (!registry.has_kernel("fused_matmul", DeviceType::cpu, operands)) continue;
    const Shape& a = g.nodes[product.inputs[0].node].outputs[product.inputs[0].output].shape;
    const int64_t k = product.attrs.get_bool("transpose_a", false) ? a[a.rank() - 2] : a[a.rank() - 1];
    if (k == 0 || product.outputs[0].shape.numel() == 0) continue;
    std::vector<int> chain{static_cast<int>(m)};
    Attributes attrs = product.attrs;
    std::vector<TensorRef> inputs = product.inputs;
    std::string name = product.name;
    int next = only_reader(chain.back());
    if (next >= 0 && operands == DType::bf16 && is_kernel(g.nodes[next], "cast") &&
        g.nodes[next].outputs[0].dtype == DType::f32) {
      attrs.set("dtype", std::string("f32"));
      chain.push_back(next);
      next = only_reader(chain.back());
    }
    if (next >= 0 && is_kernel(g.nodes[next], "bias_add")) {
      inputs.push_back(g.nodes[next].inputs[1]);
      chain.push_back(next);
      next = only_reader(chain.back());
    }
    if (next >= 0 && (is_kernel(g.nodes[next], "relu") || is_kernel(g.nodes[next], "gelu"))) {
      attrs.set("activation", g.nodes[next].op);
      chain.push_back(next);
    }
    if (chain.size() == 1) continue;
    // The fused node takes the last link's place: every input it reads is made before that.
    PhysicalNode& last = g.nodes[chain.back()];
    for (size_t i = 1; i < chain.size(); ++i) name += "+" + g.nodes[chain[i]].op;
    last.op = "fused_matmul";
    last.name = name;
    last.location = product.location;
    last.inputs = inputs;
    last.attrs = attrs;
    for (size_t i = 0; i + 1 < chain.size(); ++i) removed[chain[i]] = true;
    ++fused;
  }
  if (fused == 0) return 0;
  std::vector<int> index(g.nodes.size(), -1);
  std::vector<PhysicalNode> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (removed[i]) continue;
    index[i] = static_cast<int>(kept.size());
    kept.push_back(std::move(g.nodes[i]));
  }
  for (PhysicalNode& node : kept) {
    for (TensorRef& in : node.inputs) in.node = index[in.node];
  }
  g.nodes = std::move(kept);
  return fused;
}

}  // namespace tessel::physical
