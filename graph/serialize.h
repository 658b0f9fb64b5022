// Writing a graph to protobuf (binary or text format) and reading one back.
#pragma once

#include <string>
#include <string_view>

#include "graph/graph.h"

namespace tessel {

std::string graph_to_text(const Graph& graph);
std::string graph_to_binary(const Graph& graph);

// Adds the nodes of a serialised tessel.proto.GraphDef to `graph`, which must be empty.
// Every node is checked as if the DSL had built it. Throws Error for malformed input, a
// duplicate name, a reference to a node that does not exist, a cycle, or an unknown op.
void graph_from_text(Graph& graph, std::string_view text);
void graph_from_binary(Graph& graph, std::string_view bytes);

}  // namespace tessel
