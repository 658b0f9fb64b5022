#include "ops/kernels/cpu/widened.h"

#include "devices/cpu_device.h"

namespace tessel::cpu {
namespace {

constexpr size_t kLargeScratch = size_t{64} << 20;  // bytes
thread_local std::vector<std::vector<float>> scratch;

}  // namespace

float* widened_scratch(size_t slot, size_t count) {
  if (slot >= scratch.size()) scratch.resize(slot + 1);
  if (scratch[slot].size() < count) scratch[slot].resize(count);
  return scratch[slot].data();
}

void release_large_scratch() {
  for (std::vector<float>& buffer : scratch) {
    if (buffer.size() * sizeof(float) > kLargeScratch) std::vector<float>().swap(buffer);
  }
}

void widen_to_f32(const TensorView& half, float* wide) {
  const auto* bits = static_cast<const uint16_t*>(half.data);
  parallel_for(half.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    if (half.dtype == DType::bf16) return bf16_to_f32_loop(bits + begin, wide + begin, end - begin);
    for (int64_t i = begin; i < end; ++i) wide[i] = f16_to_float(bits[i]);
  });
}

void narrow_from_f32(const float* wide, const TensorView& half) {
  auto* bits = static_cast<uint16_t*>(half.data);
  parallel_for(half.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    if (half.dtype == DType::bf16) return f32_to_bf16_loop(wide + begin, bits + begin, end - begin);
    for (int64_t i = begin; i < end; ++i) bits[i] = float_to_f16(wide[i]);
  });
}

}  // namespace tessel::cpu
