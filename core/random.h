// Deterministic random numbers that are the same on every machine and compiler
// (std::normal_distribution is not). Counter-based: value i of stream s is a pure function
// of (s, i), so kernels can draw in parallel and a gradient can redraw a forward's mask.
#pragma once

#include <cstdint>
#include <string_view>

namespace tessel {

uint64_t mix64(uint64_t x);                       // a strong 64-bit bit mixer (splitmix64 finaliser)
uint64_t hash_name(std::string_view name);        // FNV-1a, for per-name seeds
float uniform_at(uint64_t seed, uint64_t index);  // in [0, 1)
float normal_at(uint64_t seed, uint64_t index);   // standard normal (Box-Muller)

}  // namespace tessel
