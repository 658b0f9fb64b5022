#include "ops/kernels/cuda/launchers.h"

namespace tessel::cuda_kernels {
namespace {

constexpr int kThreads = 256;
int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

__global__ void relu_kernel(const float* x, float* y, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = x[i] > 0 ? x[i] : 0.0f;
}

__global__ void relu_grad_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dx[i] = x[i] > 0 ? dy[i] : 0.0f;
}

template <BinaryOp Op>
__global__ void binary_kernel(const float* a, const float* b, float* y, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  if constexpr (Op == BinaryOp::add) y[i] = a[i] + b[i];
  if constexpr (Op == BinaryOp::sub) y[i] = a[i] - b[i];
  if constexpr (Op == BinaryOp::mul) y[i] = a[i] * b[i];
  if constexpr (Op == BinaryOp::div) y[i] = a[i] / b[i];
}

}  // namespace

void launch_relu(const float* x, float* y, int64_t n) {
  if (n > 0) relu_kernel<<<blocks_for(n), kThreads>>>(x, y, n);
}

void launch_relu_grad(const float* x, const float* dy, float* dx, int64_t n) {
  if (n > 0) relu_grad_kernel<<<blocks_for(n), kThreads>>>(x, dy, dx, n);
}

void launch_binary(BinaryOp op, const float* a, const float* b, float* y, int64_t n) {
  if (n <= 0) return;
  switch (op) {
    case BinaryOp::add:
      binary_kernel<BinaryOp::add><<<blocks_for(n), kThreads>>>(a, b, y, n);
      break;
    case BinaryOp::sub:
      binary_kernel<BinaryOp::sub><<<blocks_for(n), kThreads>>>(a, b, y, n);
      break;
    case BinaryOp::mul:
      binary_kernel<BinaryOp::mul><<<blocks_for(n), kThreads>>>(a, b, y, n);
      break;
    case BinaryOp::div:
      binary_kernel<BinaryOp::div><<<blocks_for(n), kThreads>>>(a, b, y, n);
      break;
  }
}

}  // namespace tessel::cuda_kernels
