// CPU kernels of reshape, transpose, concat and slice: byte copies, so every dtype has them.
#include <cstring>

#include "ops/kernels/cpu/kernel_helpers.h"
#include "ops/registry.h"

namespace tessel::cpu {
namespace {

std::byte* bytes(const TensorView& t) { return static_cast<std::byte*>(t.data); }

void reshape(const KernelContext& c) {
  if (c.outputs[0].nbytes() > 0) std::memcpy(c.outputs[0].data, c.inputs[0].data, c.outputs[0].nbytes());
}

void transpose(const KernelContext& c) {
  const TensorView& x = c.inputs[0];
  const TensorView& y = c.outputs[0];
  const std::vector<int64_t>& permutation = c.attrs.get_ints("permutation");
  const int rank = y.shape.rank();
  const size_t size = size_of(x.dtype);
  const std::vector<int64_t> x_strides = x.shape.strides();
  std::vector<int64_t> source_strides(rank);  // stride in x of each axis of y
  for (int i = 0; i < rank; ++i) source_strides[i] = x_strides[permutation[i]];
  std::vector<int64_t> index(rank, 0);
  int64_t source = 0;
  for (int64_t i = 0, n = y.numel(); i < n; ++i) {
    std::memcpy(bytes(y) + i * size, bytes(x) + source * size, size);
    for (int axis = rank - 1; axis >= 0; --axis) {
      source += source_strides[axis];
      if (++index[axis] < y.shape[axis]) break;
      source -= source_strides[axis] * y.shape[axis];
      index[axis] = 0;
    }
  }
}

void concat(const KernelContext& c) {
  const TensorView& y = c.outputs[0];
  const int axis = *y.shape.normalize_axis(c.attrs.get_int("axis"));
  const std::vector<int64_t> origin(y.shape.rank(), 0);
  std::vector<int64_t> start(y.shape.rank(), 0);
  for (const TensorView& x : c.inputs) {
    copy_block(bytes(x), x.shape, origin, bytes(y), y.shape, start, x.shape.dims(), size_of(x.dtype));
    start[axis] += x.shape[axis];
  }
}

void slice(const KernelContext& c) {
  const TensorView& x = c.inputs[0];
  const TensorView& y = c.outputs[0];
  copy_block(bytes(x), x.shape, c.attrs.get_ints("starts"), bytes(y), y.shape, std::vector<int64_t>(y.shape.rank(), 0),
             y.shape.dims(), size_of(x.dtype));
}

void slice_grad(const KernelContext& c) {
  const TensorView& dy = c.inputs[0];
  const TensorView& dx = c.outputs[0];
  std::memset(dx.data, 0, dx.nbytes());
  copy_block(bytes(dy), dy.shape, std::vector<int64_t>(dy.shape.rank(), 0), bytes(dx), dx.shape,
             c.attrs.get_ints("starts"), dy.shape.dims(), size_of(dy.dtype));
}

[[maybe_unused]] const bool registered = [] {
  OpRegistry& registry = OpRegistry::global();
  for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::i32, DType::i64}) {
    registry.register_kernel("reshape", DeviceType::cpu, dtype, reshape);
    registry.register_kernel("transpose", DeviceType::cpu, dtype, transpose);
    registry.register_kernel("concat", DeviceType::cpu, dtype, concat);
    registry.register_kernel("slice", DeviceType::cpu, dtype, slice);
    registry.register_kernel("slice_grad", DeviceType::cpu, dtype, slice_grad);
  }
  return true;
}();

}  // namespace
}  // namespace tessel::cpu
