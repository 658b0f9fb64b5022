// The layout of the 64-bit UCX tags of the data plane, shared by the SEND/RECV actors and the
// communicators so that their messages never match each other's receives:
//
//   kind (3 bits) | tag space (6) | channel or communicator group (15) | 40 bits the kind uses
//
// The tag space keeps plans that share a transport at the same time apart (0 to 63).
#pragma once

#include <cstdint>

namespace tessel::comm {

enum class TagKind : uint64_t {
  data = 0,        // a SEND's register bytes
  credit = 1,      // a RECV freed a register
  end = 2,         // a SEND's last step
  closed = 3,      // a RECV's last word
  collective = 4,  // a piece of a communicator's operation
};

constexpr int kTagSpaces = 64;
constexpr int kTagChannels = 1 << 15;  // channels, and communicator groups, per tag space

constexpr uint64_t tag_prefix(TagKind kind, int space, int channel) {
  return static_cast<uint64_t>(kind) << 61 | static_cast<uint64_t>(space & 0x3f) << 55 |
         static_cast<uint64_t>(channel & 0x7fff) << 40;
}
constexpr uint64_t kTagPrefixMask = ~uint64_t{0} << 40;

}  // namespace tessel::comm
