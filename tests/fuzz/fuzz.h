// What the fuzz targets share. Each target (tests/fuzz/*_fuzz.cc) defines LLVMFuzzerTestOneInput:
// bad input may be refused with the Error (or, for flags, std::invalid_argument) that its API
// documents; anything else (a crash, another exception, a broken round trip) is a defect, and
// `expect` aborts on it so that libFuzzer, or the replay of the corpus, reports it.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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

// A folder of this process's own for the files a target writes, removed at exit (its path is
// never destroyed, so that the exit handler may still read it).
inline const std::string& scratch_folder() {
  static const std::string* path = [] {
    auto* made = new std::string(std::filesystem::temp_directory_path() / ("tessel-fuzz-" + std::to_string(getpid())));
    std::filesystem::create_directories(*made);
    std::atexit([] { std::filesystem::remove_all(scratch_folder()); });
    return made;
  }();
  return *path;
}

}  // namespace tessel::fuzz
