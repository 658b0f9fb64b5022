// Checkpoint manifests (runtime/checkpoint.h): what tessel-checkpoint describe and verify read
// from disk. The first byte picks the form: the file as given, or the rest as a manifest message
// behind a correct header (magic, format, length, xxh64) so that mutations reach protobuf and
// the manifest's validation. The manifest is written into a checkpoint folder of this process's
// own, with no shard files beside it: describe() and verify() must refuse or answer, never crash.
#include <xxhash.h>

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessel;
  if (size == 0) return 0;
  const std::string_view rest = fuzz::text_of(data + 1, size - 1);
  const std::string bytes = data[0] % 2 == 0 ? std::string(rest) : behind_a_header(rest);
  {
    std::ofstream out(fuzz::scratch_folder() + "/MANIFEST", std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  try {
    checkpoint::describe(fuzz::scratch_folder());
  } catch (const Error&) {
  }
  try {
    checkpoint::verify(fuzz::scratch_folder());
  } catch (const Error&) {
  }
  return 0;
}
