#include "devices/arena.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

namespace tessel {

void HostArena::Free::operator()(std::byte* p) const { std::free(p); }

HostArena::HostArena(int64_t bytes, std::byte fill) : bytes_(bytes) {
  if (bytes < 0) throw Error::InvalidArgument(concat("an arena of ", bytes, " bytes"));
  const size_t rounded = (static_cast<size_t>(bytes) + 63) / 64 * 64;
  data_.reset(static_cast<std::byte*>(std::aligned_alloc(64, std::max<size_t>(rounded, 64))));
  if (!data_) throw Error::OutOfRange(concat("out of host memory: an arena of ", bytes, " bytes cannot be allocated"));
  std::memset(data_.get(), static_cast<int>(fill), rounded);
}

}  // namespace tessel
