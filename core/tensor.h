// Host tensors (owning, CPU memory) and tensor views (non-owning, any device).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"

namespace tessel {

enum class DeviceType : uint8_t { cpu, cuda };
std::string_view name_of(DeviceType device);

// A typed window on memory owned elsewhere (a host tensor, an arena, device memory).
// Kernels read and write tensors only through views.
struct TensorView {
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::f32;
  DeviceType device = DeviceType::cpu;

  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * size_of(dtype); }
  template <typename T>
  T* as() const {
    check_element_type(dtype_of<T>());
    return static_cast<T*>(data);
  }

 private:
  void check_element_type(DType requested) const;
};

// A dense, row-major tensor in host memory, 64-byte aligned. Copies share the storage;
// clone() makes an independent copy.
class HostTensor {
 public:
  HostTensor() = default;
  // Zero-filled.
  HostTensor(Shape shape, DType dtype);

  template <typename T>
  static HostTensor of(Shape shape, const std::vector<T>& values) {
    HostTensor tensor(std::move(shape), dtype_of<T>());
    if (static_cast<int64_t>(values.size()) != tensor.numel()) {
      throw Error::InvalidArgument(concat("HostTensor::of: shape ", tensor.shape(), " holds ", tensor.numel(),
                                          " elements but ", values.size(), " values were given"));
    }
    std::copy(values.begin(), values.end(), tensor.data<T>());
    return tensor;
  }
  // A rank-0 tensor.
  template <typename T>
  static HostTensor scalar(T value) {
    return of<T>(Shape{}, {value});
  }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * size_of(dtype_); }

  void* raw() { return storage_.get(); }
  const void* raw() const { return storage_.get(); }
  template <typename T>
  T* data() {
    return view().as<T>();
  }
  template <typename T>
  const T* data() const {
    return view().as<T>();
  }

  TensorView view() const { return {storage_.get(), shape_, dtype_, DeviceType::cpu}; }

  // Element `index` of the flattened tensor as a double, whatever the dtype.
  double get(int64_t index) const;
  void set(int64_t index, double value);
  std::vector<float> to_floats() const;

  HostTensor clone() const;
  // The same values in another dtype (rounded to nearest for floats, truncated for ints).
  HostTensor to(DType dtype) const;
  // The same storage seen with another shape of equal element count.
  HostTensor reshaped(Shape shape) const;

 private:
  Shape shape_;
  DType dtype_ = DType::f32;
  std::shared_ptr<std::byte> storage_;
};

// Copies the block of `extent` starting at `source_start` in a row-major tensor of shape
// `source_shape` to `target_start` in one of shape `target_shape` (elements of `element_size`
// bytes). Kernels, feeding and the gathering of shards all move rectangular blocks this way.
void copy_block(const std::byte* source, const Shape& source_shape, const std::vector<int64_t>& source_start,
                std::byte* target, const Shape& target_shape, const std::vector<int64_t>& target_start,
                const std::vector<int64_t>& extent, size_t element_size);

// A new tensor holding the block of `shape` that starts at `starts` in `whole`.
HostTensor block_of(const HostTensor& whole, const std::vector<int64_t>& starts, const Shape& shape);

// A step's input values, by input name.
using Feeds = std::map<std::string, HostTensor>;

}  // namespace tessel
