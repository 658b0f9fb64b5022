// Where a launcher's ranks come from: its flags, or the environment another launcher set
// (Slurm's srun, Open MPI's mpirun, torchrun). Flags beat the environment. Kept apart from
// tessel-launch's process handling so tests can check it directly.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace tessel::launch {

struct LaunchConfig {
  int world_size = 1;
  std::vector<int> ranks;    // the global ranks this launcher starts, one process each
  int first_local_rank = 0;  // local rank of ranks[0]
  int node = 0;              // this node's index among the job's nodes
  std::string master_addr = "127.0.0.1";
  int master_port = 29400;
  bool port_given = false;       // by a flag or the environment; else a launcher starting every rank picks a free one
  std::string token;             // empty: generate one
  std::string source = "flags";  // "flags", "slurm", "open mpi" or "torchrun"
  double heartbeat_deadline = 5;
  // --nnodes MIN:MAX: recovery on (a lost rank no longer ends the job), which goes on while
  // ranks on at least `min_nodes` nodes remain.
  bool recovery = false;
  int min_nodes = 1;
  int max_nodes = 0;  // with recovery: MAX, the most nodes the job's ranks may be on (0: any)
  // --join: this launcher's ranks join a running job (at --master-addr:--master-port, with its
  // --token) as replacements, and the job re-plans onto them; recovery on.
  bool join = false;
  // --max-restarts N (recovery on): a rank of this launcher that is lost is started again, up to N
  // times in all, and joins the running job as a replacement.
  int max_restarts = 0;
  // --trace FILE: the ranks trace their actors (TESSEL_TRACE) and the launcher merges their files.
  std::string trace;
  std::vector<std::string> command;
};

// Parses argv (after the program name) against `environment`, the flags with CLI11 (apps/cli/flags.h's
// wording). Throws std::invalid_argument with a message naming the flag or variable at fault, or
// with "--help" when the usage was asked for (launch_usage()).
LaunchConfig resolve_launch(const std::vector<std::string>& arguments,
                            const std::map<std::string, std::string>& environment);

// The generated usage: every flag with its help.
std::string launch_usage();

// "node[01-03,07],login5" -> {"node01","node02","node03","node07","login5"}: Slurm's
// compressed host lists. Throws std::invalid_argument for a malformed list.
std::vector<std::string> expand_hostlist(const std::string& list);

}  // namespace tessel::launch
