#include "core/tensor.h"

#include <glog/logging.h>

#include <cstdlib>
#include <cstring>

namespace tessel {

std::string_view name_of(DeviceType device) { return device == DeviceType::cpu ? "cpu" : "cuda"; }

void TensorView::check_element_type(DType requested) const {
  CHECK(requested == dtype) << "tensor of dtype " << dtype << " read as " << requested;
}

HostTensor::HostTensor(Shape shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  for (int64_t d : shape_) {
    if (d < 0) throw Error::InvalidArgument(concat("tensor shape ", shape_, " has a negative extent"));
  }
  constexpr size_t kAlignment = 64;
  size_t payload = 0;
  if (__builtin_mul_overflow(static_cast<size_t>(shape_.numel()), size_of(dtype_), &payload) ||
      payload > (size_t{1} << 62)) {
    throw Error::OutOfRange(
        concat("a tensor of shape ", shape_, " ", dtype_, " needs more bytes than memory can hold"));
  }
  const size_t bytes = (std::max<size_t>(payload, 1) + kAlignment - 1) / kAlignment * kAlignment;
  auto* memory = static_cast<std::byte*>(std::aligned_alloc(kAlignment, bytes));
  if (memory == nullptr) {
    throw Error::OutOfRange(
        concat("out of host memory: a tensor of shape ", shape_, " ", dtype_, " needs ", bytes, " bytes"));
  }
  std::memset(memory, 0, bytes);
  storage_ = std::shared_ptr<std::byte>(memory, [](std::byte* p) { std::free(p); });
}

double HostTensor::get(int64_t index) const {
  if (!defined()) throw Error::FailedPrecondition(concat("get(", index, ") of an undefined tensor (it holds no value)"));
  if (index < 0 || index >= numel())
    throw Error::OutOfRange(concat("get(", index, ") of a tensor of shape ", shape_, " (", numel(), " elements)"));
  const void* p = storage_.get();
  switch (dtype_) {
    case DType::f32:
      return static_cast<const float*>(p)[index];
    case DType::f16:
      return f16_to_float(static_cast<const uint16_t*>(p)[index]);
    case DType::bf16:
      return bf16_to_float(static_cast<const uint16_t*>(p)[index]);
    case DType::i32:
      return static_cast<const int32_t*>(p)[index];
    case DType::i64:
      return static_cast<double>(static_cast<const int64_t*>(p)[index]);
    case DType::boolean:
      return static_cast<const bool*>(p)[index] ? 1.0 : 0.0;
  }
  return 0;
}

void HostTensor::set(int64_t index, double value) {
  if (!defined()) throw Error::FailedPrecondition(concat("set(", index, ") of an undefined tensor (it holds no storage)"));
  if (index < 0 || index >= numel())
    throw Error::OutOfRange(concat("set(", index, ") of a tensor of shape ", shape_, " (", numel(), " elements)"));
  void* p = storage_.get();
  switch (dtype_) {
    case DType::f32:
      static_cast<float*>(p)[index] = static_cast<float>(value);
      break;
    case DType::f16:
      static_cast<uint16_t*>(p)[index] = float_to_f16(static_cast<float>(value));
      break;
    case DType::bf16:
      static_cast<uint16_t*>(p)[index] = float_to_bf16(static_cast<float>(value));
      break;
    case DType::i32:
      static_cast<int32_t*>(p)[index] = static_cast<int32_t>(value);
      break;
    case DType::i64:
      static_cast<int64_t*>(p)[index] = static_cast<int64_t>(value);
      break;
    case DType::boolean:
      static_cast<bool*>(p)[index] = value != 0;
      break;
  }
}

std::vector<float> HostTensor::to_floats() const {
  std::vector<float> values(numel());
  for (int64_t i = 0; i < numel(); ++i) values[i] = static_cast<float>(get(i));
  return values;
}

HostTensor HostTensor::clone() const {
  HostTensor copy(shape_, dtype_);
  if (nbytes() > 0) std::memcpy(copy.raw(), raw(), nbytes());
  return copy;
}

HostTensor HostTensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  HostTensor converted(shape_, dtype);
  for (int64_t i = 0; i < numel(); ++i) converted.set(i, get(i));
  return converted;
}

HostTensor HostTensor::reshaped(Shape shape) const {
  if (shape.numel() != numel()) {
    throw Error::ShapeMismatch(concat("cannot view a tensor of shape ", shape_, " as ", shape));
  }
  HostTensor view = *this;
  view.shape_ = std::move(shape);
  return view;
}

void copy_block(const std::byte* source, const Shape& source_shape, const std::vector<int64_t>& source_start,
                std::byte* target, const Shape& target_shape, const std::vector<int64_t>& target_start,
                const std::vector<int64_t>& extent, size_t element_size) {
  const int rank = source_shape.rank();
  if (rank == 0) {
    std::memcpy(target, source, element_size);
    return;
  }
  for (int64_t e : extent) {
    if (e == 0) return;
  }
  const std::vector<int64_t> source_strides = source_shape.strides();
  const std::vector<int64_t> target_strides = target_shape.strides();
  const size_t row_bytes = static_cast<size_t>(extent[rank - 1]) * element_size;
  std::vector<int64_t> index(rank, 0);
  while (true) {
    int64_t s = 0, t = 0;
    for (int axis = 0; axis < rank; ++axis) {
      s += (source_start[axis] + index[axis]) * source_strides[axis];
      t += (target_start[axis] + index[axis]) * target_strides[axis];
    }
    std::memcpy(target + t * element_size, source + s * element_size, row_bytes);
    int axis = rank - 2;
    for (; axis >= 0; --axis) {
      if (++index[axis] < extent[axis]) break;
      index[axis] = 0;
    }
    if (axis < 0) return;
  }
}

HostTensor block_of(const HostTensor& whole, const std::vector<int64_t>& starts, const Shape& shape) {
  HostTensor block(shape, whole.dtype());
  copy_block(static_cast<const std::byte*>(whole.raw()), whole.shape(), starts, static_cast<std::byte*>(block.raw()),
             shape, std::vector<int64_t>(shape.rank(), 0), shape.dims(), size_of(whole.dtype()));
  return block;
}

}  // namespace tessel
