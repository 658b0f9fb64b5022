#include "core/logging.h"

#include <glog/logging.h>

#include <mutex>

namespace tessel {

void init_logging(const char* program_name) {
  static std::once_flag once;
  std::call_once(once, [&] {
    FLAGS_logtostderr = true;
    google::InitGoogleLogging(program_name);
  });
}

}  // namespace tessel
