#include "graph/relayout.h"

#include <algorithm>

#include "core/error.h"

namespace tessel {

int devices_spanned(const Graph& graph, const Placement& default_placement) {
  int devices = 0;
  for (int device : default_placement.devices) devices = std::max(devices, device + 1);
  for (const Node& node : graph.nodes()) {
    if (!node.attrs.has("placement")) continue;
    for (int device : Placement::parse(node.attrs.get_string("placement")).devices) {
      devices = std::max(devices, device + 1);
    }
  }
  return devices;
}

Placement relaid_placement(const Placement& placement, int from, int to) {
  if (from < 1 || to < 1) throw Error::InvalidArgument(concat("re-laying from ", from, " to ", to, " devices"));
  if (placement.devices.empty()) throw Error::InvalidArgument("re-laying a placement of no devices");
  if (placement.device != DeviceType::cpu)
    throw Error::FailedPrecondition(concat("cannot re-lay ", placement.to_string(), ": only CPU placements move"));
  std::vector<int> sorted = placement.devices;
  std::sort(sorted.begin(), sorted.end());
  const int low = sorted.front(), high = sorted.back() + 1;
  if (high - low != placement.size() || high > from) {
    throw Error::FailedPrecondition(concat("cannot re-lay ", placement.to_string(), " from ", from, " to ", to,
                                           " devices: expected one range of cpu:0 .. cpu:", from - 1));
  }
  if (from == to) return placement;
  int first = static_cast<int>(int64_t{low} * to / from), last = static_cast<int>(int64_t{high} * to / from);
  if (last <= first) last = first + 1;  // a stage keeps at least one device
  if (last > to) first = to - 1, last = to;
  int count = last - first;
  if (placement.mesh_rank() == 2) {
    const int columns = static_cast<int>(placement.mesh[1]);
    if (count < columns && columns <= to) {  // a mesh that still fits keeps one row, moved to fit
      first = std::min(first, to - columns);
      count = columns;
    }
    if (count < columns) {
      throw Error::FailedPrecondition(concat("cannot re-lay ", placement.to_string(), " over ", to,
                                             " devices: its mesh keeps ", columns, " columns, but its share is ", count,
                                             " device(s)"));
    }
    const int rows = count / columns;
    return Placement::cpu_mesh(rows, columns, first);
  }
  return Placement::cpu(count, first);
}

void relay_graph(Graph& graph, int from, int to) {
  for (int id = 0; id < graph.num_nodes(); ++id) {
    Node& node = graph.mutable_node(id);
    if (!node.attrs.has("placement")) continue;
    const Placement placement = Placement::parse(node.attrs.get_string("placement"));
    node.attrs.set("placement", relaid_placement(placement, from, to).to_string());
  }
}

}  // namespace tessel
