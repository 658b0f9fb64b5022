// tessel-launch's flags and environment (apps/launch/launch_config.h): lines up to the first
// empty one are arguments, the lines after it NAME=VALUE variables (Slurm's, Open MPI's,
// torchrun's and Tessel's own). A bad flag or variable is std::invalid_argument naming it; a
// host list is bounded.
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/launch/launch_config.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessel;
  std::vector<std::string> arguments;
  std::map<std::string, std::string> environment;
  bool in_environment = false;
  std::string_view text = fuzz::text_of(data, size);
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    if (!in_environment && line.empty()) {
      in_environment = true;
    } else if (!in_environment) {
      arguments.emplace_back(line);
    } else if (const size_t equals = line.find('='); equals != std::string_view::npos) {
      environment[std::string(line.substr(0, equals))] = std::string(line.substr(equals + 1));
    }
  }
  try {
    const launch::LaunchConfig config = launch::resolve_launch(arguments, environment);
    fuzz::expect(config.world_size >= 1, "a launch of no rank was accepted");
    for (int rank : config.ranks) fuzz::expect(rank >= 0 && rank < config.world_size, "a rank outside the job");
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
