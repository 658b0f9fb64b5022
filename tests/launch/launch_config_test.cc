// Where tessel-launch takes a job's shape from: flags, or the variables srun, mpirun and
// torchrun set. The real launches are in launch_test.sh; these check every source directly.
#include "apps/launch/launch_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

namespace tessel::launch {
namespace {

using Environment = std::map<std::string, std::string>;
using testing::ElementsAre;
using testing::HasSubstr;

// The message resolve_launch throws for these arguments and environment.
std::string refusal(const std::vector<std::string>& arguments, const Environment& environment = {}) {
  try {
    resolve_launch(arguments, environment);
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "(accepted)";
}

std::string hostlist_refusal(const std::string& list) {
  try {
    expand_hostlist(list);
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "(accepted)";
}

TEST(ExpandHostlist, ExpandsSlurmsCompressedForm) {
  EXPECT_THAT(expand_hostlist("login5"), ElementsAre("login5"));
  EXPECT_THAT(expand_hostlist("node[01-03,07],login5"), ElementsAre("node01", "node02", "node03", "node07", "login5"));
  EXPECT_THAT(expand_hostlist("gpu[8-10]-ib"), ElementsAre("gpu8-ib", "gpu9-ib", "gpu10-ib"));
  EXPECT_THAT(expand_hostlist("a[098-101],b[2]"), ElementsAre("a098", "a099", "a100", "a101", "b2"));
}

TEST(ExpandHostlist, RefusesMalformedLists) {
  EXPECT_THAT(hostlist_refusal("node[1-3"), HasSubstr("host list 'node[1-3' has an unmatched '['"));
  EXPECT_THAT(hostlist_refusal("node1-3]"), HasSubstr("unmatched ']'"));
  EXPECT_THAT(hostlist_refusal("a,,b"), HasSubstr("host list 'a,,b' has an empty entry"));
  EXPECT_THAT(hostlist_refusal("node[5-2]"), HasSubstr("is '2', expected an integer in [5,"));
  EXPECT_THAT(hostlist_refusal("node[x]"), HasSubstr("is 'x', expected an integer"));
  // A range is bounded before it is expanded (one of 2^30 hosts took the memory).
  EXPECT_THAT(hostlist_refusal("n[0-1073741824]"), HasSubstr("host list 'n[0-1073741824]' names more than 65536 hosts"));
  EXPECT_THAT(hostlist_refusal("a[1-40000],b[1-40000]"), HasSubstr("names more than 65536 hosts"));
  EXPECT_THAT(expand_hostlist("n[1-65536]"), ::testing::SizeIs(65536));
}

TEST(ResolveLaunch, FlagsAloneDescribeTheJob) {
  const LaunchConfig config =
      resolve_launch({"--nnodes", "2", "--node-rank", "1", "--nproc-per-node", "3", "--master-addr", "10.0.0.1",
                      "--master-port", "1234", "--token", "secret", "--heartbeat-deadline", "2.5", "--", "prog", "-x"},
                     {});
  EXPECT_EQ(config.source, "flags");
  EXPECT_EQ(config.world_size, 6);
  EXPECT_THAT(config.ranks, ElementsAre(3, 4, 5));
  EXPECT_EQ(config.node, 1);
  EXPECT_EQ(config.first_local_rank, 0);
  EXPECT_EQ(config.master_addr, "10.0.0.1");
  EXPECT_EQ(config.master_port, 1234);
  EXPECT_TRUE(config.port_given);
  EXPECT_EQ(config.token, "secret");
  EXPECT_DOUBLE_EQ(config.heartbeat_deadline, 2.5);
  EXPECT_THAT(config.command, ElementsAre("prog", "-x"));
}

TEST(ResolveLaunch, OneLauncherForEveryRankNeedsNoToken) {
  const LaunchConfig config = resolve_launch({"--nproc-per-node", "4", "prog"}, {});
  EXPECT_THAT(config.ranks, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(config.world_size, 4);
  EXPECT_TRUE(config.token.empty());  // tessel-launch generates one
  EXPECT_FALSE(config.port_given);    // and picks a free port
  EXPECT_THAT(config.command, ElementsAre("prog"));
}

TEST(ResolveLaunch, ReadsSlurm) {
  const Environment slurm = {{"SLURM_PROCID", "5"},          {"SLURM_NTASKS", "8"},
                             {"SLURM_LOCALID", "1"},         {"SLURM_NODEID", "2"},
                             {"SLURM_JOB_ID", "4242"},       {"SLURM_STEP_ID", "3"},
                             {"SLURM_NODELIST", "all[1-9]"}, {"SLURM_STEP_NODELIST", "gpu[07-10]"}};
  const LaunchConfig config = resolve_launch({"--", "prog"}, slurm);
  EXPECT_EQ(config.source, "slurm");
  EXPECT_EQ(config.world_size, 8);
  EXPECT_THAT(config.ranks, ElementsAre(5));
  EXPECT_EQ(config.first_local_rank, 1);
  EXPECT_EQ(config.node, 2);
  EXPECT_EQ(config.master_addr, "gpu07");   // the step's first node, not the allocation's
  EXPECT_EQ(config.token, "slurm-4242.3");  // every task of the step derives the same one
}

TEST(ResolveLaunch, RefusesSlurmVariablesThatDisagree) {
  EXPECT_THAT(refusal({"prog"}, {{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_ID", "1"}}),
              HasSubstr("SLURM_PROCID is '2', expected an integer in [0, 1]"));
  EXPECT_THAT(refusal({"prog"}, {{"SLURM_PROCID", "0"},
                                 {"SLURM_NTASKS", "2"},
                                 {"SLURM_JOB_ID", "1"},
                                 {"SLURM_NODEID", "2"},
                                 {"SLURM_STEP_NODELIST", "n[1-2]"}}),
              HasSubstr("SLURM_NODEID is '2', expected an integer in [0, 1]"));
  EXPECT_THAT(refusal({"prog"}, {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "two"}}), HasSubstr("SLURM_NTASKS is 'two'"));
}

TEST(ResolveLaunch, ReadsOpenMpi) {
  const LaunchConfig config = resolve_launch({"--master-addr", "head", "prog"}, {{"OMPI_COMM_WORLD_RANK", "3"},
                                                                                 {"OMPI_COMM_WORLD_SIZE", "4"},
                                                                                 {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                                                                 {"OMPI_MCA_ess_base_jobid", "77"}});
  EXPECT_EQ(config.source, "open mpi");
  EXPECT_EQ(config.world_size, 4);
  EXPECT_THAT(config.ranks, ElementsAre(3));
  EXPECT_EQ(config.first_local_rank, 1);
  EXPECT_EQ(config.master_addr, "head");
  EXPECT_EQ(config.token, "ompi-77");
}

TEST(ResolveLaunch, ReadsTorchrun) {
  const LaunchConfig config = resolve_launch({"prog"}, {{"RANK", "1"},
                                                        {"WORLD_SIZE", "2"},
                                                        {"LOCAL_RANK", "0"},
                                                        {"GROUP_RANK", "1"},
                                                        {"MASTER_ADDR", "10.1.1.1"},
                                                        {"MASTER_PORT", "29600"},
                                                        {"TORCHELASTIC_RUN_ID", "abc"}});
  EXPECT_EQ(config.source, "torchrun");
  EXPECT_THAT(config.ranks, ElementsAre(1));
  EXPECT_EQ(config.node, 1);
  EXPECT_EQ(config.master_addr, "10.1.1.1");
  EXPECT_EQ(config.master_port, 29600);
  EXPECT_TRUE(config.port_given);
  EXPECT_EQ(config.token, "torchrun-abc");
}

TEST(ResolveLaunch, FlagsBeatTheEnvironment) {
  const Environment torchrun = {{"RANK", "1"},
                                {"WORLD_SIZE", "2"},
                                {"MASTER_ADDR", "10.1.1.1"},
                                {"MASTER_PORT", "29600"},
                                {"TORCHELASTIC_RUN_ID", "abc"},
                                {"TESSEL_JOB_TOKEN", "env"}};
  const LaunchConfig config = resolve_launch(
      {"--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", "4000", "prog"},
      torchrun);
  EXPECT_EQ(config.source, "torchrun, overridden by flags");
  EXPECT_THAT(config.ranks, ElementsAre(0, 1));
  EXPECT_EQ(config.master_addr, "127.0.0.1");
  EXPECT_EQ(config.master_port, 4000);
  EXPECT_EQ(config.token, "env");  // TESSEL_JOB_TOKEN beats the scheduler's id
  EXPECT_EQ(resolve_launch({"--token", "flag", "prog"}, torchrun).token, "flag");
}

TEST(ResolveLaunch, TheProgramsOwnFlagsGoToIt) {
  EXPECT_THAT(resolve_launch({"--nproc-per-node", "2", "--", "prog", "--steps", "3", "--join"}, {}).command,
              ElementsAre("prog", "--steps", "3", "--join"));
  EXPECT_THAT(resolve_launch({"--nproc-per-node", "2", "prog", "--nproc-per-node", "5"}, {}).command,
              ElementsAre("prog", "--nproc-per-node", "5"));
  EXPECT_EQ(resolve_launch({"--nproc-per-node", "2", "prog", "--nproc-per-node", "5"}, {}).ranks.size(), 2u);
  EXPECT_THAT(resolve_launch({"--", "-dash-named"}, {}).command, ElementsAre("-dash-named"));
}

TEST(ResolveLaunch, RefusesBadFlagsByName) {
  EXPECT_THAT(refusal({"--nodes", "2", "prog"}), HasSubstr("unknown flag '--nodes'"));
  EXPECT_THAT(refusal({"--nnodes"}), HasSubstr("--nnodes needs a value"));
  EXPECT_THAT(refusal({"--nproc-per-node", "2"}), HasSubstr("no program to launch"));
  // The wording every program shares (apps/cli/flags.h).
  EXPECT_THAT(refusal({"--nproc-per-node", "abc", "prog"}), HasSubstr("--nproc-per-node: 'abc' is not an integer in [1, 1024]"));
  EXPECT_THAT(refusal({"--nproc-per-node", "2.5", "prog"}), HasSubstr("--nproc-per-node: '2.5' is not an integer"));
  EXPECT_THAT(refusal({"--nnodes", "1:x", "prog"}), HasSubstr("--nnodes (after ':'): 'x' is not an integer"));
  EXPECT_THAT(refusal({"--nnodes", "2", "--node-rank", "2", "prog"}),
              HasSubstr("--node-rank: '2' is not an integer in [0, 1]"));
  EXPECT_THAT(refusal({"--master-port", "70000", "prog"}), HasSubstr("--master-port: '70000' is not an integer in [1, 65535]"));
  EXPECT_THAT(refusal({"--heartbeat-deadline", "0", "prog"}),
              HasSubstr("--heartbeat-deadline: '0' is not a number in [0.05, 3600]"));
  // A launcher that starts only some ranks cannot generate a token the others would share.
  EXPECT_THAT(refusal({"--nnodes", "2", "--node-rank", "0", "prog"}), HasSubstr("needs a shared token"));
  EXPECT_THAT(refusal({"prog"}, {{"RANK", "0"}, {"WORLD_SIZE", "2"}}), HasSubstr("needs a shared token"));
}

// Growing back: --join starts replacements for a running job, --max-restarts starts lost ranks again.
TEST(ResolveLaunch, JoinAndRestartsNeedWhatTheyAreFor) {
  const LaunchConfig joining = resolve_launch({"--join", "--nnodes", "1:2", "--node-rank", "1", "--nproc-per-node", "2",
                                               "--master-port", "29500", "--token", "t", "prog"},
                                              {});
  EXPECT_TRUE(joining.join);
  EXPECT_TRUE(joining.recovery) << "--join implies recovery";
  EXPECT_EQ(joining.max_nodes, 2);
  EXPECT_EQ(joining.min_nodes, 1);
  EXPECT_THAT(joining.ranks, ElementsAre(2, 3));
  EXPECT_THAT(refusal({"--join", "--token", "t", "prog"}), HasSubstr("needs that job's --master-port and --token"));
  EXPECT_THAT(refusal({"--join", "--master-port", "29500", "prog"}), HasSubstr("--master-port and --token"));
  const LaunchConfig restarting =
      resolve_launch({"--nnodes", "1:1", "--nproc-per-node", "4", "--max-restarts", "3", "prog"}, {});
  EXPECT_EQ(restarting.max_restarts, 3);
  EXPECT_EQ(restarting.max_nodes, 1);
  EXPECT_FALSE(restarting.join);
  EXPECT_THAT(refusal({"--nproc-per-node", "4", "--max-restarts", "1", "prog"}),
              HasSubstr("--max-restarts restarts lost ranks, which needs recovery on (--nnodes MIN:MAX)"));
  EXPECT_THAT(refusal({"--nnodes", "1:1", "--max-restarts", "-1", "prog"}),
              HasSubstr("--max-restarts: '-1' is not an integer in [0, 1048576]"));
}

}  // namespace
// An empty master address is refused at once, naming the flag (it used to fail the join 60 s later).
TEST(ResolveLaunch, RefusesAnEmptyMasterAddress) {
  EXPECT_THAT(refusal({"--nproc-per-node", "2", "--master-addr", "", "prog"}),
              HasSubstr("--master-addr (or MASTER_ADDR) is empty"));
  EXPECT_THAT(refusal({"prog"}, {{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_ADDR", ""}}),
              HasSubstr("is empty, expected the host name or address"));
}

}  // namespace tessel::launch
