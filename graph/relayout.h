// Re-laying a graph over another number of devices: what recovery does when a job loses or
// gains ranks (DESIGN.md, "Placements follow the job", and "Failure and elasticity", step 4).
//
//   relay_graph(graph, /*from=*/4, /*to=*/3);  // every placement of cpu:0..3 now spans cpu:0..2
//
// Each placement keeps its share of the devices: one over a range [a, b) of the old devices
// goes to [a * to / from, b * to / from) of the new ones (at least one device), so a split over
// 4 becomes a split over 3 and a pipeline stage on the second half stays on the second half. A
// 2-D mesh keeps its second axis (tensor parallelism) and its first, the data axis, takes what
// the range holds.
#pragma once

#include "graph/graph.h"

namespace tessel {

// The devices a graph spans: one more than the highest device any placement names, and at least
// `default_placement`'s.
int devices_spanned(const Graph& graph, const Placement& default_placement);

// `placement` (a range of cpu:0 .. from-1) re-laid over `to` devices. Error::FailedPrecondition
// naming the placement when no mesh of its shape fits (a mesh [r, 2] left with one device), or
// when its devices are not one range.
Placement relaid_placement(const Placement& placement, int from, int to);

// Rewrites every placement the graph's nodes name. The graph's variables, shapes and seed stay.
void relay_graph(Graph& graph, int from, int to);

}  // namespace tessel
