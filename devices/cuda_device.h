// CUDA devices: discovery and device memory. Built only where nvcc is found (tessel_cuda).
// Without a GPU or driver nothing crashes: the count is 0 and the reason says why.
#pragma once

#include <cstddef>
#include <string>

namespace tessel::cuda {

struct DeviceCount {
  int count = 0;
  std::string reason;  // why count is 0 ("CUDA driver version is insufficient ..."), else empty
};
DeviceCount device_count();

// Makes `device` the current device of the calling thread.
void set_device(int device);

// Device memory on the current device; Error::FailedPrecondition (naming the CUDA error) when allocation fails.
void* allocate(size_t bytes);
void release(void* pointer);
void copy_to_device(void* device, const void* host, size_t bytes);
void copy_to_host(void* host, const void* device, size_t bytes);
void synchronize();

}  // namespace tessel::cuda
