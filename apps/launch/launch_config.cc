#include "apps/launch/launch_config.h"

#include "apps/cli/flags.h"

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

// The flags given, by name, as text.
struct LaunchFlags {
  std::map<std::string, std::string> values;
  bool join = false;
};

// tessel-launch's flags, onto `app` (named tessel-launch).
void launch_flags(CLI::App& app, LaunchFlags& flags) {
  cli::style(app);
  // Each given flag's text lands in flags.values under its name; its value is checked here where it
  // can be, and in resolve_launch where its range depends on another flag.
  const auto text = [&](const std::string& name, const std::string& help) {
    return app.add_option_function<std::string>(
        name, [&flags, name](const std::string& value) { flags.values[name] = value; }, help);
  };
  text("--nnodes", "nodes of the job; MIN:MAX turns recovery on: the job starts with MAX nodes and goes on, "
                   "resharded onto the ranks that remain, while ranks on MIN nodes remain")
      ->type_name("N|MIN:MAX");
  text("--nproc-per-node", "ranks this launcher starts, one process each")->type_name("INT")->check(cli::integer_in(1, 1024));
  text("--node-rank", "this node's index among the job's nodes, from 0")->type_name("INT");
  text("--master-addr", "host name or address of the node that runs rank 0")->type_name("HOST");
  text("--master-port", "rank 0's coordinator port (default: a free one, when this launcher starts every rank)")
      ->type_name("INT")
      ->check(cli::integer_in(1, 65535));
  text("--token", "the job's shared secret (default: TESSEL_JOB_TOKEN, or generated)")->type_name("TEXT");
  text("--heartbeat-deadline", "seconds of silence after which a rank counts as lost")
      ->type_name("SECONDS")
      ->check(cli::number_in(0.05, 3600));
  text("--max-restarts", "with recovery: starts a lost rank again, up to N times, and the job grows back onto it")
      ->type_name("INT")
      ->check(cli::integer_in(0, 1 << 20));
  text("--trace", "a Chrome trace of every rank's actors, merged into FILE (each rank writes FILE.rankR; "
                  "TESSEL_TRACE does the same)")
      ->type_name("FILE");
  app.add_flag("--join", flags.join, "starts ranks that join a running job (its --master-port and --token)");
  app.footer("PROGRAM [ARGS...] follows the flags (after --, or at the first word that is not a flag).\n");
  app.prefix_command();  // the program and its arguments: everything from the first word that is not a flag
}

}  // namespace

std::string launch_usage() {
  LaunchFlags flags;
  CLI::App app("starts the ranks of a job on this node", "tessel-launch");
  launch_flags(app, flags);
  return app.help();
}

std::vector<std::string> expand_hostlist(const std::string& list) {
  constexpr int kMaxHosts = 1 << 16;  // SLURM_NODEID's bound below
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
      if (to - from >= kMaxHosts - static_cast<int>(hosts.size())) {
        throw std::invalid_argument(
            "host list '" + list.substr(0, 200) + "' names more than " + std::to_string(kMaxHosts) + " hosts");
      }
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
  LaunchConfig config;
  LaunchFlags parsed;
  CLI::App app("starts the ranks of a job on this node", "tessel-launch");
  launch_flags(app, parsed);
  // CLI11 takes its arguments last first.
  std::vector<std::string> reversed(arguments.rbegin(), arguments.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    throw std::invalid_argument("--help");
  } catch (const CLI::ParseError& error) {
    throw std::invalid_argument(cli::explain(error));
  }
  config.join = parsed.join;
  config.command = app.remaining();
  if (!config.command.empty() && config.command.front() == "--") config.command.erase(config.command.begin());
  if (!config.command.empty() && config.command.front().rfind("-", 0) == 0 &&
      std::find(arguments.begin(), arguments.end(), "--") == arguments.end()) {
    throw std::invalid_argument("unknown flag '" + config.command.front() + "'");
  }
  if (config.command.empty())
    throw std::invalid_argument("no program to launch (tessel-launch [flags] -- PROGRAM ...)");
  const auto flag = [&](const std::string& name) -> const std::string* {
    auto it = parsed.values.find(name);
    return it == parsed.values.end() ? nullptr : &it->second;
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
      nnodes = static_cast<int>(cli::parse_integer("--nnodes", *text, 1, 1 << 16));
    } else {
      nnodes = static_cast<int>(cli::parse_integer("--nnodes (after ':')", text->substr(colon + 1), 1, 1 << 16));
      config.min_nodes = static_cast<int>(cli::parse_integer("--nnodes (before ':')", text->substr(0, colon), 1, nnodes));
      config.recovery = true;
      config.max_nodes = nnodes;
    }
  }
  if (env("TESSEL_RECOVERY") && *env("TESSEL_RECOVERY") == "1") config.recovery = true;
  const int nproc = flag("--nproc-per-node") ? std::stoi(*flag("--nproc-per-node")) : 1;  // checked by CLI11
  const bool shape_flags = flag("--nnodes") || flag("--nproc-per-node") || flag("--node-rank");
  if (rank < 0 || shape_flags) {
    const int node =
        flag("--node-rank") ? static_cast<int>(cli::parse_integer("--node-rank", *flag("--node-rank"), 0, nnodes - 1)) : 0;
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
    config.master_port = std::stoi(*flag("--master-port"));  // checked by CLI11
    config.port_given = true;
  }
  if (flag("--token")) config.token = *flag("--token");
  if (flag("--trace")) {
    config.trace = *flag("--trace");
    if (config.trace.empty()) throw std::invalid_argument("--trace: expected a file name, got ''");
  }
  if (flag("--heartbeat-deadline")) config.heartbeat_deadline = std::stod(*flag("--heartbeat-deadline"));
  if (flag("--max-restarts")) {
    config.max_restarts = std::stoi(*flag("--max-restarts"));  // checked by CLI11
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
