// Placement and SBP text (sbp/sbp.h): Sbp, NdSbp and Placement parse, whichever the first byte
// picks. What parses prints as text that parses back to the same value.
#include <optional>

#include "core/error.h"
#include "sbp/sbp.h"
#include "tests/fuzz/fuzz.h"

namespace {

template <typename T>
void round_trip(std::string_view text) {
  std::optional<T> value;
  try {
    value = T::parse(text);
  } catch (const tessel::Error&) {
    return;
  }
  const std::string printed = value->to_string();
  try {
    tessel::fuzz::expect(T::parse(printed) == *value, "text printed from a parsed value parses to another", printed);
  } catch (const tessel::Error& error) {
    tessel::fuzz::expect(false, "text printed from a parsed value is refused", printed + ": " + error.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessel;
  if (size == 0) return 0;
  const std::string_view rest = fuzz::text_of(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: round_trip<Sbp>(rest); break;
    case 1: round_trip<NdSbp>(rest); break;
    default: round_trip<Placement>(rest); break;
  }
  return 0;
}
