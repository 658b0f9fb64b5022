// The inputs a step expects, and the check every runtime makes of what it is fed.
#pragma once

#include <span>
#include <string>

#include "core/tensor.h"
#include "ops/registry.h"

namespace tessel {

struct FeedSpec {
  std::string name;
  TensorType type;
  std::string location;  // where the input was created
  bool needed = false;   // the step reads it, so it must be fed
};

// Throws Error::NotFound for a feed naming no input (listing the inputs), ShapeMismatch for a
// feed of the wrong shape or dtype, and FailedPrecondition for a needed input not fed.
void check_feeds(const Feeds& feeds, std::span<const FeedSpec> inputs);

}  // namespace tessel
