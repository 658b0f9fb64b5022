#include "graph/plan_inspect.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "core/dtype.h"
#include "core/error.h"
#include "proto/plan.pb.h"

extern char** environ;

namespace tessel {
namespace {

std::string bytes_text(int64_t bytes) {
  char text[32];
  if (bytes >= (int64_t{1} << 20)) {
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else if (bytes >= 1024) {
    std::snprintf(text, sizeof text, "%.1f KiB", static_cast<double>(bytes) / 1024);
  } else {
    std::snprintf(text, sizeof text, "%lld B", static_cast<long long>(bytes));
  }
  return text;
}

std::string type_text(const proto::TensorTypeDef& type) {
  std::string text = "[";
  for (int i = 0; i < type.shape_size(); ++i) text += concat(i ? ", " : "", type.shape(i));
  return text + "] " + type.dtype();
}

int64_t tensor_bytes(const proto::TensorTypeDef& type) {
  int64_t elements = 1;
  for (int64_t extent : type.shape()) elements *= extent;
  const std::optional<DType> dtype = parse_dtype(type.dtype());
  return dtype ? elements * static_cast<int64_t>(size_of(*dtype)) : 0;
}

// What moves or reshards bytes rather than computing: collectives, sends and receives, and the
// boxing kernels (slices, copies and assembles between layouts).
bool is_boxing(const proto::ActorDef& actor) {
  return actor.kind() == proto::COLLECTIVE || actor.kind() == proto::SEND || actor.kind() == proto::RECV ||
         actor.op().rfind("boxing_", 0) == 0 || actor.name().rfind("boxing/", 0) == 0;
}

std::string kind_text(proto::ActorKind kind) {
  std::string name = proto::ActorKind_Name(kind);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  return name;
}

std::string padded(std::string text, size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text;
}

// "7:0" for an actor of the same device, "cpu:1/7:0" for one of another device of the rank.
std::string endpoint_text(const proto::RankPlan& rank, int here, const proto::Endpoint& endpoint, bool port) {
  std::string text = endpoint.device() == here ? "" : concat(rank.devices(endpoint.device()).device(), "/");
  text += concat(endpoint.actor());
  if (port) text += concat(":", endpoint.port());
  return text;
}

void describe_device(const proto::RankPlan& rank, int here, std::string& out) {
  const proto::DevicePlan& device = rank.devices(here);
  int registers = 0, control = 0;
  for (const proto::ActorDef& actor : device.actors()) {
    for (const proto::OutputDef& output : actor.outputs()) {
      if (output.control()) {
        control += output.consumers_size();
      } else {
        registers += output.register_count();
      }
    }
  }
  const int64_t arena = device.arena_bytes(), total = device.register_bytes();
  out += concat("device ", device.device(), ": ", device.actors_size(), " actors, ", registers, " registers, ", control,
                " control edges\n");
  char share[64];
  std::snprintf(share, sizeof share, "%.0f%%", total > 0 ? 100.0 * static_cast<double>(arena) / total : 100.0);
  out += concat("  arena ", bytes_text(arena), " (", arena, " bytes) for registers that add up to ", bytes_text(total),
                " (", total, " bytes): the arena is ", share, " of their sum\n");
  out += concat("  variables ", bytes_text(device.variable_arena_bytes()), " in ", device.variables_size(),
                " variables\n");
  for (const proto::VariableDef& variable : device.variables()) {
    out += concat("    ", padded(variable.name(), 24), padded(type_text(variable.type()), 16), " @", variable.offset(),
                  variable.layout().empty() ? "" : concat("  ", variable.layout()), "\n");
  }
  out += "\n";
  out += "  id  kind        name                                op                  inputs <- (actor:output)\n";
  out += "                                                                          outputs -> registers\n";
  for (const proto::ActorDef& actor : device.actors()) {
    std::string inputs;
    for (const proto::InputDef& input : actor.inputs()) {
      inputs += concat(inputs.empty() ? "" : " ", input.control() ? "~" : "",
                       endpoint_text(rank, here, input.producer(), true), input.initial_tokens() ? "(prev)" : "");
    }
    if (actor.driven()) inputs += inputs.empty() ? "driver" : " driver";
    out += concat("  ", padded(concat(actor.id()), 4), padded(kind_text(actor.kind()), 12), padded(actor.name(), 36),
                  padded(actor.op().empty() ? "-" : actor.op(), 20), inputs, "\n");
    for (int o = 0; o < actor.outputs_size(); ++o) {
      const proto::OutputDef& output = actor.outputs(o);
      std::string consumers;
      for (const proto::Endpoint& c : output.consumers()) {
        consumers += concat(consumers.empty() ? "" : " ", endpoint_text(rank, here, c, false));
      }
      if (output.control()) {
        out += concat("        control", output.initial_tokens() ? " (next step)" : "", " -> ", consumers, "\n");
        continue;
      }
      std::string offsets;
      for (int64_t offset : output.offsets()) offsets += concat(offsets.empty() ? "@" : ",@", offset);
      out += concat("        ", type_text(output.type()), " x", output.register_count(), " ",
                    bytes_text(output.register_bytes()), " ", offsets,
                    actor.kind() == proto::VARIABLE ? " (variable arena)" : "",
                    output.shared() ? concat(" shared, live ", output.first_use(), "..", output.last_use()) : "",
                    " -> ", consumers.empty() ? "nobody" : consumers,
                    output.layout().empty() ? "" : concat("  {", output.layout(), "}"), "\n");
    }
  }
  // The layout, by offset: which registers reuse which bytes.
  struct Row {
    int64_t offset, bytes, first, last;
    std::string owner;
  };
  std::vector<Row> rows;
  for (const proto::ActorDef& actor : device.actors()) {
    if (actor.kind() == proto::VARIABLE) continue;
    for (int o = 0; o < actor.outputs_size(); ++o) {
      const proto::OutputDef& output = actor.outputs(o);
      for (int r = 0; r < output.offsets_size(); ++r) {
        rows.push_back({output.offsets(r), output.register_bytes(), output.shared() ? output.first_use() : -1,
                        output.last_use(),
                        concat(actor.name(), ":", o, output.register_count() > 1 ? concat("#", r) : "")});
      }
    }
  }
  std::sort(rows.begin(), rows.end(),
            [](const Row& a, const Row& b) { return a.offset != b.offset ? a.offset < b.offset : a.first < b.first; });
  out += "\n  memory layout (offset, bytes, live from..to in schedule positions, register):\n";
  for (const Row& row : rows) {
    out += concat("    ", padded(concat(row.offset), 12), padded(concat(row.bytes), 12),
                  padded(row.first < 0 ? "always" : concat(row.first, "..", row.last), 12), row.owner, "\n");
  }
}

}  // namespace

std::string describe_plan(const proto::Plan& plan) {
  std::string out = concat("plan: ", plan.training() ? "training" : "evaluation", ", seed ", plan.seed(), ", ",
                           plan.ranks_size(), " rank(s)\n");
  std::string feeds, fetches;
  for (const proto::FeedDef& feed : plan.feeds()) {
    feeds +=
        concat(feeds.empty() ? "" : ", ", feed.name(), " ", type_text(feed.type()), feed.needed() ? "" : " (unused)");
  }
  for (const proto::FetchDef& fetch : plan.fetches()) {
    fetches += concat(fetches.empty() ? "" : ", ", fetch.tensor(), " ", type_text(fetch.type()));
  }
  out += concat("feeds: ", feeds.empty() ? "none" : feeds, "\nfetches: ", fetches.empty() ? "none" : fetches, "\n");
  if (plan.boxing_bytes() > 0 || plan.boxing_lower_bound() > 0) {
    out += concat("boxing: ", bytes_text(plan.boxing_bytes()), " (", plan.boxing_bytes(),
                  " bytes) between devices per step; the table's lower bound is ",
                  bytes_text(plan.boxing_lower_bound()), " (", plan.boxing_lower_bound(), " bytes)\n");
  }
  for (const proto::RankPlan& rank : plan.ranks()) {
    for (int d = 0; d < rank.devices_size(); ++d) {
      out += concat("\nrank ", rank.rank(), ", ");
      describe_device(rank, d, out);
    }
  }
  return out;
}

std::string plan_to_dot(const proto::Plan& plan) {
  std::string out =
      "digraph plan {\n  rankdir=TB;\n  compound=true;\n"
      "  node [shape=box, fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];\n";
  std::string edges;
  for (const proto::RankPlan& rank : plan.ranks()) {
    const auto prefix_of = [&](int device) {
      const std::string& name = rank.devices(device).device();
      return concat("r", rank.rank(), "_", name.substr(0, name.find(':')), name.substr(name.find(':') + 1), "_");
    };
    for (int d = 0; d < rank.devices_size(); ++d) {
      const proto::DevicePlan& device = rank.devices(d);
      const std::string prefix = prefix_of(d);
      std::string compute, boxing;
      for (const proto::ActorDef& actor : device.actors()) {
        const bool moves = is_boxing(actor);
        const char* color = actor.kind() == proto::VARIABLE     ? "lightyellow"
                            : actor.kind() == proto::INPUT      ? "lightblue"
                            : actor.kind() == proto::UPDATE     ? "lightpink"
                            : actor.kind() == proto::FETCH      ? "lightgreen"
                            : actor.kind() == proto::COLLECTIVE ? "orange"
                            : moves                             ? "wheat"
                                                                : "white";
        (moves ? boxing : compute) +=
            concat("    ", prefix, actor.id(), " [label=\"", actor.id(), " ", actor.name(), "\\n",
                   actor.op().empty() ? kind_text(actor.kind()) : actor.op(), "\", style=filled, fillcolor=", color,
                   moves ? ", shape=hexagon" : "", "];\n");
        // Edges go after the clusters: an edge between devices belongs to neither.
        for (const proto::OutputDef& output : actor.outputs()) {
          for (const proto::Endpoint& c : output.consumers()) {
            edges += concat("  ", prefix, actor.id(), " -> ", prefix_of(c.device()), c.actor());
            if (output.control()) {
              edges += output.initial_tokens() ? " [style=dashed, color=red, constraint=false]" : " [style=dashed]";
            } else {
              const std::string sbp = output.layout().substr(0, output.layout().find(" on "));
              edges += concat(" [label=\"", type_text(output.type()), " x", output.register_count(), "\\n",
                              sbp.empty() ? "" : concat(sbp, ", "), bytes_text(tensor_bytes(output.type())), "\"",
                              moves ? ", color=darkorange" : "", "]");
            }
            edges += ";\n";
          }
        }
      }
      out += concat("  subgraph \"cluster_", prefix, "\" {\n    label=\"rank ", rank.rank(), " ", device.device(),
                    "\";\n    style=rounded;\n", compute);
      if (!boxing.empty()) {
        out += concat("    subgraph \"cluster_", prefix, "boxing\" {\n      label=\"boxing and collectives\";\n"
                      "      style=dashed;\n      color=darkorange;\n", boxing, "    }\n");
      }
      out += "  }\n";
    }
  }
  return out + edges + "}\n";
}

void render_dot(const std::string& dot, const std::string& format, const std::string& path) {
  if (format != "svg" && format != "png") {
    throw Error::InvalidArgument(concat("render_dot: format '", format, "' (expected svg or png)"));
  }
  char source[] = "/tmp/tessel-plan-XXXXXX.dot";
  const int fd = mkstemps(source, 4);
  if (fd < 0) throw Error::FailedPrecondition(concat("render_dot: cannot make a temporary file: ", std::strerror(errno)));
  const bool written = write(fd, dot.data(), dot.size()) == static_cast<ssize_t>(dot.size());
  close(fd);
  const auto remove_source = [&] { unlink(source); };
  if (!written) {
    remove_source();
    throw Error::FailedPrecondition(concat("render_dot: cannot write ", source));
  }
  const std::string type = concat("-T", format);
  const char* argv[] = {"dot", type.c_str(), "-o", path.c_str(), source, nullptr};
  pid_t child = 0;
  const int spawned = posix_spawnp(&child, "dot", nullptr, nullptr, const_cast<char* const*>(argv), environ);
  if (spawned != 0) {
    remove_source();
    throw Error::FailedPrecondition(
        concat("rendering a plan needs Graphviz's `dot` program, which did not start (", std::strerror(spawned),
               "): apt-get install graphviz (scripts/setup.sh installs it)"));
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  remove_source();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error::FailedPrecondition(concat("Graphviz's `dot -T", format, " -o ", path, "` failed (",
                                           WIFEXITED(status) ? concat("status ", WEXITSTATUS(status)) : "a signal",
                                           "); its message is above"));
  }
}

}  // namespace tessel
