// The metrics file of a training program (--metrics FILE): JSON Lines, one object a line, the
// keys in the order given, a NaN written as null. scripts/plot.sh draws the loss from it.
//
//   MetricsLog log("run.jsonl");
//   log.write({{"step", 12}, {"loss", 2.31}, {"tokens_per_s", 7100}, {"lr", 3e-3}, {"time", 4.2}});
#pragma once

#include <cstdio>
#include <initializer_list>
#include <string>
#include <utility>

namespace tessel::cli {

class MetricsLog {
 public:
  // The file is made at the first write(), so that of a job's ranks only the one that has the
  // figures (the rank that holds the loss) writes it. An empty path: nothing is written.
  explicit MetricsLog(std::string path) : path_(std::move(path)) {}
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  // One line, flushed (a crashed run keeps every line before it). Error::FailedPrecondition when
  // the file cannot be made.
  void write(std::initializer_list<std::pair<const char*, double>> fields);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace tessel::cli
