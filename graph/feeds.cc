#include "graph/feeds.h"

#include <algorithm>

namespace tessel {

void check_feeds(const Feeds& feeds, std::span<const FeedSpec> inputs) {
  for (const auto& [name, value] : feeds) {
    auto it = std::find_if(inputs.begin(), inputs.end(), [&](const FeedSpec& f) { return f.name == name; });
    if (it == inputs.end()) {
      std::string names;
      for (const FeedSpec& f : inputs) names += concat(names.empty() ? "" : ", ", f.name);
      throw Error::NotFound(concat("feed '", name, "' names no input of the graph (inputs: ", names, ")"));
    }
    if (value.shape() != it->type.shape || value.dtype() != it->type.dtype) {
      throw Error::ShapeMismatch(concat("feed '", name, "' is ", value.shape(), " ", value.dtype(), ", but input '",
                                        name, "' (created at ", it->location, ") expects ", it->type.shape, " ",
                                        it->type.dtype));
    }
  }
  for (const FeedSpec& f : inputs) {
    if (f.needed && feeds.count(f.name) == 0) {
      throw Error::FailedPrecondition(concat("input '", f.name, "' (", f.type.shape, " ", f.type.dtype, ", created at ",
                                             f.location, ") is needed by this step but was not fed"));
    }
  }
}

}  // namespace tessel
