// The CPU device: a pool of worker threads that kernels split their loops over.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace tessel {

// Number of threads one CPU kernel uses (the caller included), for its own loops and for
// OpenBLAS. Defaults to the machine's cores, or TESSEL_CPU_THREADS when set. Changing it is
// safe between kernel calls. Kernels that run at the same time (on different actors) do not
// share the pool: one of them runs its loop on its own thread.
int cpu_threads();
void set_cpu_threads(int count);

// Calls body(begin, end) on disjoint chunks covering [0, count), each of at least `grain`
// items where possible, on the worker pool; returns when every chunk is done. Exceptions
// thrown by `body` are rethrown here (the first one).
// While a kernel of a CpuDevice runs (inside its Scope), it uses that device's pool instead.
void parallel_for(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body);
// The threads parallel_for on this thread splits over: its device's, or the process's pool's.
int parallel_for_threads();

// One CPU device of a process, cpu:0 ... cpu:N-1 (the executor makes one per device of its
// plan when there are several): its own pool of `threads` kernel threads, the caller's
// included, so devices run their kernels side by side like separate accelerators.
class CpuDevice {
 public:
  explicit CpuDevice(int threads);
  ~CpuDevice();
  CpuDevice(const CpuDevice&) = delete;
  CpuDevice& operator=(const CpuDevice&) = delete;
  int threads() const;

  // Makes parallel_for on this thread use `device`'s pool until the scope ends (nullptr: the
  // process-wide pool).
  class Scope {
   public:
    explicit Scope(CpuDevice* device);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CpuDevice* previous_;
  };

 private:
  friend void parallel_for(int64_t, int64_t, const std::function<void(int64_t, int64_t)>&);
  friend int parallel_for_threads();
  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace tessel
