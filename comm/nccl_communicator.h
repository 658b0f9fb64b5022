// NCCL communicators for the GPUs of one process (built with tessel_cuda). The multi-process
// form, with the unique id exchanged over the control plane, comes with the cluster work.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace tessel::nccl {

// "2.28.3": the NCCL library this build runs against (needs no GPU).
std::string version();

// One communicator per local GPU 0..count-1. Error::FailedPrecondition when NCCL fails.
class LocalCommunicators {
 public:
  explicit LocalCommunicators(int count);
  ~LocalCommunicators();
  LocalCommunicators(const LocalCommunicators&) = delete;
  LocalCommunicators& operator=(const LocalCommunicators&) = delete;

  int size() const { return count_; }
  // In-place sum all-reduce of `elements` floats at buffers[i] on device i; waits for it.
  void all_reduce_sum(const std::vector<float*>& buffers, size_t elements);

 private:
  int count_;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessel::nccl
