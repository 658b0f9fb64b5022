// CPU devices: a kernel inside a device's scope splits its loops over that device's threads,
// not over the process-wide pool.
#include "devices/cpu_device.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <set>
#include <thread>

namespace tessel {
namespace {

std::set<std::thread::id> threads_of_a_loop() {
  std::mutex mutex;
  std::set<std::thread::id> seen;
  parallel_for(64, 1, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::lock_guard<std::mutex> lock(mutex);
    seen.insert(std::this_thread::get_id());
  });
  return seen;
}

TEST(CpuDevice, LoopsInsideItsScopeRunOnItsOwnThreads) {
  const int before = cpu_threads();
  set_cpu_threads(4);
  EXPECT_GT(threads_of_a_loop().size(), 1u);  // the process-wide pool
  CpuDevice single(1), triple(3);
  {
    CpuDevice::Scope scope(&single);
    EXPECT_EQ(threads_of_a_loop(), std::set<std::thread::id>{std::this_thread::get_id()});
    {
      CpuDevice::Scope inner(&triple);
      const std::set<std::thread::id> seen = threads_of_a_loop();
      EXPECT_GT(seen.size(), 1u);
      EXPECT_LE(seen.size(), 3u);
    }
    EXPECT_EQ(threads_of_a_loop().size(), 1u);  // the outer scope is back
  }
  EXPECT_EQ(triple.threads(), 3);
  set_cpu_threads(before);
}

}  // namespace
}  // namespace tessel
