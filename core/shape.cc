#include "core/shape.h"

#include <algorithm>

#include "core/error.h"

namespace tessel {

int64_t Shape::numel() const {
  int64_t count = 1;
  for (int64_t d : dims_) {
    if (__builtin_mul_overflow(count, d, &count)) {
      throw Error::OutOfRange(concat("shape ", to_string(), " holds more elements than a 64-bit count can"));
    }
  }
  return count;
}

std::optional<int> Shape::normalize_axis(int64_t axis) const {
  const int64_t r = rank();
  if (axis < -r || axis >= r) return std::nullopt;
  return static_cast<int>(axis < 0 ? axis + r : axis);
}

std::vector<int64_t> Shape::strides() const {
  std::vector<int64_t> result(dims_.size(), 1);
  for (int i = rank() - 2; i >= 0; --i) result[i] = result[i + 1] * dims_[i + 1];
  return result;
}

std::string Shape::to_string() const {
  std::string text = "[";
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(dims_[i]);
  }
  return text + "]";
}

std::ostream& operator<<(std::ostream& out, const Shape& shape) { return out << shape.to_string(); }

std::optional<Shape> broadcast_shapes(const Shape& a, const Shape& b) {
  const int rank = std::max(a.rank(), b.rank());
  std::vector<int64_t> dims(rank);
  for (int i = 0; i < rank; ++i) {
    const int ia = a.rank() - rank + i;
    const int ib = b.rank() - rank + i;
    const int64_t da = ia >= 0 ? a[ia] : 1;
    const int64_t db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) return std::nullopt;
    dims[i] = da == 1 ? db : da;
  }
  return Shape(std::move(dims));
}

}  // namespace tessel
