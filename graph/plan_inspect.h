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

// The actor graph in Graphviz dot: each device a cluster (its boxing, send, receive and
// collective actors drawn apart in a dashed cluster of their own, as orange hexagons); data
// edges solid and labelled with the tensor type, register count, SBP and bytes, control edges
// dashed (red for those that order a step after the previous step's).
std::string plan_to_dot(const proto::Plan& plan);

// Renders dot text with Graphviz's `dot` program into `path` in `format` ("svg" or "png").
// Error::FailedPrecondition when Graphviz is not installed or `dot` fails (with its message).
void render_dot(const std::string& dot, const std::string& format, const std::string& path);

}  // namespace tessel
