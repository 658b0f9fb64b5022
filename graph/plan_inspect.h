// Human-readable views of a plan, for the tessel-plan inspector and for debugging.
#pragma once

#include <string>

namespace tessel {
namespace proto {
class Plan;
}

// A report of the plan: per device, its actors (kind, op, inputs, outputs with their
// registers), the memory layout (each register's offset, size and lifetime), and the arena's
// size against the sum of all registers, which is what it would take without sharing.
std::string describe_plan(const proto::Plan& plan);

// The actor graph in Graphviz dot: data edges solid and labelled with the tensor type and
// register count, control edges dashed (red for those that order a step after the previous
// step's).
std::string plan_to_dot(const proto::Plan& plan);

}  // namespace tessel
