// Element types. f16 and bf16 are stored as their 16-bit patterns; host code converts them
// through float with the functions below.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string_view>

namespace tessel {

// `boolean` ("bool") is what comparisons give: one byte, 0 or 1.
enum class DType : uint8_t { f32, f16, bf16, i32, i64, boolean };
inline constexpr std::array<DType, 6> kAllDTypes = {DType::f32,  DType::f16, DType::bf16,
                                                     DType::i32, DType::i64, DType::boolean};

inline constexpr DType f32 = DType::f32;
inline constexpr DType f16 = DType::f16;
inline constexpr DType bf16 = DType::bf16;
inline constexpr DType i32 = DType::i32;
inline constexpr DType i64 = DType::i64;
inline constexpr DType boolean = DType::boolean;

size_t size_of(DType dtype);
std::string_view name_of(DType dtype);  // "f32", "i64", ...
std::optional<DType> parse_dtype(std::string_view name);
// parse_dtype, or Error::InvalidArgument naming the valid dtypes.
DType dtype_named(std::string_view name);
bool is_floating(DType dtype);
bool is_integer(DType dtype);
std::ostream& operator<<(std::ostream& out, DType dtype);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}
template <>
constexpr DType dtype_of<bool>() {
  return DType::boolean;
}

// IEEE half and bfloat16 conversions, rounding to nearest even.
uint16_t float_to_f16(float value);
float f16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);
float bf16_to_float(uint16_t bits);

}  // namespace tessel
