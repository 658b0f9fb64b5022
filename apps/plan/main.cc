// tessel-plan: prints a plan's actors, registers and memory layout, and writes its actor
// graph as Graphviz dot.
//
//   tessel-plan FILE [--dot OUT.dot]                    a plan written by write_plan()
//   tessel-plan --mlp 1024,4096,4096,1024 [--batch N] [--register-count N] [--no-share]
//               [--evaluation] [--write FILE] [--dot OUT.dot]
//   tessel-plan --example tensor-parallel [...]        a parallel example (apps/models/parallel.h)
//
// FILE ending in .pbtxt or .txt is protobuf text, anything else binary. tessel-digits
// --write-plan FILE writes the digits model's plan.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "apps/models/mlp.h"
#include "apps/models/parallel.h"
#include "core/logging.h"
#include "graph/compile.h"
#include "graph/plan_inspect.h"
#include "proto/plan.pb.h"

namespace {

// The usage after `problem` on stderr, status 2; for --help (`asked`) on stdout, status 0.
[[noreturn]] void usage(const std::string& problem, bool asked = false) {
  std::fprintf(asked ? stdout : stderr,
               "tessel-plan: %s\n"
               "usage: tessel-plan FILE [--dot OUT.dot]\n"
               "       tessel-plan --mlp W1,W2,...,Wn [--batch N] [--register-count N] [--no-share] [--evaluation]\n"
               "                   [--write FILE] [--dot OUT.dot]\n"
               "       tessel-plan --example data-parallel|tensor-parallel|pipeline|hybrid [same flags]\n",
               problem.c_str());
  std::exit(asked ? 0 : 2);
}

int64_t integer(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') usage(flag + " expects an integer, got '" + text + "'");
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  tessel::init_logging(argv[0]);
  std::string file, dot, write, widths, example;
  int64_t batch = 256, register_count = 1;
  bool share = true, evaluation = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value after " + flag);
      return argv[++i];
    };
    if (flag == "--help") usage("inspects a plan", /*asked=*/true);
    if (flag == "--dot") {
      dot = value();
    } else if (flag == "--write") {
      write = value();
    } else if (flag == "--mlp") {
      widths = value();
    } else if (flag == "--example") {
      example = value();
    } else if (flag == "--batch") {
      batch = integer(flag, value());
    } else if (flag == "--register-count") {
      register_count = integer(flag, value());
    } else if (flag == "--no-share") {
      share = false;
    } else if (flag == "--evaluation") {
      evaluation = true;
    } else if (flag.rfind("--", 0) == 0) {
      usage("unknown flag " + flag);
    } else if (file.empty()) {
      file = flag;
    } else {
      usage("one plan file at a time (got '" + file + "' and '" + flag + "')");
    }
  }
  if (file.empty() + widths.empty() + example.empty() != 2) usage("give a plan FILE, --mlp widths or --example NAME");
  try {
    tessel::proto::Plan plan;
    if (!file.empty()) {
      plan = tessel::read_plan(file);
    } else if (!example.empty()) {
      tessel::models::ParallelExample parallel = tessel::models::build_parallel_example(example);
      plan = tessel::compile_plan(*parallel.graph, {.fetches = {parallel.loss},
                                                    .training = !evaluation,
                                                    .register_count = static_cast<int>(register_count),
                                                    .share_memory = share,
                                                    .placement = parallel.placement});
    } else {
      std::vector<int64_t> layer_widths;
      std::stringstream list(widths);
      for (std::string width; std::getline(list, width, ',');) layer_widths.push_back(integer("--mlp", width));
      tessel::Graph g;
      const tessel::models::Mlp mlp = tessel::models::build_mlp(g, layer_widths, batch);
      plan = tessel::compile_plan(g, {.fetches = {mlp.loss},
                                      .training = !evaluation,
                                      .register_count = static_cast<int>(register_count),
                                      .share_memory = share});
    }
    std::fputs(tessel::describe_plan(plan).c_str(), stdout);
    if (!write.empty()) {
      tessel::write_plan(plan, write);
      std::printf("\nplan written to %s\n", write.c_str());
    }
    if (!dot.empty()) {
      std::ofstream out(dot);
      out << tessel::plan_to_dot(plan);
      if (!out) throw tessel::Error::NotFound("cannot write '" + dot + "'");
      std::printf("actor graph written to %s (render: dot -Tsvg %s -o plan.svg)\n", dot.c_str(), dot.c_str());
    }
  } catch (const tessel::Error& error) {
    std::fprintf(stderr, "tessel-plan: %s\n", error.what());
    return 1;
  }
  return 0;
}
