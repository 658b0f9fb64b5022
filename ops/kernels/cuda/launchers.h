// Private to ops/kernels/cuda: plain launchers of the CUDA kernels, so the .cu files need
// neither Tessel's C++20 headers nor its types.
#pragma once

#include <cstdint>

namespace tessel::cuda_kernels {

enum class BinaryOp { add, sub, mul, div };

void launch_relu(const float* x, float* y, int64_t n);
void launch_relu_grad(const float* x, const float* dy, float* dx, int64_t n);
void launch_binary(BinaryOp op, const float* a, const float* b, float* y, int64_t n);

}  // namespace tessel::cuda_kernels
