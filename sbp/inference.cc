#include "sbp/inference.h"

#include <glog/logging.h>

#include <map>
#include <optional>
#include <tuple>

#include "sbp/boxing.h"
#include "sbp/collective.h"

namespace tessel {
namespace {

// The n-D signatures on a mesh of `mesh_rank` axes: one 1-D signature per axis.
std::vector<std::vector<SbpSignature>> nd_signatures(const std::vector<SbpSignature>& one, int mesh_rank) {
  std::vector<std::vector<SbpSignature>> result{{}};
  for (int axis = 0; axis < mesh_rank; ++axis) {
    std::vector<std::vector<SbpSignature>> next;
    for (const auto& prefix : result) {
      for (const SbpSignature& signature : one) {
        next.push_back(prefix);
        next.back().push_back(signature);
      }
    }
    result = std::move(next);
  }
  return result;
}

NdSbp nd_input(const std::vector<SbpSignature>& per_axis, size_t index) {
  std::vector<Sbp> sbps;
  for (const SbpSignature& s : per_axis) sbps.push_back(s.inputs[index]);
  return NdSbp(std::move(sbps));
}

NdSbp nd_output(const std::vector<SbpSignature>& per_axis, size_t index) {
  std::vector<Sbp> sbps;
  for (const SbpSignature& s : per_axis) sbps.push_back(s.outputs[index]);
  return NdSbp(std::move(sbps));
}

NdSbp all_broadcast(int mesh_rank) { return NdSbp(std::vector<Sbp>(mesh_rank, B)); }

// Replaces every P by B: an unpinned leaf never starts out partial.
NdSbp without_partial(const NdSbp& sbp) {
  std::vector<Sbp> sbps = sbp.sbps();
  for (Sbp& s : sbps) {
    if (s.is_partial()) s = B;
  }
  return NdSbp(std::move(sbps));
}

class Inference {
 public:
  Inference(const Graph& graph, const Placement& default_placement)
      : graph_(graph), default_(default_placement), resolved_(graph.num_nodes(), false) {
    result_.nodes.resize(graph.num_nodes());
  }

  SbpAssignment run() {
    default_.validate();
    for (const Node& node : graph_.nodes()) {
      Layout pinned;
      if (node.op == "to") {
        visit_to(node);
      } else if (pinned_layout(node, default_, pinned)) {
        check_layout(node.outputs[0].shape, pinned, node.name);
        resolve(node.id, pinned.placement, {pinned.sbp});
      } else if (!node.inputs.empty()) {
        visit_op(node);
      }
    }
    for (const Node& node : graph_.nodes()) {  // leaves nothing asked for
      if (!resolved_[node.id]) {
        resolve(node.id, default_, std::vector<NdSbp>(node.outputs.size(), all_broadcast(default_.mesh_rank())));
      }
    }
    return std::move(result_);
  }

 private:
  void resolve(int id, const Placement& placement, std::vector<NdSbp> outputs) {
    result_.nodes[id].placement = placement;
    result_.nodes[id].outputs = std::move(outputs);
    resolved_[id] = true;
  }

  int64_t boxing_bytes(const TensorType& type, const Layout& from, const Layout& to) {
    if (from == to) return 0;
    // On one placement a collective's formula, never a walk over pairs of devices.
    if (const std::optional<std::vector<CollectiveStep>> steps = collective_path(type.shape, from, to)) {
      return collective_cost(type.shape, type.dtype, *steps);
    }
    const std::string key = concat(type.shape, type.dtype, "|", from.to_string(), "|", to.to_string());
    auto it = cost_cache_.find(key);
    if (it != cost_cache_.end()) return it->second;
    const int64_t bytes = plan_boxing(type, from, to).bytes;
    cost_cache_.emplace(key, bytes);
    return bytes;
  }

  // A lazy leaf input takes the layout its consumer needs (without partial values).
  void resolve_lazy_input(const TensorRef& ref, const Layout& wanted) {
    if (resolved_[ref.node]) return;
    const Node& leaf = graph_.node(ref.node);
    std::vector<NdSbp> outputs(leaf.outputs.size(), all_broadcast(wanted.placement.mesh_rank()));
    outputs[ref.output] = without_partial(wanted.sbp);
    resolve(ref.node, wanted.placement, std::move(outputs));
  }

  void visit_to(const Node& node) {
    const TensorRef& in = node.inputs[0];
    Layout target;
    const Placement& base = resolved_[in.node] ? result_.nodes[in.node].placement : default_;
    pinned_layout(node, base, target);
    check_layout(node.outputs[0].shape, target, node.name);
    resolve_lazy_input(in, target);
    result_.nodes[node.id].inputs = {target.sbp};
    resolve(node.id, target.placement, {target.sbp});
    result_.boxing_bytes += boxing_bytes(node.outputs[0], result_.output(in), target);
  }

  struct Choice {
    int64_t bytes = 0;
    int boxings = 0;
    bool new_layout = true;  // no laid-out input has the output's layout: the layout changes here
    int order = 0;
    Placement placement{};
    std::vector<SbpSignature> signature{};
    auto key() const { return std::tie(bytes, boxings, new_layout, order); }
  };

  void visit_op(const Node& node) {
    const OpDef& op = OpRegistry::global().op(node.op);
    std::vector<TensorType> inputs;
    for (const TensorRef& in : node.inputs) inputs.push_back(graph_.node(in.node).outputs[in.output]);
    std::vector<SbpSignature> one_axis;
    if (op.signatures) {
      one_axis = op.signatures(SbpContext{inputs, node.outputs, node.attrs});
    } else {
      one_axis = {{std::vector<Sbp>(inputs.size(), B), std::vector<Sbp>(node.outputs.size(), B)}};
    }
    std::vector<Placement> candidates;
    for (const TensorRef& in : node.inputs) {
      if (!resolved_[in.node]) continue;
      const Placement& p = result_.nodes[in.node].placement;
      if (std::find(candidates.begin(), candidates.end(), p) == candidates.end()) candidates.push_back(p);
    }
    if (candidates.empty()) candidates.push_back(default_);

    std::optional<Choice> best;
    int order = 0;
    for (const Placement& placement : candidates) {
      for (const std::vector<SbpSignature>& signature : nd_signatures(one_axis, placement.mesh_rank())) {
        const int this_order = order++;
        std::optional<Choice> choice = evaluate(node, op, inputs, placement, signature);
        if (!choice) continue;
        choice->order = this_order;
        if (!best || choice->key() < best->key()) best = std::move(choice);
      }
    }
    if (!best) throw no_signature(node, candidates);
    NodeLayout& layout = result_.nodes[node.id];
    for (size_t i = 0; i < inputs.size(); ++i) {
      layout.inputs.push_back(nd_input(best->signature, i));
      resolve_lazy_input(node.inputs[i], {best->placement, layout.inputs.back()});
    }
    std::vector<NdSbp> outputs;
    for (size_t o = 0; o < node.outputs.size(); ++o) outputs.push_back(nd_output(best->signature, o));
    resolve(node.id, best->placement, std::move(outputs));
    result_.boxing_bytes += best->bytes;
  }

  std::optional<Choice> evaluate(const Node& node, const OpDef& op, const std::vector<TensorType>& inputs,
                                 const Placement& placement, const std::vector<SbpSignature>& signature) {
    Choice choice{.placement = placement, .signature = signature};
    std::vector<NdSbp> input_sbps, output_sbps;
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      output_sbps.push_back(nd_output(signature, o));
      if (!layout_fits(node.outputs[o].shape, {placement, output_sbps.back()})) return std::nullopt;
      // Partial values are sums (or maxima) still to be taken; integers and booleans are
      // labels, indices and masks, which are never that.
      if (!is_floating(node.outputs[o].dtype) && output_sbps.back().has_partial()) return std::nullopt;
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      input_sbps.push_back(nd_input(signature, i));
      if (!is_floating(inputs[i].dtype) && input_sbps.back().has_partial()) return std::nullopt;
    }
    if (op.fits && !op.fits(FitContext{inputs, node.outputs, node.attrs, placement, input_sbps, output_sbps})) {
      return std::nullopt;
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Layout wanted{placement, nd_input(signature, i)};
      if (!layout_fits(inputs[i].shape, wanted)) return std::nullopt;
      const TensorRef& in = node.inputs[i];
      const bool mutated =
          std::find(op.mutated_inputs.begin(), op.mutated_inputs.end(), static_cast<int>(i)) != op.mutated_inputs.end();
      if (!resolved_[in.node]) {
        if (wanted.sbp.has_partial()) return std::nullopt;
        continue;
      }
      const Layout have = result_.output(in);
      if (!node.outputs.empty() && have == Layout{placement, nd_output(signature, 0)}) choice.new_layout = false;
      if (have == wanted) continue;
      if (mutated) return std::nullopt;  // written in place: no copy may stand in for it
      choice.bytes += boxing_bytes(inputs[i], have, wanted);
      ++choice.boxings;
    }
    return choice;
  }

  Error no_signature(const Node& node, const std::vector<Placement>& candidates) const {
    std::string inputs;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const TensorRef& in = node.inputs[i];
      const Node& producer = graph_.node(in.node);
      inputs += concat(i ? ", " : "", "'", producer.name, "' ", producer.outputs[in.output].shape, " ",
                       resolved_[in.node] ? result_.output(in).to_string() : std::string("(not yet laid out)"));
    }
    std::string places;
    for (const Placement& p : candidates) places += concat(places.empty() ? "" : " or ", p.to_string());
    const bool update = OpRegistry::global().op(node.op).is_update();
    return Error::InvalidArgument(
        concat("no SBP signature of ", describe(node), " fits on ", places, " with its inputs ", inputs,
               update ? "; an update writes its variables in place, so the pins of a parameter and its optimizer state "
                        "contradict each other unless they are laid out alike"
                      : "; expected pins that let every op split or broadcast its inputs consistently"));
  }

  const Graph& graph_;
  Placement default_;
  std::vector<bool> resolved_;
  SbpAssignment result_;
  std::map<std::string, int64_t> cost_cache_;
};

}  // namespace

bool pinned_layout(const Node& node, const Placement& default_placement, Layout& layout) {
  if (!node.attrs.has("sbp")) return false;
  layout.placement =
      node.attrs.has("placement") ? Placement::parse(node.attrs.get_string("placement")) : default_placement;
  layout.sbp = NdSbp::parse(node.attrs.get_string("sbp"));
  return true;
}

SbpAssignment infer_sbp(const Graph& graph, const Placement& default_placement) {
  return Inference(graph, default_placement).run();
}

}  // namespace tessel
