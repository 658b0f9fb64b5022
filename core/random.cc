#include "core/random.h"

#include <cmath>

namespace tessel {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_name(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

float uniform_at(uint64_t seed, uint64_t index) {
  const uint64_t bits = mix64(mix64(seed) ^ (index * 0xd1b54a32d192ed03ull));
  return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
}

float normal_at(uint64_t seed, uint64_t index) {
  const uint64_t a = mix64(mix64(seed) ^ (2 * index * 0xd1b54a32d192ed03ull));
  const uint64_t b = mix64(mix64(seed + 1) ^ ((2 * index + 1) * 0xd1b54a32d192ed03ull));
  const double u1 = (static_cast<double>(a >> 11) + 1.0) * (1.0 / 9007199254740993.0);  // (0, 1]
  const double u2 = static_cast<double>(b >> 11) * (1.0 / 9007199254740992.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

}  // namespace tessel
