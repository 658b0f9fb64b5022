// A device arena: one allocation that a plan's memory layout carves registers out of, so a
// step allocates nothing and the memory a job needs is known before its first step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace tessel {

class HostArena {
 public:
  // `bytes` of 64-byte aligned host memory, every byte set to `fill`. Error::OutOfRange when
  // the memory is not there (callers add what the arena is for).
  explicit HostArena(int64_t bytes, std::byte fill = std::byte{0});

  std::byte* data() const { return data_.get(); }
  int64_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  int64_t bytes_;
  std::unique_ptr<std::byte[], Free> data_;
};

// A byte pattern that reads as NaN in f32, f16 and bf16: registers start with it, so a kernel
// that reads memory no one wrote shows up in results instead of passing by luck.
inline constexpr std::byte kPoison{0xff};

}  // namespace tessel
