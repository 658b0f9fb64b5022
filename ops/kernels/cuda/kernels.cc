// CUDA kernels (f32) registered for DeviceType::cuda: element-wise ops (equal shapes so far)
// and matmul through cuBLAS. They run on the default stream; the actor runtime will give
// each device its own streams and completion events.
#include <cublas_v2.h>

#include "ops/kernels/cuda/launchers.h"
#include "ops/registry.h"

namespace tessel::cuda_kernels {
namespace {

void check_same_shapes(const KernelContext& c, const char* op) {
  for (const TensorView& in : c.inputs) {
    if (in.shape != c.outputs[0].shape) {
      throw Error::Unimplemented(concat("op '", op, "' on cuda supports equal shapes only so far, got ", in.shape,
                                        " for an output of ", c.outputs[0].shape));
    }
  }
}

void relu(const KernelContext& c) {
  launch_relu(c.inputs[0].as<float>(), c.outputs[0].as<float>(), c.outputs[0].numel());
}

void relu_grad(const KernelContext& c) {
  launch_relu_grad(c.inputs[0].as<float>(), c.inputs[1].as<float>(), c.outputs[0].as<float>(), c.outputs[0].numel());
}

template <BinaryOp Op>
void binary(const KernelContext& c) {
  check_same_shapes(c, "binary");
  launch_binary(Op, c.inputs[0].as<float>(), c.inputs[1].as<float>(), c.outputs[0].as<float>(), c.outputs[0].numel());
}

cublasHandle_t cublas() {
  thread_local cublasHandle_t handle = [] {
    cublasHandle_t created = nullptr;
    if (cublasCreate(&created) != CUBLAS_STATUS_SUCCESS) throw Error::FailedPrecondition("cublasCreate failed");
    return created;
  }();
  return handle;
}

// Row-major C[m,n] = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: swap the operands.
void matmul(const KernelContext& c) {
  const TensorView& a = c.inputs[0];
  const TensorView& b = c.inputs[1];
  const TensorView& y = c.outputs[0];
  if (a.shape.rank() != 2 || b.shape.rank() != 2) {
    throw Error::Unimplemented("matmul on cuda supports plain matrices only so far");
  }
  const bool ta = c.attrs.get_bool("transpose_a", false), tb = c.attrs.get_bool("transpose_b", false);
  const int m = static_cast<int>(y.shape[0]), n = static_cast<int>(y.shape[1]);
  const int k = static_cast<int>(ta ? a.shape[0] : a.shape[1]);
  const float one = 1, zero = 0;
  const cublasStatus_t status =
      cublasSgemm(cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &one,
                  b.as<float>(), tb ? k : n, a.as<float>(), ta ? m : k, &zero, y.as<float>(), n);
  if (status != CUBLAS_STATUS_SUCCESS) throw Error::FailedPrecondition(concat("cublasSgemm failed: status ", status));
}

TESSEL_KERNEL("relu", cuda, f32, relu);
TESSEL_KERNEL("relu_grad", cuda, f32, relu_grad);
TESSEL_KERNEL("add", cuda, f32, binary<BinaryOp::add>);
TESSEL_KERNEL("sub", cuda, f32, binary<BinaryOp::sub>);
TESSEL_KERNEL("mul", cuda, f32, binary<BinaryOp::mul>);
TESSEL_KERNEL("div", cuda, f32, binary<BinaryOp::div>);
TESSEL_KERNEL("matmul", cuda, f32, matmul);

}  // namespace
}  // namespace tessel::cuda_kernels
