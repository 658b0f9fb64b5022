// Command lines of Tessel's programs, parsed by CLI11 (Debian's libcli11-dev) with one wording
// everywhere. Included by programs' main.cc files only: CLI11 is a large header.
//
//   CLI::App app("trains an MLP on the digits data set", "tessel-digits");
//   tessel::cli::style(app);
//   app.add_option("--epochs", epochs, "passes over the training set")->check(tessel::cli::integer_in(1, 100000));
//   tessel::cli::parse(app, argc, argv);
//
// A bad value reads "--epochs: '1.7' is not an integer in [1, 100000]" in every program, an
// unknown flag "unknown flag '--epoch'", a flag without its value "--epochs needs a value";
// each goes to stderr after the program's name, with a pointer to --help, and exits 2. --help
// prints the generated usage ("usage: tessel-digits [OPTIONS]", then every flag with its help,
// default and environment variable) on stdout and exits 0.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace tessel::cli {

// Gives `app` the usage's wording above.
void style(CLI::App& app);

// Validators with the common wording; integer_in refuses 1.7 and 1e3, not truncating them.
CLI::Validator integer_in(int64_t low, int64_t high);
CLI::Validator number_in(double low, double high);

// "1,16,256": a comma-separated list of integers, each in [low, high] ("'1,x' is not a list of
// integers in [1, 4096]"); integer_list reads one (std::invalid_argument for a bad one).
CLI::Validator integer_list_in(int64_t low, int64_t high);
std::vector<int> integer_list(const std::string& text);

// "'abc' is not an integer in [1, 1024]", for checks made after parsing (a range that depends on
// another flag). parse_integer throws std::invalid_argument("FLAG: " + that) for a bad text.
std::string integer_refusal(const std::string& text, int64_t low, int64_t high);
std::string number_refusal(const std::string& text, double low, double high);
int64_t parse_integer(const std::string& flag, const std::string& text, int64_t low, int64_t high);

// --trace FILE (and TESSEL_TRACE): starts a Chrome trace of the actors into FILE (actors/trace.h)
// once the command line is parsed.
void add_trace_flag(CLI::App& app);

// What a parse error says, in the common wording.
std::string explain(const CLI::Error& error);

// Parses argv; exits 0 after --help and 2 after a bad command line (see above).
void parse(CLI::App& app, int argc, char** argv);

}  // namespace tessel::cli
