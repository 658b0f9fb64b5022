#include "graph/serialize.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <queue>

#include "graph/proto_conversion.h"

namespace tessel {
namespace {

proto::GraphDef to_proto(const Graph& graph) {
  proto::GraphDef def;
  def.set_seed(graph.seed());
  for (const Node& node : graph.nodes()) {
    proto::NodeDef* out = def.add_nodes();
    out->set_name(node.name);
    out->set_op(node.op);
    for (const TensorRef& in : node.inputs) {
      const std::string& source = graph.node(in.node).name;
      out->add_inputs(in.output == 0 ? source : concat(source, ":", in.output));
    }
    attributes_to_proto(node.attrs, *out->mutable_attrs());
  }
  return def;
}

struct InputReference {
  std::string node;
  int output = 0;
};

InputReference parse_reference(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return {text, 0};
  try {
    return {text.substr(0, colon), std::stoi(text.substr(colon + 1))};
  } catch (const std::exception&) {
    throw Error::InvalidArgument(concat("input '", text, "' is not of the form node or node:k"));
  }
}

// Node indices of `def` in an order where every node follows its inputs, keeping the file's
// order where it already is one (so a graph reads back exactly as written); Error on a cycle.
std::vector<int> topological_order(const proto::GraphDef& def) {
  std::map<std::string, int> index;
  for (int i = 0; i < def.nodes_size(); ++i) {
    const std::string& name = def.nodes(i).name();
    if (name.empty()) throw Error::InvalidArgument(concat("node ", i, " has no name"));
    if (!index.emplace(name, i).second) throw Error::InvalidArgument(concat("two nodes are named '", name, "'"));
  }
  std::vector<std::vector<int>> consumers(def.nodes_size());
  std::vector<int> waiting(def.nodes_size(), 0);
  for (int i = 0; i < def.nodes_size(); ++i) {
    for (const std::string& input : def.nodes(i).inputs()) {
      auto it = index.find(parse_reference(input).node);
      if (it == index.end()) {
        throw Error::NotFound(concat("node '", def.nodes(i).name(), "' reads '", input, "', which no node defines"));
      }
      consumers[it->second].push_back(i);
      ++waiting[i];
    }
  }
  std::vector<int> order;
  std::priority_queue<int, std::vector<int>, std::greater<>> ready;
  for (int i = 0; i < def.nodes_size(); ++i) {
    if (waiting[i] == 0) ready.push(i);
  }
  while (!ready.empty()) {
    const int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (int consumer : consumers[i]) {
      if (--waiting[consumer] == 0) ready.push(consumer);
    }
  }
  if (static_cast<int>(order.size()) == def.nodes_size()) return order;
  // Walk back from a node still waiting: every step finds another waiting input, so it cycles.
  int at = 0;
  while (waiting[at] == 0) ++at;
  std::vector<int> path;
  while (std::find(path.begin(), path.end(), at) == path.end()) {
    path.push_back(at);
    for (const std::string& input : def.nodes(at).inputs()) {
      const int source = index.at(parse_reference(input).node);
      if (waiting[source] > 0) {
        at = source;
        break;
      }
    }
  }
  std::string cycle = def.nodes(at).name();
  for (auto it = std::find(path.begin(), path.end(), at) + 1; it != path.end(); ++it) {
    cycle = def.nodes(*it).name() + " -> " + cycle;
  }
  throw Error::InvalidArgument(concat("the graph has a cycle: ", def.nodes(at).name(), " -> ", cycle,
                                      " (expected every node to depend only on nodes before it)"));
}

void from_proto(Graph& graph, const proto::GraphDef& def) {
  if (graph.num_nodes() != 0) throw Error::FailedPrecondition("a graph can only be loaded into an empty Graph");
  graph.set_seed(def.seed());
  std::map<std::string, int> loaded;  // proto name -> node id in `graph`
  for (int i : topological_order(def)) {
    const proto::NodeDef& node = def.nodes(i);
    const std::string context = concat("node '", node.name(), "' (op '", node.op(), "')");
    try {
      Attributes attrs = attributes_from_proto(node.attrs());
      std::vector<Tensor> inputs;
      for (const std::string& input : node.inputs()) {
        const InputReference ref = parse_reference(input);
        const int id = loaded.at(ref.node);
        if (ref.output < 0 || ref.output >= static_cast<int>(graph.node(id).outputs.size())) {
          throw Error::InvalidArgument(concat("input '", input, "' names output ", ref.output, " of a node with ",
                                              graph.node(id).outputs.size(), " outputs"));
        }
        inputs.push_back(graph.tensor({id, ref.output}));
      }
      if (node.op() == "input") {
        graph.input(node.name(), attrs.get_shape("shape"), dtype_named(attrs.get_string("dtype")));
      } else if (node.op() == "variable") {
        graph.add_variable(node.name(), std::move(attrs));
      } else {
        graph.apply(node.op(), inputs, std::move(attrs));
        graph.rename(graph.num_nodes() - 1, node.name());
      }
      graph.mutable_node(graph.num_nodes() - 1).location = concat("loaded node '", node.name(), "'");
      loaded[node.name()] = graph.num_nodes() - 1;
    } catch (const Error& error) {
      throw error.with_context(concat("loading graph: ", context));
    }
  }
}

}  // namespace

std::string graph_to_text(const Graph& graph) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(to_proto(graph), &text);
  return text;
}

std::string graph_to_binary(const Graph& graph) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);  // attribute maps in key order
    to_proto(graph).SerializeToCodedStream(&coded);
  }
  return bytes;
}

void graph_from_text(Graph& graph, std::string_view text) {
  proto::GraphDef def;
  if (!google::protobuf::TextFormat::ParseFromString(std::string(text), &def)) {
    throw Error::DataLoss("loading graph: the text is not a valid tessel.proto.GraphDef");
  }
  if (!strings_are_utf8(def)) {
    throw Error::DataLoss("loading graph: the text is not a valid tessel.proto.GraphDef: a string in it is not UTF-8");
  }
  from_proto(graph, def);
}

void graph_from_binary(Graph& graph, std::string_view bytes) {
  proto::GraphDef def;
  if (!def.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    throw Error::DataLoss("loading graph: the bytes are not a valid tessel.proto.GraphDef");
  }
  from_proto(graph, def);
}

}  // namespace tessel
