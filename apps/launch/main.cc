// tessel-launch: starts the ranks of a job on this node, like torchrun, and watches them.
//
//   tessel-launch --nproc-per-node 4 -- tessel-example data-parallel          # 4 ranks here
//   tessel-launch --nnodes 2 --node-rank 0 --nproc-per-node 2 --master-addr 10.0.0.1 --token SECRET --
//                 tessel-example hybrid                                          # node 0 of 2
//   srun -n 4 tessel-launch -- tessel-example data-parallel                      # one rank per task
//   mpirun -n 4 tessel-launch --master-addr node01 -- tessel-example pipeline
//
// Each rank gets TESSEL_RANK, TESSEL_WORLD_SIZE, TESSEL_LOCAL_RANK, TESSEL_NODE_RANK, TESSEL_MASTER_ADDR,
// TESSEL_MASTER_PORT, TESSEL_JOB_TOKEN and TESSEL_HEARTBEAT_DEADLINE (comm/job.h reads them).
// Its output lines are prefixed "[rank R] ". Each rank leads a process group, and a keeper process
// kills every group once the launcher ends, however it ends: no process of the job outlives it. When a rank fails, the
// others are stopped (SIGTERM, then SIGKILL after 5 s) and the launcher exits 1 naming the rank and how it ended; when
// every rank exits 0, so does the launcher. With --nnodes MIN:MAX (recovery on), a rank that is killed, or that the job
// removed (status 4: it froze past the deadline and woke), is logged and the others go on without it (comm/job.h); the
// launcher exits 0 when the ranks that remain finish, and 1 when one of them fails on its own (the job failed: status
// 3).
//
// Growing back (recovery on): with --max-restarts N a lost rank is started again, up to N times in
// all, and joins the running job as a replacement (TESSEL_JOIN=1); the job re-plans onto it at the
// next step boundary. `tessel-launch --join --master-addr A --master-port P --token T ...` starts
// ranks on another node that join the running job in the same way (up to MAX nodes of --nnodes).
// A replacement that arrives as the job finishes exits 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "actors/trace.h"
#include "apps/launch/launch_config.h"

extern char** environ;

namespace {

struct Child {
  int rank = 0;
  int index = 0;             // in LaunchConfig::ranks
  bool replacement = false;  // it joins a running job (--join, or a lost rank started again)
  pid_t pid = -1;
  int output = -1;      // read end of the pipe its stdout and stderr go to
  std::string partial;  // a line not yet ended
  bool running = true;
};

volatile std::sig_atomic_t interrupted = 0;
void on_signal(int) { interrupted = 1; }

std::string generated_token() {
  std::random_device device;
  std::string token;
  static const char* digits = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) token += digits[device() % 16];
  return token;
}

// A port for the coordinator, below the kernel's range of ephemeral ports: an ephemeral one
// would be free when tested but may be taken, before rank 0 listens, by any socket that
// connects (UCX's among them), which the tests of many jobs at once met.
int free_port() {
  int lowest_ephemeral = 32768;
  if (FILE* range = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(range, "%d", &lowest_ephemeral) != 1) lowest_ephemeral = 32768;
    std::fclose(range);
  }
  const int low = 20000, high = std::max(low + 1, lowest_ephemeral);
  std::random_device device;
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = low + static_cast<int>(device() % static_cast<unsigned>(high - low));
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    address.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    close(fd);
    if (free) return port;
  }
  return 29400;
}

void flush_lines(Child& child, bool all) {
  size_t newline;
  while ((newline = child.partial.find('\n')) != std::string::npos) {
    std::printf("[rank %d] %s\n", child.rank, child.partial.substr(0, newline).c_str());
    child.partial.erase(0, newline + 1);
  }
  if (all && !child.partial.empty()) {
    std::printf("[rank %d] %s\n", child.rank, child.partial.c_str());
    child.partial.clear();
  }
  std::fflush(stdout);
}

// Reads whatever the children wrote, for up to `timeout_ms`.
void pump(std::vector<Child>& children, int timeout_ms) {
  std::vector<pollfd> fds;
  std::vector<Child*> owners;  // per fd
  for (Child& child : children) {
    if (child.output < 0) continue;
    fds.push_back({child.output, POLLIN, 0});
    owners.push_back(&child);
  }
  if (fds.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
    return;
  }
  if (poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents == 0) continue;  // a read would wait for a rank that has nothing to say
    Child& child = *owners[i];
    char buffer[65536];
    const ssize_t got = read(child.output, buffer, sizeof buffer);
    if (got > 0) {
      child.partial.append(buffer, static_cast<size_t>(got));
      flush_lines(child, false);
    } else if (got == 0) {
      flush_lines(child, true);
      close(child.output);
      child.output = -1;
    }
  }
}

std::string how_it_ended(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

// A keeper: a process of its own that outlives the launcher by a moment. The launcher writes each
// rank's process group to it, and when the pipe closes (the launcher ended, even by kill -9) it
// kills every group: what the ranks started goes with them. Returns the pipe's write end.
int start_keeper() {
  int fds[2];  // a socket pair, not a pipe: a keeper killed from outside costs a failed send, not SIGPIPE
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair failed");
  const pid_t keeper = fork();
  if (keeper < 0) throw std::runtime_error("fork failed");
  if (keeper == 0) {
    close(fds[1]);
    setsid();                   // signals to the launcher's group or session spare it
    if (fork() != 0) _exit(0);  // not the launcher's child: the launcher's children are its ranks
    for (int fd = 0; fd < 3; ++fd) {
      const int null = open("/dev/null", O_RDWR);
      if (null >= 0 && null != fd) dup2(null, fd), close(null);
    }
    std::vector<pid_t> groups;
    pid_t group = 0;
    while (true) {
      const ssize_t got = read(fds[0], &group, sizeof group);
      if (got == sizeof group) {
        groups.push_back(group);
      } else if (got == 0 || (got < 0 && errno != EINTR)) {
        break;
      }
    }
    for (pid_t each : groups) kill(-each, SIGKILL);
    _exit(0);
  }
  close(fds[0]);
  int status = 0;
  waitpid(keeper, &status, 0);  // the go-between, which has forked the keeper
  return fds[1];
}

// Starts the rank at `index` of config.ranks; with `join`, as a replacement that joins the running job.
Child start(const tessel::launch::LaunchConfig& config, int index, bool join) {
  Child child;
  child.rank = config.ranks[index];
  child.index = index;
  child.replacement = join;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  const pid_t parent = getpid();
  child.pid = fork();
  if (child.pid < 0) throw std::runtime_error("fork failed");
  if (child.pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the launcher
    setpgid(0, 0);                     // a group of its own: stopping the rank stops what it started
    if (getppid() != parent) _exit(127);
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    setenv("TESSEL_RANK", std::to_string(child.rank).c_str(), 1);
    setenv("TESSEL_WORLD_SIZE", std::to_string(config.world_size).c_str(), 1);
    setenv("TESSEL_LOCAL_RANK", std::to_string(config.first_local_rank + index).c_str(), 1);
    setenv("TESSEL_NODE_RANK", std::to_string(config.node).c_str(), 1);
    setenv("TESSEL_MASTER_ADDR", config.master_addr.c_str(), 1);
    setenv("TESSEL_MASTER_PORT", std::to_string(config.master_port).c_str(), 1);
    setenv("TESSEL_JOB_TOKEN", config.token.c_str(), 1);
    setenv("TESSEL_HEARTBEAT_DEADLINE", std::to_string(config.heartbeat_deadline).c_str(), 1);
    setenv("TESSEL_RECOVERY", config.recovery ? "1" : "0", 1);
    setenv("TESSEL_MIN_NODES", std::to_string(config.min_nodes).c_str(), 1);
    setenv("TESSEL_MAX_NODES", std::to_string(config.max_nodes).c_str(), 1);
    setenv("TESSEL_JOIN", join ? "1" : "0", 1);
    setenv("GLOG_logtostderr", "1", 0);
    std::vector<char*> argv;
    for (const std::string& word : config.command) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "tessel-launch: cannot run '%s': %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  close(pipe_fds[1]);
  child.output = pipe_fds[0];
  return child;
}

// TESSEL_TRACE (or --trace): each rank wrote FILE.rankR at its exit; they become FILE, with the
// ranks as its processes, and the parts go.
void merge_traces(const tessel::launch::LaunchConfig& config) {
  const char* path = std::getenv("TESSEL_TRACE");
  if (path == nullptr || *path == '\0') return;
  std::vector<std::string> parts;
  for (int rank : config.ranks) {
    const std::string part = std::string(path) + ".rank" + std::to_string(rank);
    if (access(part.c_str(), R_OK) == 0) parts.push_back(part);
  }
  if (parts.empty()) {
    std::fprintf(stderr, "tessel-launch: no rank wrote a trace into %s.rankR\n", path);
    return;
  }
  try {
    tessel::trace::merge(parts, path);
    for (const std::string& part : parts) std::remove(part.c_str());
    std::fprintf(stderr, "tessel-launch: the trace of %zu rank%s is in %s (open it at https://ui.perfetto.dev or chrome://tracing)\n",
                 parts.size(), parts.size() == 1 ? "" : "s", path);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "tessel-launch: the ranks' traces were not merged: %s\n", error.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  tessel::launch::LaunchConfig config;
  try {
    std::map<std::string, std::string> environment;
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string text = *entry;
      const size_t equals = text.find('=');
      if (equals != std::string::npos) environment[text.substr(0, equals)] = text.substr(equals + 1);
    }
    config = tessel::launch::resolve_launch(std::vector<std::string>(argv + 1, argv + argc), environment);
  } catch (const std::invalid_argument& error) {
    const bool asked = std::strcmp(error.what(), "--help") == 0;  // the usage, on stdout, status 0
    if (asked) {
      std::fputs(tessel::launch::launch_usage().c_str(), stdout);
    } else {
      std::fprintf(stderr, "tessel-launch: %s\nrun 'tessel-launch --help' for the usage\n", error.what());
    }
    return asked ? 0 : 2;
  }
  if (!config.trace.empty()) setenv("TESSEL_TRACE", config.trace.c_str(), 1);
  if (config.token.empty()) config.token = generated_token();
  if (!config.port_given && static_cast<int>(config.ranks.size()) == config.world_size) {
    config.master_port = free_port();  // every rank is here: any free port will do
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (config.join) {
    std::fprintf(stderr, "tessel-launch: %zu rank(s) on node %d join the running job at %s:%d\n", config.ranks.size(),
                 config.node, config.master_addr.c_str(), config.master_port);
  } else {
    std::fprintf(stderr, "tessel-launch: ranks %d..%d of %d on node %d (from %s), coordinator at %s:%d\n",
                 config.ranks.front(), config.ranks.back(), config.world_size, config.node, config.source.c_str(),
                 config.master_addr.c_str(), config.master_port);
  }
  const int keeper = start_keeper();
  const auto keep = [keeper](const Child& child) {
    const pid_t group = child.pid;  // each rank leads its own process group
    if (send(keeper, &group, sizeof group, MSG_NOSIGNAL) != sizeof group) std::perror("tessel-launch: the keeper");
  };
  std::vector<Child> children;
  for (size_t i = 0; i < config.ranks.size(); ++i) {
    children.push_back(start(config, static_cast<int>(i), config.join));
    keep(children.back());
  }

  std::string failure;
  std::vector<std::string> lost;  // ranks that ended badly while recovery let the job go on
  int running = static_cast<int>(children.size());
  int restarts = 0;
  while (running > 0 && failure.empty()) {
    pump(children, 50);
    if (interrupted) failure = "tessel-launch was interrupted";
    std::vector<int> restart;  // indices in config.ranks of lost ranks to start again
    for (Child& child : children) {
      int status = 0;
      if (!child.running || waitpid(child.pid, &status, WNOHANG) != child.pid) continue;
      child.running = false;
      --running;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && failure.empty()) {
        const std::string what =
            "rank " + std::to_string(child.rank) + " (pid " + std::to_string(child.pid) + ") " + how_it_ended(status);
        // With recovery, a rank killed, or removed from the job (status 4), is lost and the job
        // goes on without it; a rank that failed on its own (the job failed: status 3) is not.
        // A replacement that could not join (status 1: the job refused it, say) leaves the job as it
        // was; one the job failed under (status 3) fails it here too.
        const bool lost_rank = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 4) ||
                               (child.replacement && WIFEXITED(status) && WEXITSTATUS(status) != 3);
        if (config.recovery && lost_rank && restarts < config.max_restarts) {
          ++restarts;
          std::fprintf(stderr,
                       "tessel-launch: %s; recovery is on: starting it again (restart %d of %d), to join the "
                       "running job\n",
                       what.c_str(), restarts, config.max_restarts);
          lost.push_back(what);
          restart.push_back(child.index);
        } else if (config.recovery && lost_rank) {
          std::fprintf(stderr, "tessel-launch: %s; recovery is on, so the job goes on without it\n", what.c_str());
          lost.push_back(what);
        } else {
          failure = what;
        }
      }
    }
    for (int index : restart) {
      children.push_back(start(config, index, /*join=*/true));
      keep(children.back());
      ++running;
    }
  }
  if (!failure.empty()) {
    for (Child& child : children) {
      if (child.running) kill(-child.pid, SIGTERM);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (running > 0) {
      pump(children, 20);
      for (Child& child : children) {
        int status = 0;
        if (child.running && waitpid(child.pid, &status, WNOHANG) == child.pid) child.running = false, --running;
      }
      if (running > 0 && std::chrono::steady_clock::now() > deadline) {
        for (Child& child : children) {
          if (child.running) kill(-child.pid, SIGKILL);
        }
      }
    }
  }
  // The last lines; a process a rank left behind may hold its pipe open, so not forever.
  const auto drained = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (Child& child : children) {
    while (child.output >= 0 && std::chrono::steady_clock::now() < drained) pump(children, 100);
  }
  merge_traces(config);
  if (!failure.empty()) {
    std::fprintf(stderr, "tessel-launch: %s; stopped the other ranks\n", failure.c_str());
    return 1;
  }
  if (!lost.empty()) {
    if (lost.size() == children.size()) {  // restarted ranks count among the children
      std::fprintf(stderr, "tessel-launch: every rank here was lost\n");
      return 1;
    }
    std::fprintf(stderr, "tessel-launch: the job finished on %zu of %zu ranks here (lost: %zu)\n",
                 children.size() - lost.size(), children.size(), lost.size());
    return 0;
  }
  std::fprintf(stderr, "tessel-launch: all %zu ranks exited 0\n", children.size());
  return 0;
}
