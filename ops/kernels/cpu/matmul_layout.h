// What a matmul kernel reads off its operands, whatever its dtype: a[..., m, k] @ b[..., k, n]
// with the transposes of its attributes, as `batches` products, and which operands carry a
// batch (the other is one matrix used for every batch).
#pragma once

#include <cstdint>

#include "ops/registry.h"

namespace tessel::cpu {

struct MatmulLayout {
  bool ta = false, tb = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t a_matrix = 0, b_matrix = 0;  // elements of one matrix of each operand
  int64_t batches = 0;
  bool a_batched = false, b_batched = false;
  // Every batch of a times the same b is one tall product of batches * m rows.
  bool tall() const { return !b_batched && !ta; }
};

inline MatmulLayout matmul_layout(const KernelContext& c) {
  const TensorView& a = c.inputs[0];
  const TensorView& b = c.inputs[1];
  const TensorView& y = c.outputs[0];
  MatmulLayout l;
  l.ta = c.attrs.get_bool("transpose_a", false);
  l.tb = c.attrs.get_bool("transpose_b", false);
  const int ra = a.shape.rank(), rb = b.shape.rank(), ry = y.shape.rank();
  l.m = y.shape[ry - 2];
  l.n = y.shape[ry - 1];
  l.k = l.ta ? a.shape[ra - 2] : a.shape[ra - 1];
  l.a_matrix = a.shape[ra - 2] * a.shape[ra - 1];
  l.b_matrix = b.shape[rb - 2] * b.shape[rb - 1];
  l.batches = l.m * l.n == 0 ? 0 : y.numel() / (l.m * l.n);
  l.a_batched = ra > 2 && l.a_matrix > 0 && a.numel() / l.a_matrix > 1;
  l.b_batched = rb > 2 && l.b_matrix > 0 && b.numel() / l.b_matrix > 1;
  return l;
}

}  // namespace tessel::cpu
