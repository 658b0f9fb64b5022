#include "devices/cpu_device.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

extern "C" void openblas_set_num_threads(int threads);  // OpenBLAS's own pool, for matmul

namespace tessel {
namespace {

class WorkerPool {
 public:
  explicit WorkerPool(int threads) { resize(threads); }
  ~WorkerPool() { stop_workers(); }

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    stop_workers();
    stopping_ = false;
    for (int i = 1; i < std::max(1, threads); ++i) workers_.emplace_back([this] { work(); });
  }

  void run(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
    const int64_t chunks = std::min<int64_t>(threads() * 4, (count + grain - 1) / grain);
    if (chunks <= 1 || workers_.empty()) {
      body(0, count);
      return;
    }
    // One parallel_for at a time: while another kernel (on another actor's thread) holds the
    // pool, this one runs on its own thread instead of waiting for the pool.
    std::unique_lock<std::mutex> job_lock(job_mutex_, std::try_to_lock);
    if (!job_lock.owns_lock()) {
      body(0, count);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body;
      count_ = count;
      chunk_count_ = chunks;
      next_chunk_ = 0;
      pending_ = chunks;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_chunks();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_chunks() {
    while (true) {
      const int64_t chunk = next_chunk_.fetch_add(1);
      if (chunk >= chunk_count_) return;
      const int64_t begin = count_ * chunk / chunk_count_;
      const int64_t end = count_ * (chunk + 1) / chunk_count_;
      try {
        (*body_)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_all();
    }
  }

  void work() {
    uint64_t seen = 0;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (body_ == nullptr) continue;
      }
      run_chunks();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  uint64_t generation_ = 0;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t count_ = 0;
  int64_t chunk_count_ = 0;
  std::atomic<int64_t> next_chunk_{0};
  int64_t pending_ = 0;
  std::exception_ptr error_;
};

int default_threads() {
  if (const char* value = std::getenv("TESSEL_CPU_THREADS")) {
    const int count = std::atoi(value);
    if (count > 0) return count;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

WorkerPool& pool() {
  static WorkerPool& instance = []() -> WorkerPool& {
    static WorkerPool created(default_threads());
    openblas_set_num_threads(created.threads());
    return created;
  }();
  return instance;
}

}  // namespace

int cpu_threads() { return pool().threads(); }
void set_cpu_threads(int count) {
  pool().resize(count);
  openblas_set_num_threads(pool().threads());
}

namespace {
thread_local CpuDevice* current_device = nullptr;
}  // namespace

struct CpuDevice::Pool {
  explicit Pool(int threads) : workers(threads) {}
  WorkerPool workers;
};

CpuDevice::CpuDevice(int threads) : pool_(std::make_unique<Pool>(std::max(1, threads))) {}
CpuDevice::~CpuDevice() = default;
int CpuDevice::threads() const { return pool_->workers.threads(); }

CpuDevice::Scope::Scope(CpuDevice* device) : previous_(current_device) { current_device = device; }
CpuDevice::Scope::~Scope() { current_device = previous_; }

void parallel_for(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (count <= 0) return;
  WorkerPool& workers = current_device != nullptr ? current_device->pool_->workers : pool();
  workers.run(count, std::max<int64_t>(1, grain), body);
}

int parallel_for_threads() {
  return current_device != nullptr ? current_device->pool_->workers.threads() : pool().threads();
}

}  // namespace tessel
