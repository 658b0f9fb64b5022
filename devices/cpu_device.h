// The CPU device: a pool of worker threads that kernels split their loops over.
#pragma once

#include <cstdint>
#include <functional>

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
void parallel_for(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

}  // namespace tessel
