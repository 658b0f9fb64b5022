#include "apps/launch/launch_config.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace tessel::launch {
namespace {

int to_int(const std::string& what, const std::string& text, int low, int high) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < low || value > high) {
    throw std::invalid_argument(what + " is '" + text + "', expected an integer in [" + std::to_string(low) + ", " +
                                std::to_string(high) + "]");
  }
  return static_cast<int>(value);
}

// Splits at commas that are not inside brackets.
std::vector<std::string> top_level_items(const std::string& list) {
  std::vector<std::string> items(1);
  int depth = 0;
  for (char c : list) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (depth < 0) throw std::invalid_argument("host list '" + list + "' has an unmatched ']'");
    if (c == ',' && depth == 0) {
      items.emplace_back();
    } else {
      items.back() += c;
    }
  }
  if (depth != 0) throw std::invalid_argument("host list '" + list + "' has an unmatched '['");
  return items;
}

}  // namespace

std::vector<std::string> expand_hostlist(const std::string& list) {
  std::vector<std::string> hosts;
  for (const std::string& item : top_level_items(list)) {
    if (item.empty()) throw std::invalid_argument("host list '" + list + "' has an empty entry");
    const size_t open = item.find('[');
    if (open == std::string::npos) {
      hosts.push_back(item);
      continue;
    }
    const size_t close = item.find(']', open);
    const std::string prefix = item.substr(0, open), suffix = item.substr(close + 1);
    std::string ranges = item.substr(open + 1, close - open - 1);
    size_t start = 0;
    while (start <= ranges.size()) {
      const size_t comma = ranges.find(',', start);
      const std::string range = ranges.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      const size_t dash = range.find('-');
      const std::string low = range.substr(0, dash), high = dash == std::string::npos ? low : range.substr(dash + 1);
      const int from = to_int("a range of host list '" + list + "'", low, 0, 1 << 30);
      const int to = to_int("a range of host list '" + list + "'", high, from, 1 << 30);
      for (int n = from; n <= to; ++n) {
        std::string digits = std::to_string(n);
        while (digits.size() < low.size()) digits = "0" + digits;  // node[01-10] keeps its width
        hosts.push_back(prefix + digits + suffix);
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return hosts;
}

LaunchConfig resolve_launch(const std::vector<std::string>& arguments,
                            const std::map<std::string, std::string>& environment) {
  const auto env = [&](const std::string& name) -> const std::string* {
    auto it = environment.find(name);
    return it == environment.end() ? nullptr : &it->second;
  };
  std::map<std::string, std::string> flags;
  LaunchConfig config;
  for (size_t i = 0; i < arguments.size(); ++i) {
    const std::string& argument = arguments[i];
    if (argument == "--") {
      config.command.assign(arguments.begin() + static_cast<long>(i) + 1, arguments.end());
      break;
    }
    if (argument.rfind("--", 0) != 0) {
      config.command.assign(arguments.begin() + static_cast<long>(i), arguments.end());
      break;
    }
    if (argument == "--join") {  // the one flag without a value
      config.join = true;
      continue;
    }
    static const std::vector<std::string> known = {
        "--nnodes",      "--nproc-per-node", "--node-rank",          "--master-addr",
        "--master-port", "--token",          "--heartbeat-deadline", "--max-restarts"};
    if (std::find(known.begin(), known.end(), argument) == known.end()) {
      throw std::invalid_argument("unknown flag '" + argument + "'");
    }
    if (i + 1 >= arguments.size()) throw std::invalid_argument(argument + " needs a value");
    flags[argument] = arguments[++i];
  }
  if (config.command.empty())
    throw std::invalid_argument("no program to launch (tessel-launch [flags] -- PROGRAM ...)");
  const auto flag = [&](const std::string& name) -> const std::string* {
    auto it = flags.find(name);
    return it == flags.end() ? nullptr : &it->second;
  };

  // One process per task of another launcher, which chose the rank.
  int rank = -1, local = 0;
  if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    config.source = "slurm";
    config.world_size = to_int("SLURM_NTASKS", *env("SLURM_NTASKS"), 1, 1 << 20);
    rank = to_int("SLURM_PROCID", *env("SLURM_PROCID"), 0, config.world_size - 1);
    if (env("SLURM_LOCALID")) local = to_int("SLURM_LOCALID", *env("SLURM_LOCALID"), 0, 1 << 20);
    const std::string* nodes = env("SLURM_STEP_NODELIST") ? env("SLURM_STEP_NODELIST") : env("SLURM_NODELIST");
    const std::vector<std::string> hosts = nodes ? expand_hostlist(*nodes) : std::vector<std::string>{};
    if (!hosts.empty()) config.master_addr = hosts.front();  // Slurm's node 0 runs task 0
    if (env("SLURM_NODEID")) {
      config.node =
          to_int("SLURM_NODEID", *env("SLURM_NODEID"), 0, hosts.empty() ? 1 << 16 : static_cast<int>(hosts.size()) - 1);
    }
    if (env("SLURM_JOB_ID")) {
      config.token = "slurm-" + *env("SLURM_JOB_ID") + "." + (env("SLURM_STEP_ID") ? *env("SLURM_STEP_ID") : "0");
    }
  } else if (env("OMPI_COMM_WORLD_RANK") && env("OMPI_COMM_WORLD_SIZE")) {
    config.source = "open mpi";
    config.world_size = to_int("OMPI_COMM_WORLD_SIZE", *env("OMPI_COMM_WORLD_SIZE"), 1, 1 << 20);
    rank = to_int("OMPI_COMM_WORLD_RANK", *env("OMPI_COMM_WORLD_RANK"), 0, config.world_size - 1);
    if (env("OMPI_COMM_WORLD_LOCAL_RANK"))
      local = to_int("OMPI_COMM_WORLD_LOCAL_RANK", *env("OMPI_COMM_WORLD_LOCAL_RANK"), 0, 1 << 20);
    if (env("OMPI_MCA_ess_base_jobid")) config.token = "ompi-" + *env("OMPI_MCA_ess_base_jobid");
  } else if (env("RANK") && env("WORLD_SIZE")) {
    config.source = "torchrun";
    config.world_size = to_int("WORLD_SIZE", *env("WORLD_SIZE"), 1, 1 << 20);
    rank = to_int("RANK", *env("RANK"), 0, config.world_size - 1);
    if (env("LOCAL_RANK")) local = to_int("LOCAL_RANK", *env("LOCAL_RANK"), 0, 1 << 20);
    if (env("GROUP_RANK")) config.node = to_int("GROUP_RANK", *env("GROUP_RANK"), 0, 1 << 16);
    if (env("MASTER_ADDR")) config.master_addr = *env("MASTER_ADDR");
    if (env("MASTER_PORT")) {
      config.master_port = to_int("MASTER_PORT", *env("MASTER_PORT"), 1, 65535);
      config.port_given = true;
    }
    if (env("TORCHELASTIC_RUN_ID")) config.token = "torchrun-" + *env("TORCHELASTIC_RUN_ID");
  }
  if (env("TESSEL_JOB_TOKEN")) config.token = *env("TESSEL_JOB_TOKEN");

  // Flags beat the environment.
  // --nnodes N, or torchrun's MIN:MAX: the job starts with MAX nodes and, with recovery on,
  // goes on while MIN remain.
  int nnodes = 1;
  if (const std::string* text = flag("--nnodes")) {
    const size_t colon = text->find(':');
    if (colon == std::string::npos) {
      nnodes = to_int("--nnodes", *text, 1, 1 << 16);
    } else {
      nnodes = to_int("--nnodes (after ':')", text->substr(colon + 1), 1, 1 << 16);
      config.min_nodes = to_int("--nnodes (before ':')", text->substr(0, colon), 1, nnodes);
      config.recovery = true;
      config.max_nodes = nnodes;
    }
  }
  if (env("TESSEL_RECOVERY") && *env("TESSEL_RECOVERY") == "1") config.recovery = true;
  const int nproc = flag("--nproc-per-node") ? to_int("--nproc-per-node", *flag("--nproc-per-node"), 1, 1024) : 1;
  const bool shape_flags = flag("--nnodes") || flag("--nproc-per-node") || flag("--node-rank");
  if (rank < 0 || shape_flags) {
    const int node = flag("--node-rank") ? to_int("--node-rank", *flag("--node-rank"), 0, nnodes - 1) : 0;
    if (rank >= 0) config.source += ", overridden by flags";
    config.world_size = nnodes * nproc;
    config.ranks.clear();
    for (int i = 0; i < nproc; ++i) config.ranks.push_back(node * nproc + i);
    config.first_local_rank = 0;
    config.node = node;
    if (rank < 0) config.source = "flags";
  } else {
    config.ranks = {rank};
    config.first_local_rank = local;
  }
  if (flag("--master-addr")) config.master_addr = *flag("--master-addr");
  if (config.master_addr.empty()) {
    throw std::invalid_argument(
        "--master-addr (or MASTER_ADDR) is empty, expected the host name or address of "
        "the node that runs rank 0");
  }
  if (flag("--master-port")) {
    config.master_port = to_int("--master-port", *flag("--master-port"), 1, 65535);
    config.port_given = true;
  }
  if (flag("--token")) config.token = *flag("--token");
  if (flag("--heartbeat-deadline")) {
    char* end = nullptr;
    config.heartbeat_deadline = std::strtod(flag("--heartbeat-deadline")->c_str(), &end);
    if (*end != '\0' || !(config.heartbeat_deadline >= 0.05 && config.heartbeat_deadline <= 3600)) {
      throw std::invalid_argument("--heartbeat-deadline is '" + *flag("--heartbeat-deadline") +
                                  "', expected seconds in [0.05, 3600]");
    }
  }
  if (flag("--max-restarts")) {
    config.max_restarts = to_int("--max-restarts", *flag("--max-restarts"), 0, 1 << 20);
    if (!config.recovery && !config.join)
      throw std::invalid_argument("--max-restarts restarts lost ranks, which needs recovery on (--nnodes MIN:MAX)");
  }
  if (config.join) {
    config.recovery = true;
    if (!config.port_given || config.token.empty()) {
      throw std::invalid_argument(
          "--join joins a running job: it needs that job's --master-port and --token (or TESSEL_JOB_TOKEN)");
    }
  }
  if (config.token.empty() && static_cast<int>(config.ranks.size()) != config.world_size) {
    throw std::invalid_argument(
        "a job started by several launchers needs a shared token: pass --token or set "
        "TESSEL_JOB_TOKEN (one launcher starting every rank generates its own)");
  }
  return config;
}

}  // namespace tessel::launch
