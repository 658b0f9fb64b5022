// Reads a merged trace (actors/trace.h) with nlohmann-json and prints, per process (rank): its
// name, its device tracks, its spans, its steps, and its spans by kind. Exits 1 when the file is
// not a trace or a track holds one actor twice in a step.
//   trace_check FILE
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: trace_check FILE\n");
    return 2;
  }
  std::ifstream in(argv[1]);
  const nlohmann::json file = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (file.is_discarded() || !file.contains("traceEvents")) {
    std::printf("FAIL: %s is not a trace file\n", argv[1]);
    return 1;
  }
  struct Process {
    std::string name;
    std::set<std::string> tracks;
    int spans = 0, steps = 0;
    std::map<std::string, int> kinds;
  };
  std::map<int, Process> processes;
  std::set<std::tuple<int, int, std::string, int64_t>> seen;
  for (const nlohmann::json& event : file["traceEvents"]) {
    Process& process = processes[event.at("pid").get<int>()];
    const std::string phase = event.at("ph");
    if (phase == "M" && event.at("name") == "process_name") process.name = event.at("args").at("name");
    if (phase == "M" && event.at("name") == "thread_name") process.tracks.insert(event.at("args").at("name").get<std::string>());
    if (phase == "i") ++process.steps;
    if (phase != "X") continue;
    ++process.spans;
    ++process.kinds[event.at("cat").get<std::string>()];
    if (!seen.emplace(event.at("pid"), event.at("tid"), event.at("name"), event.at("args").at("step")).second) {
      std::printf("FAIL: %s appears twice at step %lld\n", event.at("name").get<std::string>().c_str(),
                  static_cast<long long>(event.at("args").at("step").get<int64_t>()));
      return 1;
    }
  }
  for (const auto& [pid, process] : processes) {
    std::string tracks, kinds;
    for (const std::string& track : process.tracks) tracks += " " + track;
    for (const auto& [kind, count] : process.kinds) kinds += " " + kind + "=" + std::to_string(count);
    std::printf("pid %d name '%s' tracks%s spans %d steps %d kinds%s\n", pid, process.name.c_str(), tracks.c_str(),
                process.spans, process.steps, kinds.c_str());
  }
  return 0;
}
