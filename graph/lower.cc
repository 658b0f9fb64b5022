// Lowers a logical graph to its physical graph: an instance of every needed op on each device
// of its placement, with localized attributes, and for every edge whose layouts differ either
// one collective per device and changed mesh axis (on one placement, sbp/collective.h) or the
// boxing pieces (slice, copy, assemble, fill) that the boxing planner gives.
#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "graph/physical.h"
#include "sbp/boxing.h"
#include "sbp/collective.h"

namespace tessel::physical {
namespace {

// The nodes a step runs: the fetched ones, the updates of a training plan, and their inputs.
std::vector<bool> needed_nodes(const Graph& graph, const std::vector<Tensor>& fetches, bool training) {
  std::vector<bool> needed(graph.num_nodes(), false);
  for (const Tensor& t : fetches) needed[t.node()] = true;
  if (training) {
    for (const Node& node : graph.nodes()) {
      if (OpRegistry::global().op(node.op).is_update()) needed[node.id] = true;
    }
  }
  for (int id = graph.num_nodes() - 1; id >= 0; --id) {
    if (!needed[id]) continue;
    for (const TensorRef& in : graph.node(id).inputs) needed[in.node] = true;
  }
  return needed;
}

TensorType shard_type(const TensorType& whole, const Layout& layout, int index) {
  return {shard_region(whole.shape, layout.placement, layout.sbp, index).shape(), whole.dtype};
}

// A device's instance of a tensor that lives on another rank: no node of this share holds it.
constexpr TensorRef kElsewhere{-1, 0};

class Lowering {
 public:
  Lowering(const Graph& graph, const SbpAssignment& layouts, const std::vector<Tensor>& fetches, bool training,
           const std::vector<int>& devices, const RankShare& share)
      : graph_(graph), layouts_(layouts), fetches_(fetches), training_(training), share_(share) {
    result_.devices = devices;
  }

  PhysicalGraph run() {
    for (const Node& node : graph_.nodes()) {
      if (node.op != "variable") continue;
      const Layout layout = layouts_.output({node.id, 0});
      std::set<int> ranks;
      for (int device : layout.placement.devices) ranks.insert(rank_of(device));
      std::set<std::vector<int64_t>> written;                 // the starts of slices a device already writes
      std::map<std::vector<int64_t>, std::set<int>> holders;  // each slice's ranks
      for (int e = 0; e < layout.placement.size(); ++e) {
        const Region region = shard_region(node.outputs[0].shape, layout.placement, layout.sbp, e);
        holders[region.starts].insert(rank_of(layout.placement.devices[e]));
      }
      for (int e = 0; e < layout.placement.size(); ++e) {
        const Region region = shard_region(node.outputs[0].shape, layout.placement, layout.sbp, e);
        const bool writes = written.insert(region.starts).second;
        const std::set<int>& slice_ranks = holders.at(region.starts);
        if (!kept(layout.placement.devices[e])) continue;
        result_.variables.push_back({.logical = node.id,
                                     .device = device_index(layout.placement.devices[e]),
                                     .whole = node.outputs[0],
                                     .shard = {region.shape(), node.outputs[0].dtype},
                                     .starts = region.starts,
                                     .layout = layout.to_string(),
                                     .elsewhere = ranks.size() > 1,
                                     .writes_checkpoint = writes,
                                     .slice_ranks = std::vector<int>(slice_ranks.begin(), slice_ranks.end())});
      }
    }
    const std::vector<bool> needed = needed_nodes(graph_, fetches_, training_);
    std::vector<int> updates;
    for (const Node& node : graph_.nodes()) {
      if (!needed[node.id]) continue;
      if (OpRegistry::global().op(node.op).is_update()) {
        updates.push_back(node.id);
        continue;
      }
      lower_node(node);
      for (size_t f = 0; f < fetches_.size(); ++f) {
        if (fetches_[f].node() == node.id) add_fetch(static_cast<int>(f));
      }
    }
    for (int id : updates) lower_node(graph_.node(id));
    return std::move(result_);
  }

 private:
  int device_index(int device) const {
    auto it = std::lower_bound(result_.devices.begin(), result_.devices.end(), device);
    return static_cast<int>(it - result_.devices.begin());
  }
  int rank_of(int device) const { return share_.rank_of[device_index(device)]; }
  // Whether this share lowers global device `device`.
  bool kept(int device) const { return share_.rank < 0 || rank_of(device) == share_.rank; }

  // A name per instance: the logical name on a one-device placement, "name@device" otherwise.
  static std::string instance_name(const std::string& name, const Placement& placement, int index) {
    return placement.size() == 1 ? name : concat(name, "@", placement.devices[index]);
  }

  TensorRef add(PhysicalNode node) {
    result_.nodes.push_back(std::move(node));
    return {static_cast<int>(result_.nodes.size()) - 1, 0};
  }

  void lower_node(const Node& node) {
    const NodeLayout& layout = layouts_.nodes[node.id];
    const Placement& placement = layout.placement;
    if (node.op == "to") {
      physical_[{node.id, 0}] = convert(node.inputs[0], layouts_.output({node.id, 0}), node.location);
      return;
    }
    std::vector<std::vector<TensorRef>> inputs;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      inputs.push_back(convert(node.inputs[i], layouts_.input(node.id, static_cast<int>(i)), node.location));
    }
    const OpDef& op = OpRegistry::global().op(node.op);
    for (int e = 0; e < placement.size(); ++e) {
      if (!kept(placement.devices[e])) {
        for (size_t o = 0; o < node.outputs.size(); ++o)
          physical_[{node.id, static_cast<int>(o)}].push_back(kElsewhere);
        continue;
      }
      PhysicalNode instance{.name = instance_name(node.name, placement, e),
                            .location = node.location,
                            .device = device_index(placement.devices[e]),
                            .attrs = node.attrs,
                            .logical = node.id};
      std::vector<Region> regions;
      for (size_t o = 0; o < node.outputs.size(); ++o) {
        const Layout out = layouts_.output({node.id, static_cast<int>(o)});
        regions.push_back(shard_region(node.outputs[o].shape, placement, out.sbp, e));
        instance.outputs.push_back({regions.back().shape(), node.outputs[o].dtype});
        instance.layouts.push_back(out.to_string());
      }
      if (node.op == "input") {
        instance.kind = Kind::input;
        instance.starts = regions[0].starts;
      } else if (node.op == "variable") {
        instance.kind = Kind::variable;
        instance.variable = node.attrs.get_string("name");
      } else {
        instance.kind = op.is_update() ? Kind::update : Kind::kernel;
        instance.op = node.op;
        std::vector<TensorType> logical_inputs, local_inputs;
        for (size_t i = 0; i < node.inputs.size(); ++i) {
          const TensorRef& in = node.inputs[i];
          instance.inputs.push_back(inputs[i][e]);
          logical_inputs.push_back(graph_.node(in.node).outputs[in.output]);
          local_inputs.push_back(type_of(inputs[i][e]));
        }
        const bool sharded = logical_inputs != local_inputs || instance.outputs != node.outputs;
        if (sharded && op.localize) {
          op.localize(LocalizeContext{logical_inputs, node.outputs, local_inputs, instance.outputs, regions},
                      instance.attrs);
        }
        check_instance(node, op, instance, local_inputs);
      }
      const TensorRef ref = add(std::move(instance));
      for (size_t o = 0; o < node.outputs.size(); ++o) {
        physical_[{node.id, static_cast<int>(o)}].push_back({ref.node, static_cast<int>(o)});
      }
    }
  }

  // An instance's own shape inference must give the shard shapes its signature promised.
  void check_instance(const Node& node, const OpDef& op, const PhysicalNode& instance,
                      const std::vector<TensorType>& local_inputs) const {
    std::vector<TensorType> inferred;
    try {
      inferred = op.infer(InferContext{local_inputs, instance.attrs});
    } catch (const Error& error) {
      throw error.with_context(concat("laying ", describe(node), " over its devices (a bug in its SBP rules)"));
    }
    if (inferred != instance.outputs) {
      throw Error::FailedPrecondition(concat("laying ", describe(node),
                                             " over its devices: a shard's outputs do not have the shapes its SBP "
                                             "signature gives (a bug in its SBP rules)"));
    }
  }

  const TensorType& type_of(const TensorRef& ref) const { return result_.nodes[ref.node].outputs[ref.output]; }

  // A fetch reads the first device's copy of the tensor broadcast over its placement: the
  // conversion is a collective, so no device gathers from every other one.
  void add_fetch(int index) {
    const Tensor& tensor = fetches_[index];
    const TensorRef ref{tensor.node(), tensor.output()};
    const Layout from = layouts_.output(ref);
    const Layout whole{from.placement, NdSbp(std::vector<Sbp>(from.sbp.size(), B))};
    const TensorRef source = convert(ref, whole, graph_.node(ref.node).location)[0];
    if (!kept(from.placement.devices[0])) return;
    PhysicalNode fetch{.kind = Kind::fetch,
                       .name = concat("fetch/", tensor.name()),
                       .location = graph_.node(ref.node).location,
                       .device = result_.nodes[source.node].device,
                       .inputs = {source},
                       .fetch_index = index};
    add(std::move(fetch));
  }

  // The instances of logical tensor `ref` laid out as `to`, one per device of to.placement,
  // adding the boxing pieces the first time a conversion is asked for.
  std::vector<TensorRef> convert(const TensorRef& ref, const Layout& to, const std::string& location) {
    const Layout from = layouts_.output(ref);
    if (from == to) return physical_.at(ref);
    const std::string key = concat(ref.node, ":", ref.output, " ", to.to_string());
    auto cached = conversions_.find(key);
    if (cached != conversions_.end()) return cached->second;
    const Node& producer = graph_.node(ref.node);
    const TensorType& whole = producer.outputs[ref.output];
    const std::string tensor_name = ref.output == 0 ? producer.name : concat(producer.name, ":", ref.output);
    std::vector<TensorRef> current = physical_.at(ref);
    result_.boxing_lower_bound += boxing_lower_bound(whole, from, to);
    if (const std::optional<std::vector<CollectiveStep>> steps = collective_path(whole.shape, from, to)) {
      for (const CollectiveStep& step : *steps) {
        if (step.local) {
          current = lower_pieces(plan_boxing(whole, step.from, step.to), whole, current, tensor_name, location);
        } else {
          result_.boxing_bytes += collective_bytes(whole.shape, whole.dtype, step);
          current = lower_collective(step, whole, current, tensor_name, location);
        }
      }
    } else {
      current = lower_pieces(plan_boxing(whole, from, to), whole, current, tensor_name, location);
    }
    conversions_[key] = current;
    return current;
  }

  std::vector<TensorRef> lower_pieces(const BoxingPlan& plan, const TensorType& whole, std::vector<TensorRef> current,
                                      const std::string& tensor_name, const std::string& location) {
    result_.boxing_bytes += plan.bytes;
    for (const BoxingStage& stage : plan.stages) {
      std::vector<TensorRef> next;
      for (const BoxingTarget& target : stage.targets) {
        next.push_back(lower_target(stage, target, whole, current, tensor_name, location));
      }
      current = std::move(next);
    }
    return current;
  }

  // One collective per device of the placement; the groups of one step are numbered apart
  // from every other step's, in the same order on every rank.
  std::vector<TensorRef> lower_collective(const CollectiveStep& step, const TensorType& whole,
                                          const std::vector<TensorRef>& sources, const std::string& tensor_name,
                                          const std::string& location) {
    const Placement& placement = step.to.placement;
    const std::string kind = name_of(step.kind);
    const Sbp& from = step.from.sbp[step.mesh_axis];
    const std::string reduce = from.kind() == Sbp::Kind::partial_max ? "max" : from.is_partial() ? "sum" : "none";
    std::vector<TensorRef> result;
    for (int e = 0; e < placement.size(); ++e) {
      ++boxing_count_;  // counted on every rank, so that names agree
      if (!kept(placement.devices[e])) {
        result.push_back(kElsewhere);
        continue;
      }
      CollectiveGroup group = collective_group(whole.shape, step, e);
      PhysicalNode node{
          .kind = Kind::collective,
          .op = kind,
          .name = concat("boxing/", tensor_name, "/", kind, "@", placement.devices[e], "#", boxing_count_),
          .location = location,
          .device = device_index(placement.devices[e]),
          .inputs = {sources[e]},
          .attrs = {{"reduce", reduce},
                    {"group", static_cast<int64_t>(collective_groups_ + collective_group_index(step, e))},
                    {"member", static_cast<int64_t>(group.member)},
                    {"box", group.box.extents},
                    {"from_axis", static_cast<int64_t>(group.from_axis)},
                    {"to_axis", static_cast<int64_t>(group.to_axis)}},
          .outputs = {shard_type(whole, step.to, e)},
          .layouts = {step.to.to_string()},
          .members = std::move(group.devices)};
      result.push_back(add(std::move(node)));
    }
    collective_groups_ += placement.size() / static_cast<int>(placement.mesh[step.mesh_axis]);
    return result;
  }

  TensorRef lower_target(const BoxingStage& stage, const BoxingTarget& target, const TensorType& whole,
                         const std::vector<TensorRef>& sources, const std::string& tensor_name,
                         const std::string& location) {
    const int device = stage.to.placement.devices[target.target];
    const TensorType type = shard_type(whole, stage.to, target.target);
    const std::string layout = stage.to.to_string();
    const auto piece_node = [&](std::string what, std::string op, int on_device, std::vector<TensorRef> inputs,
                                Attributes attrs, TensorType out) {
      return PhysicalNode{.op = std::move(op),
                          .name = concat("boxing/", tensor_name, "/", what, "@", on_device, "#", boxing_count_),
                          .location = location,
                          .device = device_index(on_device),
                          .inputs = std::move(inputs),
                          .attrs = std::move(attrs),
                          .outputs = {std::move(out)},
                          .layouts = {layout}};
    };
    const bool target_kept = kept(device);
    ++boxing_count_;  // per target and per piece on every rank, so that names agree
    if (target.zeros) {
      if (!target_kept) return kElsewhere;
      const double value = target.partial == Sbp::Kind::partial_max ? -std::numeric_limits<double>::infinity() : 0.0;
      return add(piece_node(
          "zeros", "fill", device, {},
          {{"shape", type.shape.dims()}, {"value", value}, {"dtype", std::string(name_of(type.dtype))}}, type));
    }
    std::vector<TensorRef> pieces;
    std::vector<int64_t> offsets;
    for (const BoxingPiece& piece : target.pieces) {
      ++boxing_count_;
      const int source_device = stage.from.placement.devices[piece.source];
      const bool source_kept = kept(source_device);
      const bool across = rank_of(source_device) != rank_of(device);
      const int channel = across ? channels_++ : -1;  // numbered alike on every rank
      if (!target_kept && !(across && source_kept)) continue;
      TensorRef source = sources[piece.source];
      const TensorType piece_type{Shape(piece.extents), whole.dtype};
      if (source_kept) {
        const bool whole_shard =
            std::all_of(piece.source_starts.begin(), piece.source_starts.end(), [](int64_t s) { return s == 0; }) &&
            piece.extents == type_of(source).shape.dims();
        if (!whole_shard) {
          std::vector<int64_t> ends = piece.source_starts;
          for (size_t a = 0; a < ends.size(); ++a) ends[a] += piece.extents[a];
          source = add(piece_node("slice", "slice", source_device, {source},
                                  {{"starts", piece.source_starts}, {"ends", ends}}, piece_type));
        }
      }
      if (across) {
        if (source_kept) {
          PhysicalNode send =
              piece_node(concat("send", source_device, "to", device), "send", source_device, {source}, {}, piece_type);
          send.kind = Kind::send;
          send.channel = channel;
          send.peer_rank = rank_of(device);
          add(std::move(send));
        }
        if (!target_kept) continue;
        PhysicalNode recv = piece_node(concat("recv", source_device, "to", device), "recv", device, {}, {}, piece_type);
        recv.kind = Kind::recv;
        recv.channel = channel;
        recv.peer_rank = rank_of(source_device);
        source = add(std::move(recv));
      } else if (source_device != device) {
        source = add(piece_node(concat("copy", source_device, "to", device), "copy", device, {source}, {}, piece_type));
      }
      pieces.push_back(source);
      offsets.insert(offsets.end(), piece.target_starts.begin(), piece.target_starts.end());
    }
    if (!target_kept) return kElsewhere;
    if (pieces.size() == 1 && !target.reduce && type_of(pieces[0]).shape == type.shape) return pieces[0];
    const std::string reduce = !target.reduce ? "none" : target.partial == Sbp::Kind::partial_max ? "max" : "sum";
    return add(piece_node(reduce == "none" ? "assemble" : concat("reduce_", reduce), "boxing_assemble", device, pieces,
                          {{"shape", type.shape.dims()}, {"offsets", offsets}, {"reduce", reduce}}, type));
  }

  const Graph& graph_;
  const SbpAssignment& layouts_;
  const std::vector<Tensor>& fetches_;
  bool training_;
  const RankShare& share_;
  PhysicalGraph result_;
  std::map<TensorRef, std::vector<TensorRef>> physical_;  // logical tensor -> per device of its placement
  std::map<std::string, std::vector<TensorRef>> conversions_;
  int boxing_count_ = 0;
  int collective_groups_ = 0;
  int channels_ = 0;
};

}  // namespace

std::vector<int> plan_devices(const SbpAssignment& layouts) {
  std::set<int> devices;
  const Placement* last = nullptr;  // most nodes share a few placements
  for (const NodeLayout& layout : layouts.nodes) {
    if (last != nullptr && layout.placement == *last) continue;
    if (layout.placement.device != DeviceType::cpu) {
      throw Error::Unimplemented(
          concat("placement ", layout.placement.to_string(), ": this compiler lays tensors over CPU devices only"));
    }
    devices.insert(layout.placement.devices.begin(), layout.placement.devices.end());
    last = &layout.placement;
  }
  return {devices.begin(), devices.end()};
}

PhysicalGraph lower(const Graph& graph, const SbpAssignment& layouts, const std::vector<Tensor>& fetches, bool training,
                    const std::vector<int>& devices, const RankShare& share) {
  return Lowering(graph, layouts, fetches, training, devices, share).run();
}

}  // namespace tessel::physical
