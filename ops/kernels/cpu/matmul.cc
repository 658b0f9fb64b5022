// matmul through OpenBLAS sgemm; batched products loop over sgemm, and a batch of rows times
// one matrix is folded into a single tall sgemm.
#include <cblas.h>

#include "ops/registry.h"

namespace tessel::cpu {
namespace {

void matmul(const KernelContext& c) {
  const TensorView& a = c.inputs[0];
  const TensorView& b = c.inputs[1];
  const TensorView& y = c.outputs[0];
  const bool ta = c.attrs.get_bool("transpose_a", false);
  const bool tb = c.attrs.get_bool("transpose_b", false);
  const int ra = a.shape.rank(), rb = b.shape.rank(), ry = y.shape.rank();
  const int64_t m = y.shape[ry - 2], n = y.shape[ry - 1];
  const int64_t k = ta ? a.shape[ra - 2] : a.shape[ra - 1];
  const int64_t a_matrix = a.shape[ra - 2] * a.shape[ra - 1];
  const int64_t b_matrix = b.shape[rb - 2] * b.shape[rb - 1];
  const int64_t batches = m * n == 0 ? 0 : y.numel() / (m * n);
  const bool a_batched = ra > 2 && a_matrix > 0 && a.numel() / a_matrix > 1;
  const bool b_batched = rb > 2 && b_matrix > 0 && b.numel() / b_matrix > 1;
  const float* pa = a.as<float>();
  const float* pb = b.as<float>();
  float* py = y.as<float>();
  if (k == 0) {
    std::fill(py, py + y.numel(), 0.0f);
    return;
  }
  const auto gemm = [&](int64_t rows, const float* A, const float* B, float* C) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(rows),
                static_cast<int>(n), static_cast<int>(k), 1.0f, A, static_cast<int>(ta ? rows : k), B,
                static_cast<int>(tb ? k : n), 0.0f, C, static_cast<int>(n));
  };
  if (!b_batched && !ta) {  // every batch of a times the same b: one tall product
    gemm(batches * m, pa, pb, py);
    return;
  }
  for (int64_t i = 0; i < batches; ++i) {
    gemm(m, pa + (a_batched ? i * a_matrix : 0), pb + (b_batched ? i * b_matrix : 0), py + i * m * n);
  }
}

TESSEL_KERNEL("matmul", cpu, f32, matmul);

}  // namespace
}  // namespace tessel::cpu
