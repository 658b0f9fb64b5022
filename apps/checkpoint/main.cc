// tessel-checkpoint: what a checkpoint holds, and whether its bytes are intact.
//
//   tessel-checkpoint list PATH      variables, shapes, shards, step and size (PATH: a checkpoint,
//                                    or a root: each of its checkpoints, newest first)
//   tessel-checkpoint verify PATH    reads every byte and checks every checksum; for a root, each
//                                    checkpoint, and which one restoring "the latest" would take
//
// Exits 0 when everything named is intact, 1 when something is damaged, 2 for bad usage.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/cli/flags.h"
#include "core/error.h"
#include "core/logging.h"
#include "runtime/checkpoint.h"

namespace {

// PATH itself when it is a checkpoint, else the checkpoints under it, newest first.
std::vector<std::string> checkpoints_at(const std::string& path) {
  if (std::filesystem::exists(path + "/MANIFEST")) return {path};
  std::vector<std::string> found = tessel::checkpoint::list(path);
  if (found.empty()) {
    if (!std::filesystem::exists(path)) throw tessel::Error::NotFound(tessel::concat("no such directory: ", path));
    throw tessel::Error::NotFound(
        tessel::concat("no checkpoint in ", path, " (expected step-N directories, or a MANIFEST)"));
  }
  return found;
}

}  // namespace

int main(int argc, char** argv) {
  tessel::init_logging(argv[0]);
  CLI::App app("lists and verifies checkpoints", "tessel-checkpoint");
  tessel::cli::style(app);
  std::string path;
  const std::string path_help = "a checkpoint (a step-N directory) or a checkpoint root holding them";
  CLI::App* list = app.add_subcommand("list", "variables, shapes, shards, step and size (a root: each checkpoint, newest first)");
  list->add_option("PATH", path, path_help)->required();
  CLI::App* verify = app.add_subcommand("verify", "reads every byte and checks every checksum (a root: each "
                                                  "checkpoint, and which one restoring the latest takes)");
  verify->add_option("PATH", path, path_help)->required();
  app.require_subcommand(1);
  tessel::cli::parse(app, argc, argv);
  const std::string command = list->parsed() ? "list" : "verify";
  try {
    bool damaged = false, chosen = false;
    for (const std::string& checkpoint : checkpoints_at(path)) {
      try {
        if (command == "list") {
          std::fputs(tessel::checkpoint::describe(checkpoint).c_str(), stdout);
        } else {
          const int64_t bytes = tessel::checkpoint::verify(checkpoint);
          std::printf("%s: intact, %lld tensor bytes verified%s\n", checkpoint.c_str(), static_cast<long long>(bytes),
                      chosen ? "" : " (restoring the latest takes this one)");
          chosen = true;
        }
      } catch (const tessel::Error& error) {
        std::printf("%s: DAMAGED: %s\n", checkpoint.c_str(), error.what());
        damaged = true;
      }
    }
    return damaged ? 1 : 0;
  } catch (const tessel::Error& error) {
    std::fprintf(stderr, "tessel-checkpoint: %s\n", error.what());
    return 1;
  }
}
