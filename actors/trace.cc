#include "actors/trace.h"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace tessel::trace {
namespace detail {
std::atomic<Recorder*> active{nullptr};
}  // namespace detail

namespace {

struct Span {
  int actor;
  int64_t step, begin, end;
};

std::mutex global_mutex;
std::unique_ptr<Recorder> global;  // the recorder of start(), kept until the process ends

void write_at_exit() {
  try {
    stop();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "tessel: the trace was not written: %s\n", error.what());
  }
}

}  // namespace

struct Recorder::State {
  mutable std::mutex mutex;
  std::vector<ActorInfo> actors;
  std::vector<Span> spans;
  std::vector<std::pair<int64_t, int64_t>> steps;  // (step, ts)
};

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Recorder::Recorder(std::string path) : path_(std::move(path)), state_(std::make_shared<State>()) {}

int Recorder::add_actors(const std::vector<ActorInfo>& actors) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  const int first = static_cast<int>(state_->actors.size());
  state_->actors.insert(state_->actors.end(), actors.begin(), actors.end());
  return first;
}

void Recorder::span(int id, int64_t step, int64_t begin_us) {
  const int64_t end = now_us();
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->spans.push_back({id, step, begin_us, end});
}

void Recorder::step_done(int64_t step) {
  const int64_t ts = now_us();
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->steps.emplace_back(step, ts);
}

std::string Recorder::json(int pid) const {
  using nlohmann::json;
  std::lock_guard<std::mutex> lock(state_->mutex);
  json events = json::array();
  const char* rank = std::getenv("TESSEL_RANK");
  events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"tid", 0},
                    {"args", {{"name", rank != nullptr ? concat("rank ", rank) : std::string("tessel")}}}});
  events.push_back({{"name", "process_sort_index"}, {"ph", "M"}, {"pid", pid}, {"tid", 0}, {"args", {{"sort_index", pid}}}});
  events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", pid}, {"tid", 0}, {"args", {{"name", "steps"}}}});
  std::map<std::string, int> tracks;  // device -> tid, in the order devices first appear
  std::vector<int> tid_of(state_->actors.size());
  for (size_t a = 0; a < state_->actors.size(); ++a) {
    const std::string& device = state_->actors[a].device;
    auto [it, added] = tracks.emplace(device, static_cast<int>(tracks.size()) + 1);
    if (added) {
      events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", pid}, {"tid", it->second}, {"args", {{"name", device}}}});
      events.push_back({{"name", "thread_sort_index"}, {"ph", "M"}, {"pid", pid}, {"tid", it->second},
                        {"args", {{"sort_index", it->second}}}});
    }
    tid_of[a] = it->second;
  }
  for (const Span& span : state_->spans) {
    const ActorInfo& actor = state_->actors[span.actor];
    events.push_back({{"name", actor.name}, {"cat", actor.kind}, {"ph", "X"}, {"ts", span.begin},
                      {"dur", std::max<int64_t>(0, span.end - span.begin)}, {"pid", pid}, {"tid", tid_of[span.actor]},
                      {"args", {{"step", span.step}, {"bytes", actor.bytes}}}});
  }
  for (const auto& [step, ts] : state_->steps) {
    events.push_back({{"name", concat("step ", step)}, {"cat", "step"}, {"ph", "i"}, {"s", "p"}, {"ts", ts},
                      {"pid", pid}, {"tid", 0}, {"args", {{"step", step}}}});
  }
  return json{{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}}.dump() + "\n";
}

void start(const std::string& path) {
  if (path.empty()) throw Error::InvalidArgument("trace::start: the trace file's path is empty");
  std::lock_guard<std::mutex> lock(global_mutex);
  if (global != nullptr) return;
  const char* rank = std::getenv("TESSEL_RANK");
  global = std::make_unique<Recorder>(rank != nullptr ? concat(path, ".rank", rank) : path);
  static const bool registered = [] { return std::atexit(write_at_exit) == 0; }();
  (void)registered;
  detail::active.store(global.get(), std::memory_order_release);
}

void start_from_environment() {
  static const bool started = [] {
    const char* path = std::getenv("TESSEL_TRACE");
    if (path != nullptr && *path != '\0') start(path);
    return true;
  }();
  (void)started;
}

std::string stop() {
  std::lock_guard<std::mutex> lock(global_mutex);
  if (global == nullptr) return "";
  detail::active.store(nullptr, std::memory_order_release);
  const char* rank = std::getenv("TESSEL_RANK");
  const std::string text = global->json(rank != nullptr ? std::atoi(rank) : 0);
  const std::string path = global->path();
  // Recorders stay alive (actors of a running executor may still hold one): the file is written
  // once, and a later start() begins a new one.
  static std::vector<std::unique_ptr<Recorder>> retired;
  retired.push_back(std::move(global));
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) throw Error::FailedPrecondition(concat("cannot write the trace file ", path));
  return path;
}

void merge(const std::vector<std::string>& parts, const std::string& path) {
  using nlohmann::json;
  json events = json::array();
  for (const std::string& part : parts) {
    std::ifstream in(part);
    if (!in) throw Error::NotFound(concat("no trace file at ", part));
    json file = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (file.is_discarded() || !file.is_object() || !file.contains("traceEvents") || !file["traceEvents"].is_array()) {
      throw Error::InvalidArgument(concat(part, " is not a trace file (expected a JSON object with traceEvents)"));
    }
    for (json& event : file["traceEvents"]) events.push_back(std::move(event));
  }
  std::ofstream out(path);
  out << json{{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}}.dump() << "\n";
  out.close();
  if (!out) throw Error::FailedPrecondition(concat("cannot write the trace file ", path));
}

}  // namespace tessel::trace
