// tessel-plan: prints a plan's actors, registers and memory layout, and writes its actor
// graph as Graphviz dot, or drawn through Graphviz as SVG or PNG (--help for every flag).
//
//   tessel-plan FILE [--dot OUT.dot] [--svg OUT.svg] [--png OUT.png]   a plan written by write_plan()
//   tessel-plan --mlp 1024,4096,4096,1024 [--batch N] [--register-count N] [--no-share]
//               [--evaluation] [--write FILE] [--dot OUT.dot] [--svg OUT.svg] [--png OUT.png]
//   tessel-plan --example tensor-parallel [...]        a parallel example (apps/models/parallel.h)
//
// FILE ending in .pbtxt or .txt is protobuf text, anything else binary. tessel-digits
// --write-plan FILE writes the digits model's plan.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "apps/cli/flags.h"
#include "apps/models/mlp.h"
#include "apps/models/parallel.h"
#include "core/logging.h"
#include "graph/compile.h"
#include "graph/plan_inspect.h"
#include "proto/plan.pb.h"

int main(int argc, char** argv) {
  tessel::init_logging(argv[0]);
  std::string file, dot, svg, png, write, widths, example;
  int64_t batch = 256, register_count = 1;
  bool no_share = false, no_fuse = false, evaluation = false;
  CLI::App app("inspects a plan: its actors, registers and memory layout", "tessel-plan");
  tessel::cli::style(app);
  app.add_option("FILE", file, "a plan written by write_plan() (.pbtxt or .txt: protobuf text)");
  app.add_option("--mlp", widths, "an MLP of these widths, W1,W2,...,Wn")->type_name("WIDTHS");
  app.add_option("--example", example, "a parallel example (apps/models/parallel.h)")
      ->check(CLI::IsMember({"data-parallel", "tensor-parallel", "pipeline", "hybrid"}));
  app.add_option("--batch", batch, "the MLP's batch")->check(tessel::cli::integer_in(1, int64_t{1} << 30));
  app.add_option("--register-count", register_count, "registers per output")->check(tessel::cli::integer_in(1, 64));
  app.add_flag("--no-share", no_share, "registers of disjoint lifetimes get bytes of their own");
  app.add_flag("--no-fuse", no_fuse, "no epilogue fusion: each matmul, bias_add and activation an actor of its own");
  app.add_flag("--evaluation", evaluation, "the evaluation plan (no backward, no update)");
  app.add_option("--write", write, "writes the plan to FILE")->type_name("FILE");
  app.add_option("--dot", dot, "writes the actor graph as Graphviz dot")->type_name("OUT.dot");
  app.add_option("--svg", svg, "renders the actor graph to SVG through Graphviz")->type_name("OUT.svg");
  app.add_option("--png", png, "renders the actor graph to PNG through Graphviz")->type_name("OUT.png");
  tessel::cli::parse(app, argc, argv);
  if (file.empty() + widths.empty() + example.empty() != 2) {
    std::fprintf(
        stderr,
        "tessel-plan: give a plan FILE, --mlp widths or --example NAME\nrun 'tessel-plan --help' for the usage\n");
    return 2;
  }
  const bool share = !no_share;
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
                                                    .fuse = !no_fuse,
                                                    .placement = parallel.placement});
    } else {
      std::vector<int64_t> layer_widths;
      std::stringstream list(widths);
      for (std::string width; std::getline(list, width, ',');) {
        layer_widths.push_back(tessel::cli::parse_integer("--mlp", width, 1, int64_t{1} << 30));
      }
      tessel::Graph g;
      const tessel::models::Mlp mlp = tessel::models::build_mlp(g, layer_widths, batch);
      plan = tessel::compile_plan(g, {.fetches = {mlp.loss},
                                      .training = !evaluation,
                                      .register_count = static_cast<int>(register_count),
                                      .share_memory = share,
                                      .fuse = !no_fuse});
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
    for (const auto& [format, path] : {std::pair<std::string, std::string>{"svg", svg}, {"png", png}}) {
      if (path.empty()) continue;
      tessel::render_dot(tessel::plan_to_dot(plan), format, path);
      std::printf("actor graph drawn in %s\n", path.c_str());
    }
  } catch (const tessel::Error& error) {
    std::fprintf(stderr, "tessel-plan: %s\n", error.what());
    return 1;
  } catch (const std::invalid_argument& error) {
    std::fprintf(stderr, "tessel-plan: %s\n", error.what());
    return 2;
  }
  return 0;
}
