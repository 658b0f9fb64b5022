// Helpers shared by Tessel's tests.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/random.h"
#include "core/tensor.h"

namespace tessel::testing {

// A tensor of uniform values in [low, high), the same for the same seed.
inline HostTensor random_tensor(const Shape& shape, uint64_t seed, float low = -1, float high = 1) {
  HostTensor t(shape, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = low + (high - low) * uniform_at(seed, i);
  return t;
}

// Runs `statement`, expecting an Error with `code` whose message contains every fragment.
#define EXPECT_TESSEL_ERROR(statement, expected_code, ...)                                  \
  do {                                                                                      \
    try {                                                                                   \
      statement;                                                                            \
      ADD_FAILURE() << "expected an Error from: " #statement;                               \
    } catch (const ::tessel::Error& error) {                                                \
      EXPECT_EQ(error.code(), expected_code) << error.what();                               \
      for (const std::string& fragment : std::initializer_list<std::string>{__VA_ARGS__}) { \
        EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos)              \
            << "message \"" << error.what() << "\" lacks \"" << fragment << "\"";           \
      }                                                                                     \
    }                                                                                       \
  } while (0)

}  // namespace tessel::testing
