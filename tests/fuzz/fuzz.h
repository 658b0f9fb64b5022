// What the fuzz targets share. Each target (tests/fuzz/*_fuzz.cc) defines LLVMFuzzerTestOneInput:
// bad input may be refused with the Error (or, for flags, std::invalid_argument) that its API
// documents; anything else (a crash, another exception, a broken round trip) is a defect, and
// `expect` aborts on it so that libFuzzer, or the replay of the corpus, reports it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace tessel::fuzz {

inline void expect(bool holds, const char* what, std::string_view detail = {}) {
  if (holds) return;
  const std::string text(detail);
  std::fprintf(stderr, "fuzz target: %s: %s\n", what, text.c_str());
  std::abort();
}

inline std::string_view text_of(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace tessel::fuzz
