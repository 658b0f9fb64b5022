// The op registry. Each op is declared once, by name, with its shape and dtype inference, its
// gradient rule and its SBP signatures; kernels register per device type and dtype against the
// same name. Lookups of unknown names are Errors that suggest the
// nearest registered name.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "ops/attributes.h"
#include "sbp/sbp.h"

namespace tessel {

struct TensorType {
  Shape shape;
  DType dtype = DType::f32;
  friend bool operator==(const TensorType&, const TensorType&) = default;
};

// Shape and dtype inference: returns the type of each output, or throws Error (usually
// ShapeMismatch) describing what the inputs should have been. The caller adds the op's name
// and the user's source location in front of the message.
struct InferContext {
  std::span<const TensorType> inputs;
  const Attributes& attrs;
};
using InferFn = std::function<std::vector<TensorType>(const InferContext&)>;

// Gradient rules append backward ops to the graph (see graph/autograd.h).
class GradientContext;
using GradientFn = std::function<void(GradientContext&)>;

// What a kernel sees. Inputs listed in OpDef::mutated_inputs may be written in place.
struct KernelContext {
  std::span<const TensorView> inputs;
  std::span<const TensorView> outputs;
  const Attributes& attrs;
  int64_t step = 0;      // how many training steps ran before this one
  bool training = true;  // false in evaluation: dropout is the identity
};
using KernelFn = void (*)(const KernelContext&);

// One way to run an op over the devices of one mesh axis: the SBP of every input and output
// (DESIGN.md, "SBP, in one table"). matmul declares S(0)xB->S(0), BxS(1)->S(1), S(1)xS(0)->P,
// ... On an n-D mesh a signature is one of these per mesh axis. Signatures are stated on
// logical shapes; inference drops those whose splits would leave a device with nothing.
struct SbpSignature {
  std::vector<Sbp> inputs, outputs;
  friend bool operator==(const SbpSignature&, const SbpSignature&) = default;
};
struct SbpContext {
  std::span<const TensorType> inputs;
  std::span<const TensorType> outputs;
  const Attributes& attrs;
};
using SbpFn = std::function<std::vector<SbpSignature>(const SbpContext&)>;

// The attributes of one device's instance of an op whose tensors are shards: an op with a
// shape in its attributes (reshape), a logical count (mean) or a logical index (dropout)
// rewrites it for the shard. `output_regions` are the boxes of the logical outputs it computes.
struct LocalizeContext {
  std::span<const TensorType> logical_inputs, logical_outputs;
  std::span<const TensorType> local_inputs, local_outputs;
  std::span<const Region> output_regions;
};
using LocalizeFn = std::function<void(const LocalizeContext&, Attributes& attrs)>;

// A layout inference took from the signatures, on the devices of `placement`: for ops whose
// signatures hold only for some device counts. reshape keeps a split only where every shard
// stays one block in both shapes.
struct FitContext {
  std::span<const TensorType> inputs, outputs;
  const Attributes& attrs;
  const Placement& placement;
  std::span<const NdSbp> input_sbps, output_sbps;
};
using FitFn = std::function<bool(const FitContext&)>;

struct OpDef {
  std::string name;
  int min_inputs = 0;
  int max_inputs = 0;  // -1: any number (concat)
  InferFn infer;
  GradientFn gradient;              // empty: the op is not differentiable
  std::vector<int> mutated_inputs;  // optimizer updates write their state inputs in place
  SbpFn signatures;                 // empty: every input and output broadcast (B) only
  LocalizeFn localize;              // empty: a shard's instance keeps the logical attributes
  FitFn fits;                       // empty: every signature holds on any devices it fits
  int dispatch_input = 0;           // whose dtype picks the kernel: an input, or -1 for output 0

  // Builder calls, for declarations that read like the op's specification.
  OpDef& inputs(int count) {
    min_inputs = max_inputs = count;
    return *this;
  }
  OpDef& inputs(int min_count, int max_count) {
    min_inputs = min_count;
    max_inputs = max_count;
    return *this;
  }
  OpDef& infers(InferFn fn) {
    infer = std::move(fn);
    return *this;
  }
  OpDef& differentiates(GradientFn fn) {
    gradient = std::move(fn);
    return *this;
  }
  OpDef& sbp(SbpFn fn) {
    signatures = std::move(fn);
    return *this;
  }
  OpDef& localizes(LocalizeFn fn) {
    localize = std::move(fn);
    return *this;
  }
  OpDef& fits_when(FitFn fn) {
    fits = std::move(fn);
    return *this;
  }
  OpDef& dispatches_on(int input) {
    dispatch_input = input;
    return *this;
  }
  OpDef& mutates(std::vector<int> indices) {
    mutated_inputs = std::move(indices);
    return *this;
  }
  bool is_update() const { return !mutated_inputs.empty(); }
};

// The dtype a node's kernel is registered under: that of its op's dispatch input (input 0
// unless the op says otherwise; input 0 for ops not declared, such as boxing), or of its first
// output when it has no inputs.
DType dispatch_dtype(const OpDef* op, std::span<const TensorType> inputs, std::span<const TensorType> outputs);

class OpRegistry {
 public:
  static OpRegistry& global();

  // Declares an op; declaring a name twice is a Tessel bug (CHECK).
  OpDef& define(std::string name);
  void register_kernel(std::string_view op, DeviceType device, DType dtype, KernelFn kernel);

  // The op of that name; Error::NotFound naming the closest registered op otherwise.
  const OpDef& op(std::string_view name) const;
  const OpDef* find(std::string_view name) const;

  // The kernel for (op, device, dtype); Error::Unimplemented listing the dtypes that exist.
  KernelFn kernel(std::string_view op, DeviceType device, DType dtype) const;
  bool has_kernel(std::string_view op, DeviceType device, DType dtype) const;

  std::vector<std::string> op_names() const;

 private:
  struct KernelKey {
    std::string op;
    DeviceType device;
    DType dtype;
    auto operator<=>(const KernelKey&) const = default;
  };
  std::map<std::string, std::unique_ptr<OpDef>, std::less<>> ops_;
  std::map<KernelKey, KernelFn> kernels_;
};

// Registration at load time, one line per op or kernel:
//   TESSEL_OP("relu").inputs(1).infers(...).differentiates(...);
//   TESSEL_KERNEL("relu", cpu, f32, relu_kernel);
#define TESSEL_CONCAT_INNER(a, b) a##b
#define TESSEL_CONCAT(a, b) TESSEL_CONCAT_INNER(a, b)
#define TESSEL_OP(name)                                                          \
  [[maybe_unused]] static ::tessel::OpDef& TESSEL_CONCAT(tessel_op_, __LINE__) = \
      ::tessel::OpRegistry::global().define(name)
#define TESSEL_KERNEL(name, device, dtype, fn)                                                                      \
  [[maybe_unused]] static const bool TESSEL_CONCAT(tessel_kernel_, __LINE__) = [] {                                 \
    ::tessel::OpRegistry::global().register_kernel(name, ::tessel::DeviceType::device, ::tessel::DType::dtype, fn); \
    return true;                                                                                                    \
  }()

}  // namespace tessel
