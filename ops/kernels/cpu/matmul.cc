// matmul through OpenBLAS sgemm; batched products loop over sgemm, and a batch of rows times
// one matrix is folded into a single tall sgemm.
#include <cblas.h>

#include "ops/kernels/cpu/matmul_layout.h"
#include "ops/registry.h"

namespace tessel::cpu {
namespace {

void matmul(const KernelContext& c) {
  const MatmulLayout l = matmul_layout(c);
  const float* pa = c.inputs[0].as<float>();
  const float* pb = c.inputs[1].as<float>();
  float* py = c.outputs[0].as<float>();
  if (l.k == 0) {
    std::fill(py, py + c.outputs[0].numel(), 0.0f);
    return;
  }
  const auto gemm = [&](int64_t rows, const float* A, const float* B, float* C) {
    cblas_sgemm(CblasRowMajor, l.ta ? CblasTrans : CblasNoTrans, l.tb ? CblasTrans : CblasNoTrans,
                static_cast<int>(rows), static_cast<int>(l.n), static_cast<int>(l.k), 1.0f, A,
                static_cast<int>(l.ta ? rows : l.k), B, static_cast<int>(l.tb ? l.k : l.n), 0.0f, C,
                static_cast<int>(l.n));
  };
  if (l.tall()) {
    gemm(l.batches * l.m, pa, pb, py);
    return;
  }
  for (int64_t i = 0; i < l.batches; ++i) {
    gemm(l.m, pa + (l.a_batched ? i * l.a_matrix : 0), pb + (l.b_batched ? i * l.b_matrix : 0), py + i * l.m * l.n);
  }
}

TESSEL_KERNEL("matmul", cpu, f32, matmul);

}  // namespace
}  // namespace tessel::cpu
