// Private to the CPU kernels: loops over broadcast shapes and rectangular blocks.
#pragma once

#include <array>
#include <cstring>
#include <vector>

#include "core/shape.h"
#include "core/tensor.h"

namespace tessel::cpu {

// Visits `big` row by row (a row is its last axis), giving for each row the offset into each
// operand whose shape broadcasts to `big`, and each operand's stride along the row (0 where
// its last extent is 1). fn(big_offset, offsets, strides, length), with std::array arguments.
template <size_t K, typename Fn>
void for_each_broadcast_row(const Shape& big, const std::array<Shape, K>& operands, Fn&& fn) {
  const int rank = big.rank();
  std::array<int64_t, K> offsets{}, row_strides{};
  if (rank == 0) {
    fn(int64_t{0}, offsets, row_strides, int64_t{1});
    return;
  }
  std::vector<std::array<int64_t, K>> strides(rank, std::array<int64_t, K>{});
  for (size_t k = 0; k < K; ++k) {
    const Shape& small = operands[k];
    int64_t stride = 1;
    for (int i = small.rank() - 1; i >= 0; --i) {
      strides[rank - small.rank() + i][k] = small[i] == 1 ? 0 : stride;
      stride *= small[i];
    }
  }
  for (size_t k = 0; k < K; ++k) row_strides[k] = strides[rank - 1][k];
  const int64_t length = big[rank - 1];
  const int64_t rows = length == 0 ? 0 : big.numel() / length;
  std::vector<int64_t> index(rank, 0);
  for (int64_t row = 0; row < rows; ++row) {
    fn(row * length, offsets, row_strides, length);
    for (int axis = rank - 2; axis >= 0; --axis) {  // advance the row counter
      for (size_t k = 0; k < K; ++k) offsets[k] += strides[axis][k];
      if (++index[axis] < big[axis]) break;
      for (size_t k = 0; k < K; ++k) offsets[k] -= strides[axis][k] * big[axis];
      index[axis] = 0;
    }
  }
}

// Sets `out` (of shape `small`) to the sum of the f32 tensor `big` over the axes along which
// `small` broadcasts to it: the sum_to kernel, and sum/mean with the kept-dims shape.
void sum_into(const TensorView& big, const Shape& small, float* out);  // elementwise.cc

// Splits a tensor around `axis` into (outer, axis extent, inner) for loops along one axis.
struct AxisSplit {
  int64_t outer = 1, extent = 1, inner = 1;
};
inline AxisSplit split_at(const Shape& shape, int axis) {
  AxisSplit s;
  for (int i = 0; i < axis; ++i) s.outer *= shape[i];
  s.extent = shape[axis];
  for (int i = axis + 1; i < shape.rank(); ++i) s.inner *= shape[i];
  return s;
}

}  // namespace tessel::cpu
