// Private to the CPU kernels: bf16 and f16 kernels made from an f32 one. The half inputs are
// widened to f32, the f32 kernel runs on them, and each half output is rounded back to nearest
// even, so the op computes in f32 and only its stored results are half precision (as PyTorch's
// CPU kernels do for bf16). Integer and bool inputs pass as they are.
//
//   TESSEL_WIDENED_KERNELS("gelu", vector_unary<gelu_loop>);  // registers bf16 and f16
#pragma once

#include <vector>

#include "core/dtype.h"
#include "ops/kernels/cpu/vector_loops.h"
#include "ops/registry.h"

namespace tessel::cpu {

void widen_to_f32(const TensorView& half, float* wide);
void narrow_from_f32(const float* wide, const TensorView& half);
// This thread's f32 scratch `slot`, at least `count` floats. One set per thread serves every
// widened kernel (kernels never nest); a slot larger than 64 MiB is given back after its use.
float* widened_scratch(size_t slot, size_t count);
void release_large_scratch();

template <KernelFn F32>
void widened(const KernelContext& c) {
  std::vector<TensorView> inputs(c.inputs.begin(), c.inputs.end()), outputs(c.outputs.begin(), c.outputs.end());
  // The f32 copies live in scratch this thread keeps from call to call: a fresh allocation of a
  // few MB is fresh pages from the kernel each time, which costs more than the conversion.
  size_t used = 0;
  const auto widen = [&](TensorView& view, bool read) {
    if (view.dtype != DType::bf16 && view.dtype != DType::f16) return;
    float* wide = widened_scratch(used++, static_cast<size_t>(view.numel()));
    if (read) widen_to_f32(view, wide);
    view.data = wide;
    view.dtype = DType::f32;
  };
  for (TensorView& view : inputs) widen(view, true);
  for (TensorView& view : outputs) widen(view, false);
  F32(KernelContext{inputs, outputs, c.attrs, c.step, c.training});
  for (size_t o = 0; o < outputs.size(); ++o) {
    if (c.outputs[o].dtype == DType::bf16 || c.outputs[o].dtype == DType::f16) {
      narrow_from_f32(static_cast<const float*>(outputs[o].data), c.outputs[o]);
    }
  }
  release_large_scratch();
}

// Registers widened<F32> as the op's bf16 and f16 CPU kernels. F32 must write every element of
// its outputs and mutate no input: the outputs it sees are scratch, and its inputs are copies.
template <KernelFn F32>
void register_widened(const char* name) {
  OpRegistry::global().register_kernel(name, DeviceType::cpu, DType::bf16, widened<F32>);
  OpRegistry::global().register_kernel(name, DeviceType::cpu, DType::f16, widened<F32>);
}

}  // namespace tessel::cpu

#define TESSEL_WIDENED_KERNELS(name, fn)                                            \
  [[maybe_unused]] static const bool TESSEL_CONCAT(tessel_widened_, __LINE__) = [] { \
    ::tessel::cpu::register_widened<fn>(name);                                      \
    return true;                                                                    \
  }()
