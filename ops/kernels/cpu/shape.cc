// CPU kernels of reshape, transpose, concat, slice and the boxing pieces: byte copies, so
// every dtype has them (reductions of partial values are f32, bf16 and f16).
#include <algorithm>
#include <cstring>
#include <limits>

#include "devices/cpu_device.h"
#include "ops/kernels/cpu/kernel_helpers.h"
#include "ops/kernels/cpu/widened.h"
#include "ops/registry.h"

namespace tessel::cpu {
namespace {

std::byte* bytes(const TensorView& t) { return static_cast<std::byte*>(t.data); }

void reshape(const KernelContext& c) {
  if (c.outputs[0].nbytes() > 0) std::memcpy(c.outputs[0].data, c.inputs[0].data, c.outputs[0].nbytes());
}

// Copies `count` elements of `size` bytes, `stride` elements apart in `from`, to `to` in a row.
void gather_strided(std::byte* to, const std::byte* from, int64_t stride, int64_t count, size_t size) {
  const auto typed = [&](auto element) {
    using T = decltype(element);
    T* y = reinterpret_cast<T*>(to);
    const T* x = reinterpret_cast<const T*>(from);
    for (int64_t j = 0; j < count; ++j) y[j] = x[j * stride];
  };
  switch (size) {
    case 1: return typed(uint8_t{});
    case 2: return typed(uint16_t{});
    case 4: return typed(uint32_t{});
    case 8: return typed(uint64_t{});
    default:
      for (int64_t j = 0; j < count; ++j) std::memcpy(to + j * size, from + j * stride * size, size);
  }
}

void transpose(const KernelContext& c) {
  const TensorView& x = c.inputs[0];
  const TensorView& y = c.outputs[0];
  const std::vector<int64_t>& permutation = c.attrs.get_ints("permutation");
  const size_t size = size_of(x.dtype);
  if (y.numel() == 0) return;
  // The axes that end y and x in the same order are one contiguous run in both: one memcpy each.
  int rank = y.shape.rank();
  int64_t run = 1;
  while (rank > 0 && permutation[rank - 1] == rank - 1) run *= y.shape[--rank];
  if (rank == 0) {
    std::memcpy(y.data, x.data, y.nbytes());
    return;
  }
  const std::vector<int64_t> x_strides = x.shape.strides();
  std::vector<int64_t> source_strides(rank);  // stride in x of each remaining axis of y
  for (int i = 0; i < rank; ++i) source_strides[i] = x_strides[permutation[i]];
  // The last remaining axis is the inner loop; the ones before it are counted as lines.
  const int64_t inner = y.shape[rank - 1];
  const int64_t inner_stride = source_strides[rank - 1];
  const size_t run_bytes = static_cast<size_t>(run) * size;
  std::vector<int64_t> index(rank - 1, 0);
  int64_t source = 0;
  std::byte* out = bytes(y);
  for (int64_t line = 0, lines = y.numel() / (inner * run); line < lines; ++line) {
    if (run == 1) {
      gather_strided(out, bytes(x) + source * size, inner_stride, inner, size);
      out += inner * size;
    } else {
      for (int64_t j = 0; j < inner; ++j, out += run_bytes) {
        std::memcpy(out, bytes(x) + (source + j * inner_stride) * size, run_bytes);
      }
    }
    for (int axis = rank - 2; axis >= 0; --axis) {
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

void copy(const KernelContext& c) { std::memcpy(c.outputs[0].data, c.inputs[0].data, c.outputs[0].nbytes()); }

// Accumulates the f32 pieces (their shapes, at `offsets` in y) into out, which holds y's elements:
// sums, or maxima.
void assemble_reduced(const std::vector<const float*>& ins, const std::vector<Shape>& shapes, const Shape& shape,
                      const std::vector<int64_t>& offsets, bool sum, float* out) {
  const int rank = shape.rank();
  const int64_t numel = shape.numel();
  const bool whole = std::all_of(shapes.begin(), shapes.end(), [&](const Shape& p) { return p == shape; });
  if (whole && !ins.empty()) {  // P -> B: every piece is a full partial value; one pass over them
    parallel_for(numel, 1 << 16, [&](int64_t begin, int64_t end) {
      std::copy(ins[0] + begin, ins[0] + end, out + begin);
      for (size_t i = 1; i < ins.size(); ++i) {
        const float* in = ins[i];
        if (sum) {
          for (int64_t j = begin; j < end; ++j) out[j] += in[j];
        } else {
          for (int64_t j = begin; j < end; ++j) out[j] = std::max(out[j], in[j]);
        }
      }
    });
    return;
  }
  std::fill(out, out + numel, sum ? 0.0f : -std::numeric_limits<float>::infinity());
  const std::vector<int64_t> strides = shape.strides();
  for (size_t i = 0; i < ins.size(); ++i) {
    const float* in = ins[i];
    const int64_t count = shapes[i].numel();
    if (count == 0) continue;
    const int64_t row = rank == 0 ? 1 : shapes[i][rank - 1];
    std::vector<int64_t> index(rank, 0);
    for (int64_t done = 0; done < count; done += row) {
      int64_t target = 0;
      for (int a = 0; a < rank; ++a) target += (offsets[i * rank + a] + index[a]) * strides[a];
      float* o = out + target;
      const float* p = in + done;
      if (sum) {
        for (int64_t j = 0; j < row; ++j) o[j] += p[j];
      } else {
        for (int64_t j = 0; j < row; ++j) o[j] = std::max(o[j], p[j]);
      }
      for (int a = rank - 2; a >= 0; --a) {
        if (++index[a] < shapes[i][a]) break;
        index[a] = 0;
      }
    }
  }
}

// Places each piece at its offsets; with reduce "sum" or "max" accumulates them: f32 in place;
// bf16 and f16 widened to f32, accumulated there and rounded once at the end.
void boxing_assemble(const KernelContext& c) {
  const TensorView& y = c.outputs[0];
  const std::vector<int64_t>& offsets = c.attrs.get_ints("offsets");
  const std::string& reduce = c.attrs.get_string("reduce");
  const int rank = y.shape.rank();
  if (reduce == "none") {
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      const TensorView& piece = c.inputs[i];
      const std::vector<int64_t> start(offsets.begin() + i * rank, offsets.begin() + (i + 1) * rank);
      copy_block(bytes(piece), piece.shape, std::vector<int64_t>(rank, 0), bytes(y), y.shape, start, piece.shape.dims(),
                 size_of(y.dtype));
    }
    return;
  }
  const bool sum = reduce == "sum";
  std::vector<Shape> shapes;
  for (const TensorView& piece : c.inputs) shapes.push_back(piece.shape);
  if (y.dtype == DType::f32) {
    std::vector<const float*> ins;
    for (const TensorView& piece : c.inputs) ins.push_back(piece.as<float>());
    return assemble_reduced(ins, shapes, y.shape, offsets, sum, y.as<float>());
  }
  if (y.dtype != DType::bf16 && y.dtype != DType::f16) {
    throw Error::Unimplemented(concat("boxing_assemble reduces f32, bf16 and f16, got ", y.dtype));
  }
  std::vector<std::vector<float>> wide(c.inputs.size());
  std::vector<const float*> ins;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    wide[i].resize(static_cast<size_t>(c.inputs[i].numel()));
    widen_to_f32(c.inputs[i], wide[i].data());
    ins.push_back(wide[i].data());
  }
  std::vector<float> out(static_cast<size_t>(y.numel()));
  assemble_reduced(ins, shapes, y.shape, offsets, sum, out.data());
  narrow_from_f32(out.data(), y);
}

[[maybe_unused]] const bool registered = [] {
  OpRegistry& registry = OpRegistry::global();
  for (DType dtype : kAllDTypes) {
    registry.register_kernel("reshape", DeviceType::cpu, dtype, reshape);
    registry.register_kernel("transpose", DeviceType::cpu, dtype, transpose);
    registry.register_kernel("concat", DeviceType::cpu, dtype, concat);
    registry.register_kernel("slice", DeviceType::cpu, dtype, slice);
    registry.register_kernel("slice_grad", DeviceType::cpu, dtype, slice_grad);
    registry.register_kernel("to", DeviceType::cpu, dtype, copy);
    registry.register_kernel("copy", DeviceType::cpu, dtype, copy);
    registry.register_kernel("boxing_assemble", DeviceType::cpu, dtype, boxing_assemble);
  }
  return true;
}();

}  // namespace
}  // namespace tessel::cpu
