#include "graph/compile.h"

#include <atomic>

#include <glog/logging.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "graph/physical.h"
#include "graph/plan_builder.h"
#include "graph/proto_conversion.h"
#include "ops/registry.h"
#include "sbp/collective.h"

namespace tessel {
namespace {

using physical::Kind;
using physical::PhysicalGraph;
using physical::PhysicalNode;
using plan_builder::ControlEdge;
using plan_builder::StepOrder;

std::string node_context(const PhysicalNode& node) {
  return concat(node.op, " '", node.name, "' (created at ", node.location, ")");
}

int64_t bytes_of(const TensorType& type) { return type.shape.numel() * static_cast<int64_t>(size_of(type.dtype)); }

// Compiles the physical graph of the whole rank into one list of actors (ids are schedule
// positions across its devices), lays out each device's arena, then splits the list into
// device plans whose endpoints name (device, actor).
class Compiler {
 public:
  Compiler(const Graph& graph, const PlanOptions& options) : graph_(graph), options_(options) {}

  proto::Plan compile() {
    check_options();
    const SbpAssignment layouts = infer_sbp(graph_, options_.placement);
    const std::vector<int> devices = physical::plan_devices(layouts);
    assign_ranks(devices);
    physical_ =
        physical::lower(graph_, layouts, options_.fetches, options_.training, devices, {rank_of_, options_.rank});
    if (options_.fuse) physical::fuse_epilogues(physical_);
    proto::Plan plan;
    plan.set_seed(graph_.seed());
    plan.set_rank_count(options_.ranks);
    plan.set_training(options_.training);
    plan.set_boxing_bytes(physical_.boxing_bytes);
    plan.set_boxing_lower_bound(physical_.boxing_lower_bound);
    lay_out_variables();
    add_actors();
    add_data_edges();
    StepOrder order(all_.actors_size());
    for (const proto::ActorDef& actor : all_.actors()) {
      for (const proto::InputDef& input : actor.inputs()) order.add_edge(input.producer().actor(), actor.id());
    }
    std::vector<ControlEdge> edges = update_edges(order);
    set_lifetimes();
    std::vector<plan_builder::ArenaSize> arenas(physical_.devices.size());
    for (size_t d = 0; d < physical_.devices.size(); ++d) {
      if (!lowered(static_cast<int>(d))) continue;
      for (const ControlEdge& edge :
           plan_builder::lay_out_memory(all_, device_of_, static_cast<int>(d), order, arenas[d])) {
        edges.push_back(edge);
      }
    }
    plan_builder::add_control_edges(all_, edges);
    split_into_ranks(plan, arenas);
    add_feeds_and_fetches(plan);
    validate_plan(plan);
    return plan;
  }

 private:
  void check_options() const {
    for (const Tensor& t : options_.fetches) {
      if (!t.defined() || &t.graph() != &graph_) throw Error::InvalidArgument("a fetched tensor is not of this graph");
    }
    if (options_.ranks < 1) throw Error::InvalidArgument(concat("ranks is ", options_.ranks, ", expected at least 1"));
    if (options_.rank < -1 || options_.rank >= options_.ranks) {
      throw Error::InvalidArgument(
          concat("rank is ", options_.rank, ", expected -1 (every rank) or a rank below ", options_.ranks));
    }
    if (options_.register_count < 1) {
      throw Error::InvalidArgument(concat("register_count is ", options_.register_count, ", expected at least 1"));
    }
    for (const auto& [tensor, count] : options_.register_counts) {
      if (!tensor.defined() || &tensor.graph() != &graph_) {
        throw Error::InvalidArgument("register_counts names a tensor that is not of this graph");
      }
      if (count < 1) {
        throw Error::InvalidArgument(
            concat("register_counts gives tensor '", tensor.name(), "' ", count, " registers, expected at least 1"));
      }
    }
  }

  // Devices in ascending order fall into equal consecutive groups, one per rank.
  void assign_ranks(const std::vector<int>& device_list) {
    const int devices = static_cast<int>(device_list.size());
    if (devices % options_.ranks != 0) {
      std::string list;
      for (int d : device_list) list += concat(list.empty() ? "" : ",", d);
      throw Error::InvalidArgument(concat("the graph runs on ", devices, " devices (cpu:{", list,
                                          "}), which do not split evenly over ", options_.ranks,
                                          " ranks; expected a number of ranks that divides ", devices));
    }
    const int per_rank = devices / options_.ranks;
    for (int d = 0; d < devices; ++d) rank_of_.push_back(d / per_rank);
  }

  // Whether this plan holds device index `d`'s share.
  bool lowered(int d) const { return options_.rank < 0 || rank_of_[d] == options_.rank; }

  // Every variable shard of every device, needed or not: training and evaluation plans of
  // one graph lay variables out alike, so they share storage.
  void lay_out_variables() {
    variable_arena_.assign(physical_.devices.size(), 0);
    for (const physical::PhysicalVariable& variable : physical_.variables) {
      int64_t& offset = variable_arena_[variable.device];
      variable_offsets_[{variable.logical, variable.device}] = offset;
      offset += plan_builder::aligned(bytes_of(variable.shard));
    }
  }

  void add_actors() {
    for (const PhysicalNode& node : physical_.nodes) {
      proto::ActorDef* actor = all_.add_actors();
      actor->set_id(all_.actors_size() - 1);
      actor->set_name(node.name);
      actor->set_location(node.location);
      device_of_.push_back(node.device);
      switch (node.kind) {
        case Kind::input:
          actor->set_kind(proto::INPUT);
          actor->set_driven(true);
          actor->set_feed(graph_.node(node.logical).name);
          if (node.outputs[0] != graph_.node(node.logical).outputs[0]) {
            for (int64_t start : node.starts) actor->add_feed_starts(start);
          }
          break;
        case Kind::variable:
          actor->set_kind(proto::VARIABLE);
          actor->set_driven(true);
          actor->set_variable(node.variable);
          break;
        case Kind::fetch:
          actor->set_kind(proto::FETCH);
          actor->set_fetch_index(node.fetch_index);
          break;
        case Kind::send:
        case Kind::recv:
          actor->set_kind(node.kind == Kind::send ? proto::SEND : proto::RECV);
          actor->set_channel(node.channel);
          actor->set_peer_rank(node.peer_rank);
          break;
        case Kind::collective: {
          actor->set_kind(proto::COLLECTIVE);
          actor->set_op(node.op);
          Attributes attrs = node.attrs;
          std::vector<int64_t> members, ranks;
          for (int device : node.members) {
            members.push_back(device);
            ranks.push_back(rank_of_[global_device_index(device)]);
          }
          attrs.set("members", members);
          attrs.set("member_ranks", ranks);
          attributes_to_proto(attrs, *actor->mutable_attrs());
          break;
        }
        case Kind::kernel:
        case Kind::update: {
          actor->set_kind(node.kind == Kind::update ? proto::UPDATE : proto::KERNEL);
          actor->set_op(node.op);
          attributes_to_proto(node.attrs, *actor->mutable_attrs());
          actor->set_driven(node.inputs.empty());
          std::vector<TensorType> input_types;
          for (const TensorRef& in : node.inputs) input_types.push_back(type_of(in));
          const DType dispatch = dispatch_dtype(OpRegistry::global().find(node.op), input_types, node.outputs);
          try {
            OpRegistry::global().kernel(node.op, DeviceType::cpu, dispatch);
          } catch (const Error& error) {
            throw error.with_context(concat("compiling ", node_context(node)));
          }
          break;
        }
      }
      for (size_t o = 0; o < node.outputs.size(); ++o) {
        proto::OutputDef* output = actor->add_outputs();
        tensor_type_to_proto(node.outputs[o], *output->mutable_type());
        output->set_register_bytes(bytes_of(node.outputs[o]));
        if (o < node.layouts.size()) output->set_layout(node.layouts[o]);
        if (node.kind == Kind::variable) {
          output->set_register_count(1);
          output->add_offsets(variable_offsets_.at({node.logical, node.device}));
          continue;
        }
        int count = options_.register_count;
        if (node.logical >= 0) {
          auto it =
              options_.register_counts.find(Tensor(const_cast<Graph*>(&graph_), node.logical, static_cast<int>(o)));
          if (it != options_.register_counts.end()) count = it->second;
        }
        output->set_register_count(count);
        // A RECV's registers are written whenever its SEND is granted them, not when the RECV
        // acts, so they never share bytes; a SEND's output is the RECV's registers.
        const bool transfer = node.kind == Kind::send || node.kind == Kind::recv;
        output->set_shared(options_.share_memory && count == 1 && !transfer);
      }
    }
  }

  int global_device_index(int device) const {
    auto it = std::lower_bound(physical_.devices.begin(), physical_.devices.end(), device);
    CHECK(it != physical_.devices.end() && *it == device) << "cpu:" << device << " is not a device of the plan";
    return static_cast<int>(it - physical_.devices.begin());
  }

  const TensorType& type_of(const TensorRef& ref) const { return physical_.nodes[ref.node].outputs[ref.output]; }

  void add_data_edges() {
    for (int consumer = 0; consumer < all_.actors_size(); ++consumer) {
      for (const TensorRef& source : physical_.nodes[consumer].inputs) {
        proto::ActorDef* to = all_.mutable_actors(consumer);
        proto::Endpoint* endpoint = all_.mutable_actors(source.node)->mutable_outputs(source.output)->add_consumers();
        endpoint->set_actor(consumer);
        endpoint->set_port(to->inputs_size());
        proto::InputDef* input = to->add_inputs();
        input->mutable_producer()->set_actor(source.node);
        input->mutable_producer()->set_port(source.output);
      }
    }
  }

  // An update writes variables in place: it waits for every other reader of those variables
  // in its step, and a variable hands out its next step only once the update acked it.
  std::vector<ControlEdge> update_edges(StepOrder& order) {
    std::vector<ControlEdge> edges;
    std::set<int> written;
    for (int update = 0; update < all_.actors_size(); ++update) {
      const PhysicalNode& node = physical_.nodes[update];
      if (node.kind != Kind::update) continue;
      for (int index : OpRegistry::global().op(node.op).mutated_inputs) {
        if (index >= static_cast<int>(node.inputs.size())) continue;
        const int target = node.inputs[index].node;
        const PhysicalNode& variable = physical_.nodes[target];
        if (variable.kind != Kind::variable) {
          throw Error::InvalidArgument(concat("compiling ", node_context(node), ": input ", index, " ('", variable.name,
                                              "') is written in place, so it must be a variable"));
        }
        if (!written.insert(target).second) {
          throw Error::InvalidArgument(
              concat("compiling ", node_context(node), ": variable '", variable.name, "' is updated by two ops"));
        }
        for (const proto::Endpoint& reader : all_.actors(target).outputs(0).consumers()) {
          if (reader.actor() == update || order.reaches(reader.actor(), update)) continue;
          order.add_edge(reader.actor(), update);
          edges.push_back({reader.actor(), update, 0});
        }
      }
    }
    return edges;
  }

  void set_lifetimes() {
    for (proto::ActorDef& actor : *all_.mutable_actors()) {
      for (proto::OutputDef& output : *actor.mutable_outputs()) {
        int64_t last = actor.id();
        for (const proto::Endpoint& consumer : output.consumers()) last = std::max<int64_t>(last, consumer.actor());
        output.set_first_use(actor.id());
        output.set_last_use(last);
      }
    }
  }

  // Each rank's devices (local indices in ascending global order) and actors; endpoints name
  // (rank, local device, local actor).
  void split_into_ranks(proto::Plan& plan, const std::vector<plan_builder::ArenaSize>& arenas) {
    const int device_count = static_cast<int>(physical_.devices.size());
    std::vector<int> local_device(device_count);
    std::vector<int> share_of_rank(options_.ranks, -1);  // rank -> index in plan.ranks
    for (int r = 0; r < options_.ranks; ++r) {
      if (options_.rank >= 0 && r != options_.rank) continue;
      share_of_rank[r] = plan.ranks_size();
      plan.add_ranks()->set_rank(r);
    }
    for (int d = 0; d < device_count; ++d) {
      if (!lowered(d)) continue;
      proto::RankPlan& rank = *plan.mutable_ranks(share_of_rank[rank_of_[d]]);
      local_device[d] = rank.devices_size();
      proto::DevicePlan* device = rank.add_devices();
      device->set_device(concat("cpu:", physical_.devices[d]));
      device->set_arena_bytes(arenas[d].arena_bytes);
      device->set_register_bytes(arenas[d].register_bytes);
      device->set_variable_arena_bytes(variable_arena_[d]);
      for (const physical::PhysicalVariable& variable : physical_.variables) {
        if (variable.device != d) continue;
        const Node& node = graph_.node(variable.logical);
        proto::VariableDef* def = device->add_variables();
        def->set_name(node.attrs.get_string("name"));
        tensor_type_to_proto(variable.shard, *def->mutable_type());
        def->set_offset(variable_offsets_.at({variable.logical, variable.device}));
        attributes_to_proto(node.attrs, *def->mutable_attrs());
        tensor_type_to_proto(variable.whole, *def->mutable_logical_type());
        for (int64_t start : variable.starts) def->add_starts(start);
        def->set_layout(variable.layout);
        def->set_elsewhere(variable.elsewhere);
        def->set_writes_checkpoint(variable.writes_checkpoint);
        for (int rank : variable.slice_ranks) def->add_slice_ranks(rank);
      }
    }
    std::vector<int> local(all_.actors_size());
    std::vector<int> count(device_count, 0);
    for (int a = 0; a < all_.actors_size(); ++a) local[a] = count[device_of_[a]]++;
    const auto rename = [&](proto::Endpoint& endpoint) {
      const int global = endpoint.actor(), device = device_of_[global];
      endpoint.set_actor(local[global]);
      endpoint.set_device(local_device[device]);
      endpoint.set_rank(rank_of_[device]);
    };
    std::map<int, std::pair<int, int>> transfers;  // channel -> (SEND, RECV) over all_, -1 where absent
    for (int a = 0; a < all_.actors_size(); ++a) {
      const int d = device_of_[a];
      proto::ActorDef* actor =
          plan.mutable_ranks(share_of_rank[rank_of_[d]])->mutable_devices(local_device[d])->add_actors();
      *actor = all_.actors(a);
      actor->set_id(local[a]);
      for (proto::InputDef& input : *actor->mutable_inputs()) rename(*input.mutable_producer());
      for (proto::OutputDef& output : *actor->mutable_outputs()) {
        for (proto::Endpoint& consumer : *output.mutable_consumers()) rename(consumer);
      }
      if (actor->kind() == proto::SEND || actor->kind() == proto::RECV) {
        auto [it, added] = transfers.try_emplace(actor->channel(), -1, -1);
        (actor->kind() == proto::SEND ? it->second.first : it->second.second) = a;
      }
    }
    // A SEND's output goes to its RECV, which names the SEND as its producer; an end on a rank
    // this plan lacks is named by its rank alone (device and actor -1).
    const auto actor_at = [&](int a) {
      const int d = device_of_[a];
      return plan.mutable_ranks(share_of_rank[rank_of_[d]])->mutable_devices(local_device[d])->mutable_actors(local[a]);
    };
    const auto endpoint_of = [&](int a, int rank) {
      proto::Endpoint endpoint;
      endpoint.set_rank(rank);
      endpoint.set_device(a < 0 ? -1 : local_device[device_of_[a]]);
      endpoint.set_actor(a < 0 ? -1 : local[a]);
      return endpoint;
    };
    for (const auto& [channel, ends] : transfers) {
      const auto [send, recv] = ends;
      if (send >= 0)
        *actor_at(send)->mutable_outputs(0)->add_consumers() = endpoint_of(recv, actor_at(send)->peer_rank());
      if (recv >= 0) *actor_at(recv)->add_inputs()->mutable_producer() = endpoint_of(send, actor_at(recv)->peer_rank());
    }
  }

  void add_feeds_and_fetches(proto::Plan& plan) const {
    std::set<std::string> read;
    for (const PhysicalNode& node : physical_.nodes) {
      if (node.kind == Kind::input) read.insert(graph_.node(node.logical).name);
    }
    for (const Node& node : graph_.nodes()) {
      if (node.op != "input") continue;
      proto::FeedDef* feed = plan.add_feeds();
      feed->set_needed(read.count(node.name) > 0);
      feed->set_name(node.name);
      tensor_type_to_proto(node.outputs[0], *feed->mutable_type());
      feed->set_location(node.location);
    }
    for (const Tensor& t : options_.fetches) {
      proto::FetchDef* fetch = plan.add_fetches();
      fetch->set_tensor(t.name());
      tensor_type_to_proto(t.type(), *fetch->mutable_type());
    }
  }

  const Graph& graph_;
  const PlanOptions& options_;
  PhysicalGraph physical_;
  proto::DevicePlan all_;       // every actor of the rank, ids in schedule order
  std::vector<int> device_of_;  // actor -> index in physical_.devices
  std::vector<int> rank_of_;    // index in physical_.devices -> rank
  std::vector<int64_t> variable_arena_;
  std::map<std::pair<int, int>, int64_t> variable_offsets_;  // (logical variable, device) -> offset
};

void check(bool condition, const proto::ActorDef& actor, const std::string& what) {
  if (!condition)
    throw Error::InvalidArgument(concat("invalid plan: actor ", actor.id(), " '", actor.name(), "': ", what));
}

// A collective's group as the runtime will read it: a known op, members with their ranks, and
// this actor among them on its own rank and device.
void check_collective(const proto::ActorDef& actor, int rank, const std::string& device, int rank_count) {
  try {
    const Attributes attrs = attributes_from_proto(actor.attrs());
    const std::vector<int64_t>& members = attrs.get_ints("members");
    const std::vector<int64_t>& ranks = attrs.get_ints("member_ranks");
    const int64_t member = attrs.get_int("member");
    check(parse_collective(actor.op()).has_value(), actor, concat("'", actor.op(), "' is not a collective"));
    check(!members.empty() && members.size() == ranks.size(), actor,
          "has members and member_ranks of different lengths");
    check(member >= 0 && member < static_cast<int64_t>(members.size()), actor,
          concat("is member ", member, " of ", members.size()));
    check(ranks[member] == rank && device == concat("cpu:", members[member]), actor,
          concat("is member ", member, ", which the group puts on rank ", ranks[member], " and cpu:", members[member],
                 ", not on rank ", rank, " and ", device));
    for (int64_t r : ranks) check(r >= 0 && r < rank_count, actor, concat("names rank ", r, " of ", rank_count));
    check(attrs.get_int("group") >= 0, actor, "has a negative group");
    attrs.get_shape("box");
    attrs.get_string("reduce");
  } catch (const Error& error) {
    if (std::string(error.what()).find("invalid plan") != std::string::npos) throw;
    throw Error::InvalidArgument(concat("invalid plan: actor ", actor.id(), " '", actor.name(), "': ", error.what()));
  }
}

}  // namespace

namespace {
std::atomic<int64_t> compiled{0};
}  // namespace

proto::Plan compile_plan(const Graph& graph, const PlanOptions& options) {
  compiled.fetch_add(1, std::memory_order_relaxed);
  return Compiler(graph, options).compile();
}

int64_t compile_count() { return compiled.load(std::memory_order_relaxed); }

const proto::RankPlan& share_of(const proto::Plan& plan, int rank) {
  for (const proto::RankPlan& share : plan.ranks()) {
    if (share.rank() == rank) return share;
  }
  throw Error::NotFound(concat("the plan has no share for rank ", rank, " (it holds ", plan.ranks_size(),
                               " of the job's ", std::max(plan.rank_count(), plan.ranks_size()), " ranks)"));
}

namespace {
// An INPUT copies its feed (or its shard of it, from feed_starts) into its register: the feed must
// be one the plan declares, and the register's box must lie inside it.
void check_input(const proto::ActorDef& actor, const proto::Plan& plan) {
  const auto feed = std::find_if(plan.feeds().begin(), plan.feeds().end(),
                                 [&](const proto::FeedDef& f) { return f.name() == actor.feed(); });
  check(feed != plan.feeds().end(), actor, concat("reads feed '", actor.feed(), "', which the plan does not declare"));
  check(actor.outputs_size() >= 1 && !actor.outputs(0).control(), actor, "is an INPUT without its output");
  const TensorType whole = tensor_type_from_proto(feed->type());
  const TensorType box = tensor_type_from_proto(actor.outputs(0).type());
  bool inside = whole.dtype == box.dtype;
  if (actor.feed_starts_size() == 0) {
    inside = inside && whole.shape == box.shape;
  } else {
    inside = inside && actor.feed_starts_size() == whole.shape.rank() && box.shape.rank() == whole.shape.rank();
    for (int i = 0; inside && i < whole.shape.rank(); ++i) {
      const int64_t start = actor.feed_starts(i);
      inside = start >= 0 && start <= whole.shape[i] - box.shape[i];
    }
  }
  check(inside, actor,
        concat("holds ", box.shape, " ", box.dtype, " from ", actor.feed_starts_size() ? "starts " : "the start ",
               Shape(std::vector<int64_t>(actor.feed_starts().begin(), actor.feed_starts().end())), " of feed '",
               actor.feed(), "' ", whole.shape, " ", whole.dtype, ", outside it"));
}

std::string describe_types(const std::vector<TensorType>& types) {
  std::string text = "(";
  for (size_t i = 0; i < types.size(); ++i) text += concat(i ? ", " : "", types[i].shape, " ", types[i].dtype);
  return text + ")";
}

// A KERNEL or UPDATE runs its op's kernel on the registers it is given, trusting their types:
// the op must exist, take that many inputs, and infer, from the input types and the actor's
// attributes, exactly the output types the plan gives. A FETCH copies out its one input.
void check_arity_and_types(const proto::ActorDef& actor, const std::vector<TensorType>& inputs,
                           const std::vector<TensorType>& outputs) {
  if (actor.kind() == proto::FETCH) {
    check(inputs.size() == 1, actor, concat("is a FETCH of ", inputs.size(), " data inputs, expected 1"));
    return;
  }
  if (actor.kind() != proto::KERNEL && actor.kind() != proto::UPDATE) return;
  const OpDef* op = OpRegistry::global().find(actor.op());
  check(op != nullptr, actor, concat("runs op '", actor.op(), "', which is not registered"));
  const int count = static_cast<int>(inputs.size());
  check(count >= op->min_inputs && (op->max_inputs < 0 || count <= op->max_inputs), actor,
        concat("gives op '", actor.op(), "' ", count, " inputs, expected ", op->min_inputs,
               op->max_inputs == op->min_inputs ? "" : concat(" to ", op->max_inputs)));
  std::vector<TensorType> inferred;
  try {
    const Attributes attrs = attributes_from_proto(actor.attrs());
    inferred = op->infer(InferContext{inputs, attrs});
  } catch (const Error& error) {
    check(false, actor, concat("has inputs or attributes its op refuses: ", error.what()));
  }
  check(inferred == outputs, actor,
        concat("has outputs ", describe_types(outputs), " where its op makes ", describe_types(inferred),
               " of its inputs ", describe_types(inputs)));
}

}  // namespace

void validate_plan(const proto::Plan& plan) {
  if (plan.ranks_size() == 0) {
    throw Error::InvalidArgument("invalid plan: it holds no rank's share (an empty file is no plan)");
  }
  const int rank_count = std::max(plan.rank_count(), plan.ranks_size());
  std::map<int, const proto::RankPlan*> ranks;
  for (const proto::RankPlan& rank : plan.ranks()) {
    if (!ranks.emplace(rank.rank(), &rank).second)
      throw Error::InvalidArgument(concat("invalid plan: rank ", rank.rank(), " has two shares"));
    if (rank.rank() < 0 || rank.rank() >= rank_count)
      throw Error::InvalidArgument(concat("invalid plan: a share for rank ", rank.rank(), " of ", rank_count));
  }
  const auto actor_at = [&](const proto::Endpoint& endpoint) -> const proto::ActorDef* {
    auto it = ranks.find(endpoint.rank());
    if (it == ranks.end()) return nullptr;
    const proto::RankPlan& rank = *it->second;
    if (endpoint.device() < 0 || endpoint.device() >= rank.devices_size()) return nullptr;
    const proto::DevicePlan& device = rank.devices(endpoint.device());
    if (endpoint.actor() < 0 || endpoint.actor() >= device.actors_size()) return nullptr;
    return &device.actors(endpoint.actor());
  };
  for (const proto::RankPlan& rank : plan.ranks()) {
    for (int d = 0; d < rank.devices_size(); ++d) {
      const proto::DevicePlan& device = rank.devices(d);
      constexpr int64_t kMaxArena = int64_t{1} << 48;
      if (device.arena_bytes() < 0 || device.arena_bytes() > kMaxArena || device.variable_arena_bytes() < 0 ||
          device.variable_arena_bytes() > kMaxArena) {
        throw Error::InvalidArgument(concat("invalid plan: device ", device.device(), " of rank ", rank.rank(),
                                            " has arenas of ", device.arena_bytes(), " and ",
                                            device.variable_arena_bytes(), " bytes, expected 0 to ", kMaxArena));
      }
      for (const proto::VariableDef& variable : device.variables()) {
        const TensorType type = tensor_type_from_proto(variable.type());
        if (variable.offset() < 0 || variable.offset() > device.variable_arena_bytes() - bytes_of(type) ||
            variable.offset() % plan_builder::kAlignment != 0) {
          throw Error::InvalidArgument(concat("invalid plan: variable '", variable.name(), "' (", bytes_of(type),
                                              " bytes) at offset ", variable.offset(), " does not lie aligned in the ",
                                              device.variable_arena_bytes(), "-byte variable arena of ",
                                              device.device()));
        }
      }
      const int count = device.actors_size();
      for (int a = 0; a < count; ++a) {
        const proto::ActorDef& actor = device.actors(a);
        check(actor.id() == a, actor, concat("has id ", actor.id(), " at position ", a));
        check(actor.kind() != proto::ACTOR_KIND_UNSPECIFIED, actor, "has no kind");
        // proto3 keeps an enum value it does not know: the runtime would take it for a kernel.
        check(proto::ActorKind_IsValid(actor.kind()), actor, concat("has kind ", actor.kind(), ", which is no actor kind"));
        const bool transfer = actor.kind() == proto::SEND || actor.kind() == proto::RECV;
        check(
            !transfer || (actor.peer_rank() != rank.rank() && actor.peer_rank() >= 0 && actor.peer_rank() < rank_count),
            actor, concat("is a transfer to rank ", actor.peer_rank(), ", which is not another rank of the plan"));
        // The other end of a transfer may be on a rank whose share this plan lacks.
        const auto elsewhere = [&](const proto::Endpoint& end) {
          return transfer && end.rank() == actor.peer_rank() && !ranks.count(end.rank()) && end.device() == -1 &&
                 end.actor() == -1 && end.port() == 0;
        };
        check(actor.kind() != proto::RECV || actor.inputs_size() == 1, actor, "is a RECV without its SEND");
        if (actor.kind() == proto::COLLECTIVE) check_collective(actor, rank.rank(), device.device(), rank_count);
        if (actor.kind() == proto::INPUT) check_input(actor, plan);
        check(actor.kind() != proto::FETCH || (actor.fetch_index() >= 0 && actor.fetch_index() < plan.fetches_size()),
              actor, concat("is fetch ", actor.fetch_index(), " of a plan of ", plan.fetches_size(), " fetches"));
        for (int i = 0; i < actor.inputs_size(); ++i) {
          const proto::Endpoint& from = actor.inputs(i).producer();
          if (actor.kind() == proto::RECV && elsewhere(from)) continue;
          const proto::ActorDef* producer = actor_at(from);
          check(producer != nullptr, actor,
                concat("input ", i, " names actor ", from.actor(), " of device ", from.device(), " of rank ",
                       from.rank()));
          check(from.rank() == rank.rank() || (actor.kind() == proto::RECV && producer->kind() == proto::SEND &&
                                               producer->channel() == actor.channel()),
                actor, concat("input ", i, " comes from rank ", from.rank(), " but is not the RECV of a SEND"));
          check(from.port() >= 0 && from.port() < producer->outputs_size(), actor,
                concat("input ", i, " names output ", from.port(), " of '", producer->name(), "'"));
          const auto& consumers = producer->outputs(from.port()).consumers();
          const bool listed = std::any_of(consumers.begin(), consumers.end(), [&](const proto::Endpoint& c) {
            return c.actor() == a && c.port() == i && c.device() == d && c.rank() == rank.rank();
          });
          check(listed, actor, concat("input ", i, " is not among the consumers of '", producer->name(), "'"));
          check(actor.inputs(i).initial_tokens() == producer->outputs(from.port()).initial_tokens(), actor,
                concat("input ", i, " disagrees with its producer on initial tokens"));
        }
        // Data inputs and outputs in order, as the runtime hands them to the kernel.
        std::vector<TensorType> input_types, output_types;
        for (const proto::InputDef& input : actor.inputs()) {
          const proto::Endpoint& from = input.producer();
          if (input.control() || from.rank() != rank.rank()) continue;
          input_types.push_back(tensor_type_from_proto(actor_at(from)->outputs(from.port()).type()));
        }
        for (const proto::OutputDef& output : actor.outputs()) {
          if (!output.control()) output_types.push_back(tensor_type_from_proto(output.type()));
        }
        check_arity_and_types(actor, input_types, output_types);
        for (int o = 0; o < actor.outputs_size(); ++o) {
          const proto::OutputDef& output = actor.outputs(o);
          check(output.register_count() >= 1, actor, concat("output ", o, " has no register"));
          check(output.initial_tokens() <= output.register_count(), actor,
                concat("output ", o, " has more initial tokens than registers"));
          for (const proto::Endpoint& c : output.consumers()) {
            if (actor.kind() == proto::SEND && elsewhere(c)) continue;
            const proto::ActorDef* consumer = actor_at(c);
            check(consumer != nullptr && c.port() >= 0 && c.port() < consumer->inputs_size(), actor,
                  concat("output ", o, " names a consumer that does not exist"));
            check(c.rank() == rank.rank() || actor.kind() == proto::SEND, actor,
                  concat("output ", o, " goes to rank ", c.rank(), " but only a SEND's output may"));
          }
          if (actor.kind() == proto::SEND && o == 0) {
            check(output.consumers_size() == 1, actor, "must feed exactly one RECV");
            const proto::ActorDef* recv = elsewhere(output.consumers(0)) ? nullptr : actor_at(output.consumers(0));
            check(recv == nullptr || (recv->kind() == proto::RECV && recv->channel() == actor.channel() &&
                                      recv->outputs(0).register_count() == output.register_count()),
                  actor, "must feed exactly one RECV of its channel with as many registers as it has");
            continue;  // its registers are the RECV's
          }
          if (output.control()) continue;
          check(output.offsets_size() == output.register_count(), actor,
                concat("output ", o, " has ", output.offsets_size(), " offsets for ", output.register_count(),
                       " registers"));
          const TensorType type = tensor_type_from_proto(output.type());
          // Actors write their type's bytes: a register of fewer would overrun its neighbours.
          check(output.register_bytes() == bytes_of(type), actor,
                concat("output ", o, " holds ", type.shape, " ", type.dtype, " (", bytes_of(type),
                       " bytes) in registers of ", output.register_bytes()));
          const int64_t arena = actor.kind() == proto::VARIABLE ? device.variable_arena_bytes() : device.arena_bytes();
          for (int64_t offset : output.offsets()) {
            check(offset >= 0 && offset <= arena - output.register_bytes(), actor,
                  concat("output ", o, " lies outside its arena of ", arena, " bytes"));
            // Kernels read their elements aligned (and vector loops by cache lines).
            check(offset % plan_builder::kAlignment == 0, actor,
                  concat("output ", o, " has a register at offset ", offset, ", not a multiple of ",
                         plan_builder::kAlignment, " bytes"));
          }
        }
      }
    }
  }
}

namespace {
// A binary plan: "TSLPLAN1", the message's length and its xxh64 (little-endian), then the message.
constexpr char kPlanMagic[8] = {'T', 'S', 'L', 'P', 'L', 'A', 'N', '1'};
constexpr size_t kPlanHeader = 24;

void put64(char* at, uint64_t value) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<char>(value >> (8 * i));
}
uint64_t get64(const char* at) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= uint64_t{static_cast<unsigned char>(at[i])} << (8 * i);
  return value;
}
}  // namespace

std::string plan_to_bytes(const proto::Plan& plan, PlanFormat format) {
  std::string bytes;
  if (format == PlanFormat::text) {
    google::protobuf::TextFormat::PrintToString(plan, &bytes);
    return bytes;
  }
  std::string message;
  {
    google::protobuf::io::StringOutputStream stream(&message);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    plan.SerializeToCodedStream(&coded);
  }
  bytes.resize(kPlanHeader);
  std::memcpy(bytes.data(), kPlanMagic, sizeof kPlanMagic);
  put64(bytes.data() + 8, message.size());
  put64(bytes.data() + 16, XXH64(message.data(), message.size(), 0));
  return bytes + message;
}

namespace {
// The first error the text parser reports, with its line and column (1-based).
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (text.empty()) text = concat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  std::string text;
};
}  // namespace

proto::Plan plan_from_bytes(std::string_view bytes, PlanFormat format) {
  if (bytes.size() > kMaxPlanBytes) {
    throw Error::DataLoss(
        concat("a plan of ", bytes.size(), " bytes is larger than the ", kMaxPlanBytes, " a plan may be"));
  }
  proto::Plan plan;
  if (format == PlanFormat::text) {
    google::protobuf::TextFormat::Parser parser;
    FirstError error;
    parser.RecordErrorsTo(&error);
    if (!parser.ParseFromString(std::string(bytes), &plan)) {
      throw Error::DataLoss(concat("the text is not a valid tessel.proto.Plan: ", error.text));
    }
    if (!strings_are_utf8(plan)) throw Error::DataLoss("the text is not a valid tessel.proto.Plan: a string in it is not UTF-8");
  } else {
    if (bytes.empty()) throw Error::DataLoss("the plan is empty: 0 bytes, where a binary plan has a header and a plan");
    if (bytes.size() < kPlanHeader || std::memcmp(bytes.data(), kPlanMagic, sizeof kPlanMagic) != 0) {
      throw Error::DataLoss(
          "these bytes are not a binary Tessel plan: it begins with \"TSLPLAN1\" (a plan written before plans "
          "carried checksums must be written again)");
    }
    const uint64_t length = get64(bytes.data() + 8), checksum = get64(bytes.data() + 16);
    if (length != bytes.size() - kPlanHeader) {
      throw Error::DataLoss(concat("the plan is truncated or too long: its header says ", length,
                                   " bytes of plan, and ", bytes.size() - kPlanHeader, " follow it"));
    }
    const uint64_t actual = XXH64(bytes.data() + kPlanHeader, length, 0);
    if (actual != checksum) {
      throw Error::DataLoss(
          concat("the plan is corrupt: its bytes have xxh64 ", actual, ", its header expects ", checksum));
    }
    if (!plan.ParseFromArray(bytes.data() + kPlanHeader, static_cast<int>(length))) {
      throw Error::DataLoss("the bytes are not a valid tessel.proto.Plan");
    }
  }
  validate_plan(plan);
  return plan;
}

namespace {
PlanFormat format_of(const std::string& path) {
  const auto ends_with = [&](std::string_view suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".pbtxt") || ends_with(".txt") ? PlanFormat::text : PlanFormat::binary;
}
}  // namespace

void write_plan(const proto::Plan& plan, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error::NotFound(concat("cannot write the plan to '", path, "'"));
  out << plan_to_bytes(plan, format_of(path));
  if (!out) throw Error::DataLoss(concat("writing the plan to '", path, "' failed"));
}

proto::Plan read_plan(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw Error::NotFound(concat("no plan file at '", path, "'"));
    throw Error::FailedPrecondition(concat("cannot read the plan file '", path, "': ", std::strerror(errno)));
  }
  if (S_ISDIR(status.st_mode)) throw Error::InvalidArgument(concat("'", path, "' is a directory, not a plan file"));
  if (S_ISREG(status.st_mode) && static_cast<uint64_t>(status.st_size) > kMaxPlanBytes) {
    throw Error::DataLoss(concat("the plan file '", path, "' has ", status.st_size, " bytes, more than the ",
                                 kMaxPlanBytes, " a plan may be"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error::FailedPrecondition(concat("cannot read the plan file '", path, "': ", std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return plan_from_bytes(buffer.str(), format_of(path));
  } catch (const Error& error) {
    throw error.with_context(concat("reading plan '", path, "'"));
  }
}

}  // namespace tessel
