#include "apps/cli/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace tessel::cli {

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsLog::write(std::initializer_list<std::pair<const char*, double>> fields) {
  if (path_.empty()) return;
  if (file_ == nullptr) {
    file_ = std::fopen(path_.c_str(), "w");
    if (file_ == nullptr) {
      throw Error::FailedPrecondition(concat("cannot write the metrics file ", path_, ": ", std::strerror(errno)));
    }
  }
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  for (const auto& [key, value] : fields) {
    if (!std::isfinite(value)) {
      line[key] = nullptr;
    } else if (value == std::floor(value) && std::abs(value) < 9e15) {
      line[key] = static_cast<int64_t>(value);
    } else {
      line[key] = value;
    }
  }
  const std::string text = line.dump() + "\n";
  std::fputs(text.c_str(), file_);
  std::fflush(file_);
}

}  // namespace tessel::cli
