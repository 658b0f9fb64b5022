// Checkpoint manifests (runtime/checkpoint.h): what tessel-checkpoint describe and verify read
// from disk. The first byte picks the form: the file as given, or the rest as a manifest message
// behind a correct header (magic, format, length, xxh64) so that mutations reach protobuf and
// the manifest's validation. The manifest is written into a checkpoint folder of this process's
// own, with no shard files beside it: describe() and verify() must refuse or answer, never crash.
#include <unistd.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "runtime/checkpoint.h"
#include "tests/fuzz/fuzz.h"

namespace {

std::string behind_a_header(std::string_view message) {
  std::string bytes = "TESSELCK";
  const auto put = [&](uint64_t value, int width) {
    for (int i = 0; i < width; ++i) bytes.push_back(static_cast<char>(value >> (8 * i)));
  };
  put(1, 4);  // the format
  put(0, 4);
  put(message.size(), 8);
  put(XXH64(message.data(), message.size(), 0), 8);
  return bytes.append(message);
}

// This process's checkpoint folder, removed at exit (the path is never destroyed, so that the
// exit handler may still read it).
const std::string& folder() {
  static const std::string* path = [] {
    auto* made = new std::string(std::filesystem::temp_directory_path() /
                                 ("tessel-fuzz-checkpoint-" + std::to_string(getpid())));
    std::filesystem::create_directories(*made);
    std::atexit([] { std::filesystem::remove_all(folder()); });
    return made;
  }();
  return *path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessel;
  if (size == 0) return 0;
  const std::string_view rest = fuzz::text_of(data + 1, size - 1);
  const std::string bytes = data[0] % 2 == 0 ? std::string(rest) : behind_a_header(rest);
  {
    std::ofstream out(folder() + "/MANIFEST", std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  try {
    checkpoint::describe(folder());
  } catch (const Error&) {
  }
  try {
    checkpoint::verify(folder());
  } catch (const Error&) {
  }
  return 0;
}
