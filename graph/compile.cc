#include "graph/compile.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>

#include <fstream>
#include <set>
#include <sstream>

#include "graph/plan_builder.h"
#include "graph/proto_conversion.h"

namespace tessel {
namespace {

using plan_builder::ControlEdge;
using plan_builder::Reachability;

std::string node_context(const Node& node) {
  return concat(node.op, " '", node.name, "' (created at ", node.location, ")");
}

// The nodes a step runs: the fetched ones, the updates of a training plan, and their inputs.
std::vector<bool> needed_nodes(const Graph& graph, const PlanOptions& options) {
  std::vector<bool> needed(graph.num_nodes(), false);
  for (const Tensor& t : options.fetches) needed[t.node()] = true;
  if (options.training) {
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

class Compiler {
 public:
  Compiler(const Graph& graph, const PlanOptions& options) : graph_(graph), options_(options) {}

  proto::Plan compile() {
    check_options();
    proto::Plan plan;
    plan.set_seed(graph_.seed());
    plan.set_training(options_.training);
    proto::RankPlan* rank = plan.add_ranks();
    rank->set_rank(0);
    device_ = rank->add_devices();
    device_->set_device(options_.device);
    add_variables();
    add_actors();
    add_data_edges();
    Reachability reach(device_->actors_size());
    for (const proto::ActorDef& actor : device_->actors()) {
      for (const proto::InputDef& input : actor.inputs()) reach.add_edge(input.producer().actor(), actor.id());
    }
    std::vector<ControlEdge> edges = update_edges(reach);
    set_lifetimes();
    for (const ControlEdge& edge : plan_builder::lay_out_memory(*device_, reach)) edges.push_back(edge);
    plan_builder::add_control_edges(*device_, edges);
    add_feeds_and_fetches(plan);
    validate_plan(plan);
    return plan;
  }

 private:
  void check_options() const {
    for (const Tensor& t : options_.fetches) {
      if (!t.defined() || &t.graph() != &graph_) throw Error::InvalidArgument("a fetched tensor is not of this graph");
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

  void add_variables() {
    int64_t offset = 0;
    for (const Node& node : graph_.nodes()) {
      if (node.op != "variable") continue;
      proto::VariableDef* variable = device_->add_variables();
      variable->set_name(node.attrs.get_string("name"));
      tensor_type_to_proto(node.outputs[0], *variable->mutable_type());
      variable->set_offset(offset);
      attributes_to_proto(node.attrs, *variable->mutable_attrs());
      variable_offsets_[node.id] = offset;
      offset += plan_builder::aligned(bytes_of(node.outputs[0]));
    }
    device_->set_variable_arena_bytes(offset);
  }

  static int64_t bytes_of(const TensorType& type) {
    return type.shape.numel() * static_cast<int64_t>(size_of(type.dtype));
  }

  proto::ActorDef* new_actor(const Node& node, proto::ActorKind kind) {
    proto::ActorDef* actor = device_->add_actors();
    actor->set_id(device_->actors_size() - 1);
    actor->set_name(node.name);
    actor->set_kind(kind);
    actor->set_location(node.location);
    return actor;
  }

  // Schedule: nodes in id order (a topological order) with each fetch right after its
  // producer, then the updates, as the reference interpreter runs them.
  void add_actors() {
    const std::vector<bool> needed = needed_nodes(graph_, options_);
    actor_of_.assign(graph_.num_nodes(), -1);
    std::vector<int> updates;
    for (const Node& node : graph_.nodes()) {
      if (!needed[node.id]) continue;
      const OpDef& op = OpRegistry::global().op(node.op);
      if (op.is_update()) {
        updates.push_back(node.id);
        continue;
      }
      add_node_actor(node);
      for (size_t f = 0; f < options_.fetches.size(); ++f) {
        const Tensor& fetched = options_.fetches[f];
        if (fetched.node() != node.id) continue;
        proto::ActorDef* fetch = device_->add_actors();
        fetch->set_id(device_->actors_size() - 1);
        fetch->set_name(concat("fetch/", fetched.name()));
        fetch->set_kind(proto::FETCH);
        fetch->set_location(node.location);
        fetch->set_fetch_index(static_cast<int>(f));
        fetch_sources_.push_back({fetch->id(), TensorRef{fetched.node(), fetched.output()}});
      }
    }
    for (int id : updates) add_node_actor(graph_.node(id));
  }

  void add_node_actor(const Node& node) {
    proto::ActorDef* actor;
    if (node.op == "input") {
      actor = new_actor(node, proto::INPUT);
      actor->set_driven(true);
      actor->set_feed(node.name);
    } else if (node.op == "variable") {
      actor = new_actor(node, proto::VARIABLE);
      actor->set_driven(true);
      actor->set_variable(node.attrs.get_string("name"));
    } else {
      const OpDef& op = OpRegistry::global().op(node.op);
      actor = new_actor(node, op.is_update() ? proto::UPDATE : proto::KERNEL);
      actor->set_op(node.op);
      attributes_to_proto(node.attrs, *actor->mutable_attrs());
      actor->set_driven(node.inputs.empty());
      const DType dispatch = node.inputs.empty() ? node.outputs[0].dtype : input_type(node, 0).dtype;
      try {
        OpRegistry::global().kernel(node.op, DeviceType::cpu, dispatch);
      } catch (const Error& error) {
        throw error.with_context(concat("compiling ", node_context(node)));
      }
    }
    actor_of_[node.id] = actor->id();
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      proto::OutputDef* output = actor->add_outputs();
      tensor_type_to_proto(node.outputs[o], *output->mutable_type());
      output->set_register_bytes(bytes_of(node.outputs[o]));
      if (node.op == "variable") {
        output->set_register_count(1);
        output->add_offsets(variable_offsets_.at(node.id));
        continue;
      }
      int count = options_.register_count;
      auto it = options_.register_counts.find(Tensor(const_cast<Graph*>(&graph_), node.id, static_cast<int>(o)));
      if (it != options_.register_counts.end()) count = it->second;
      output->set_register_count(count);
      output->set_shared(options_.share_memory && count == 1);
    }
  }

  const TensorType& input_type(const Node& node, int index) const {
    const TensorRef& ref = node.inputs[index];
    return graph_.node(ref.node).outputs[ref.output];
  }

  void connect(int consumer, const TensorRef& source) {
    const int producer = actor_of_[source.node];
    proto::ActorDef* to = device_->mutable_actors(consumer);
    proto::Endpoint* endpoint = device_->mutable_actors(producer)->mutable_outputs(source.output)->add_consumers();
    endpoint->set_actor(consumer);
    endpoint->set_port(to->inputs_size());
    proto::InputDef* input = to->add_inputs();
    input->mutable_producer()->set_actor(producer);
    input->mutable_producer()->set_port(source.output);
  }

  void add_data_edges() {
    for (const Node& node : graph_.nodes()) {
      if (actor_of_[node.id] < 0) continue;
      for (const TensorRef& in : node.inputs) connect(actor_of_[node.id], in);
    }
    for (const auto& [fetch, source] : fetch_sources_) connect(fetch, source);
  }

  // An update writes variables in place: it waits for every other reader of those variables
  // in its step, and a variable hands out its next step only once the update acked it.
  std::vector<ControlEdge> update_edges(Reachability& reach) {
    std::vector<ControlEdge> edges;
    std::set<int> written;
    for (const Node& node : graph_.nodes()) {
      const int update = actor_of_[node.id];
      if (update < 0 || device_->actors(update).kind() != proto::UPDATE) continue;
      for (int index : OpRegistry::global().op(node.op).mutated_inputs) {
        if (index >= static_cast<int>(node.inputs.size())) continue;
        const Node& target = graph_.node(node.inputs[index].node);
        if (target.op != "variable") {
          throw Error::InvalidArgument(concat("compiling ", node_context(node), ": input ", index, " ('", target.name,
                                              "') is written in place, so it must be a variable"));
        }
        if (!written.insert(target.id).second) {
          throw Error::InvalidArgument(
              concat("compiling ", node_context(node), ": variable '", target.name, "' is updated by two ops"));
        }
        for (const proto::Endpoint& reader : device_->actors(actor_of_[target.id]).outputs(0).consumers()) {
          if (reader.actor() == update || reach.reaches(reader.actor(), update)) continue;
          reach.add_edge(reader.actor(), update);
          edges.push_back({reader.actor(), update, 0});
        }
      }
    }
    return edges;
  }

  void set_lifetimes() {
    for (proto::ActorDef& actor : *device_->mutable_actors()) {
      for (proto::OutputDef& output : *actor.mutable_outputs()) {
        int64_t last = actor.id();
        for (const proto::Endpoint& consumer : output.consumers()) last = std::max<int64_t>(last, consumer.actor());
        output.set_first_use(actor.id());
        output.set_last_use(last);
      }
    }
  }

  void add_feeds_and_fetches(proto::Plan& plan) const {
    for (const Node& node : graph_.nodes()) {
      if (node.op != "input") continue;
      proto::FeedDef* feed = plan.add_feeds();
      feed->set_needed(actor_of_[node.id] >= 0);
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
  proto::DevicePlan* device_ = nullptr;
  std::vector<int> actor_of_;  // node id -> actor id, -1 when the node is not needed
  std::map<int, int64_t> variable_offsets_;
  std::vector<std::pair<int, TensorRef>> fetch_sources_;
};

void check(bool condition, const proto::ActorDef& actor, const std::string& what) {
  if (!condition)
    throw Error::InvalidArgument(concat("invalid plan: actor ", actor.id(), " '", actor.name(), "': ", what));
}

}  // namespace

proto::Plan compile_plan(const Graph& graph, const PlanOptions& options) { return Compiler(graph, options).compile(); }

void validate_plan(const proto::Plan& plan) {
  for (const proto::RankPlan& rank : plan.ranks()) {
    for (const proto::DevicePlan& device : rank.devices()) {
      const int count = device.actors_size();
      for (int a = 0; a < count; ++a) {
        const proto::ActorDef& actor = device.actors(a);
        check(actor.id() == a, actor, concat("has id ", actor.id(), " at position ", a));
        check(actor.kind() != proto::ACTOR_KIND_UNSPECIFIED, actor, "has no kind");
        for (int i = 0; i < actor.inputs_size(); ++i) {
          const proto::Endpoint& from = actor.inputs(i).producer();
          check(from.actor() >= 0 && from.actor() < count, actor, concat("input ", i, " names actor ", from.actor()));
          const proto::ActorDef& producer = device.actors(from.actor());
          check(from.port() >= 0 && from.port() < producer.outputs_size(), actor,
                concat("input ", i, " names output ", from.port(), " of '", producer.name(), "'"));
          const auto& consumers = producer.outputs(from.port()).consumers();
          const bool listed = std::any_of(consumers.begin(), consumers.end(),
                                          [&](const proto::Endpoint& c) { return c.actor() == a && c.port() == i; });
          check(listed, actor, concat("input ", i, " is not among the consumers of '", producer.name(), "'"));
          check(actor.inputs(i).initial_tokens() == producer.outputs(from.port()).initial_tokens(), actor,
                concat("input ", i, " disagrees with its producer on initial tokens"));
        }
        for (int o = 0; o < actor.outputs_size(); ++o) {
          const proto::OutputDef& output = actor.outputs(o);
          check(output.register_count() >= 1, actor, concat("output ", o, " has no register"));
          check(output.initial_tokens() <= output.register_count(), actor,
                concat("output ", o, " has more initial tokens than registers"));
          for (const proto::Endpoint& c : output.consumers()) {
            check(c.actor() >= 0 && c.actor() < count && c.port() >= 0 &&
                      c.port() < device.actors(c.actor()).inputs_size(),
                  actor, concat("output ", o, " names a consumer that does not exist"));
          }
          if (output.control()) continue;
          check(output.offsets_size() == output.register_count(), actor,
                concat("output ", o, " has ", output.offsets_size(), " offsets for ", output.register_count(),
                       " registers"));
          const int64_t arena = actor.kind() == proto::VARIABLE ? device.variable_arena_bytes() : device.arena_bytes();
          for (int64_t offset : output.offsets()) {
            check(offset >= 0 && offset + output.register_bytes() <= arena, actor,
                  concat("output ", o, " lies outside its arena of ", arena, " bytes"));
          }
          tensor_type_from_proto(output.type());
        }
      }
    }
  }
}

std::string plan_to_bytes(const proto::Plan& plan, PlanFormat format) {
  std::string bytes;
  if (format == PlanFormat::text) {
    google::protobuf::TextFormat::PrintToString(plan, &bytes);
    return bytes;
  }
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    plan.SerializeToCodedStream(&coded);
  }
  return bytes;
}

proto::Plan plan_from_bytes(std::string_view bytes, PlanFormat format) {
  proto::Plan plan;
  const bool parsed = format == PlanFormat::text
                          ? google::protobuf::TextFormat::ParseFromString(std::string(bytes), &plan)
                          : plan.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  if (!parsed) {
    throw Error::DataLoss(
        concat("the ", format == PlanFormat::text ? "text" : "bytes", " are not a valid tessel.proto.Plan"));
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
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error::NotFound(concat("no plan file at '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return plan_from_bytes(buffer.str(), format_of(path));
  } catch (const Error& error) {
    throw error.with_context(concat("reading plan '", path, "'"));
  }
}

}  // namespace tessel
