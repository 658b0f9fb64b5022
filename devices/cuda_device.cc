#include "devices/cuda_device.h"

#include <cuda_runtime_api.h>

#include "core/error.h"

namespace tessel::cuda {
namespace {
void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error::FailedPrecondition(
        concat(what, " failed: ", cudaGetErrorName(status), ": ", cudaGetErrorString(status)));
  }
}
}  // namespace

DeviceCount device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return {0, concat(cudaGetErrorName(status), ": ", cudaGetErrorString(status))};
  }
  return {count, count == 0 ? "no CUDA device is present" : ""};
}

void set_device(int device) { check(cudaSetDevice(device), "cudaSetDevice"); }

void* allocate(size_t bytes) {
  void* pointer = nullptr;
  check(cudaMalloc(&pointer, bytes), "cudaMalloc");
  return pointer;
}
void release(void* pointer) { cudaFree(pointer); }
void copy_to_device(void* device, const void* host, size_t bytes) {
  check(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
}
void copy_to_host(void* host, const void* device, size_t bytes) {
  check(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}
void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

}  // namespace tessel::cuda
