#include "apps/cli/flags.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "actors/trace.h"

namespace tessel::cli {
namespace {

std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

bool read_integer(const std::string& text, int64_t& value) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (*end != '\0' || errno != 0) return false;
  value = parsed;
  return true;
}

bool read_number(const std::string& text, double& value) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  const double parsed = std::strtod(text.c_str(), &end);
  if (*end != '\0' || !std::isfinite(parsed)) return false;
  value = parsed;
  return true;
}

// "1,16,256" -> {1, 16, 256}; nullopt when an item is not an integer in [low, high].
std::optional<std::vector<int>> integers_of(const std::string& text, int64_t low, int64_t high) {
  std::vector<int> values;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    int64_t value = 0;
    if (!read_integer(text.substr(start, comma - start), value) || value < low || value > high) return std::nullopt;
    values.push_back(static_cast<int>(value));
    start = comma + 1;
  }
  return values;
}

}  // namespace

std::string integer_refusal(const std::string& text, int64_t low, int64_t high) {
  return "'" + text + "' is not an integer in [" + std::to_string(low) + ", " + std::to_string(high) + "]";
}

std::string number_refusal(const std::string& text, double low, double high) {
  return "'" + text + "' is not a number in [" + number_text(low) + ", " + number_text(high) + "]";
}

int64_t parse_integer(const std::string& flag, const std::string& text, int64_t low, int64_t high) {
  int64_t value = 0;
  if (!read_integer(text, value) || value < low || value > high) {
    throw std::invalid_argument(flag + ": " + integer_refusal(text, low, high));
  }
  return value;
}

CLI::Validator integer_in(int64_t low, int64_t high) {
  return CLI::Validator(
      [low, high](std::string& text) -> std::string {
        int64_t value = 0;
        return read_integer(text, value) && value >= low && value <= high ? "" : integer_refusal(text, low, high);
      },
      "[" + std::to_string(low) + ", " + std::to_string(high) + "]");
}

CLI::Validator number_in(double low, double high) {
  return CLI::Validator(
      [low, high](std::string& text) -> std::string {
        double value = 0;
        return read_number(text, value) && value >= low && value <= high ? "" : number_refusal(text, low, high);
      },
      "[" + number_text(low) + ", " + number_text(high) + "]");
}

CLI::Validator integer_list_in(int64_t low, int64_t high) {
  return CLI::Validator(
      [low, high](std::string& text) -> std::string {
        return integers_of(text, low, high) ? ""
                                            : "'" + text + "' is not a list of integers in [" + std::to_string(low) +
                                                  ", " + std::to_string(high) + "]";
      },
      "each in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
}

std::vector<int> integer_list(const std::string& text) {
  const std::optional<std::vector<int>> values = integers_of(text, INT_MIN, INT_MAX);
  if (!values) throw std::invalid_argument("'" + text + "' is not a list of integers");
  return *values;
}

void style(CLI::App& app) {
  auto format = std::make_shared<CLI::Formatter>();
  format->label("Usage", "usage");
  format->column_width(34);
  app.formatter(format);
  app.option_defaults()->always_capture_default();
}

void add_trace_flag(CLI::App& app) {
  app.add_option_function<std::string>(
         "--trace", [](const std::string& path) { if (!path.empty()) trace::start(path); },
         "writes a Chrome trace of every actor activation to FILE (FILE.rankR under tessel-launch; open it at "
         "https://ui.perfetto.dev)")
      ->type_name("FILE")
      ->envname("TESSEL_TRACE");
}

std::string explain(const CLI::Error& error) {
  const std::string what = error.what();
  std::smatch match;
  // CLI11: "The following argument was not expected: --epoch" (ExtrasError).
  static const std::regex extras("The following arguments? (was|were) not expected: (.*)");
  if (std::regex_match(what, match, extras)) {
    // CLI11 lists them last first; name the first flag among them, else the first word.
    std::vector<std::string> words;
    std::istringstream list(match[2].str());
    for (std::string word; list >> word;) words.insert(words.begin(), word);
    for (const std::string& word : words) {
      if (word.rfind('-', 0) == 0) return "unknown flag '" + word + "'";
    }
    return "unexpected argument '" + (words.empty() ? std::string() : words.front()) + "'";
  }
  // "--epochs: 1 required INT missing" (ArgumentMismatch).
  static const std::regex missing("(-[^:]+): [0-9]+ required .* missing");
  if (std::regex_match(what, match, missing)) return match[1].str() + " needs a value";
  return what;
}

void parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& error) {
    std::fprintf(stderr, "%s: %s\nrun '%s --help' for the usage\n", app.get_name().c_str(), explain(error).c_str(),
                 app.get_name().c_str());
    std::exit(2);
  }
}

}  // namespace tessel::cli
