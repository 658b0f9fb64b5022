#include "ops/registry.h"

#include <glog/logging.h>

#include <algorithm>

namespace tessel {

namespace {
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}
}  // namespace

OpRegistry& OpRegistry::global() {
  static OpRegistry registry;
  return registry;
}

OpDef& OpRegistry::define(std::string name) {
  CHECK(ops_.count(name) == 0) << "op '" << name << "' declared twice";
  auto def = std::make_unique<OpDef>();
  def->name = name;
  OpDef& ref = *def;
  ops_.emplace(std::move(name), std::move(def));
  return ref;
}

void OpRegistry::register_kernel(std::string_view op, DeviceType device, DType dtype, KernelFn kernel) {
  KernelKey key{std::string(op), device, dtype};
  CHECK(kernels_.count(key) == 0) << "kernel for " << op << " on " << name_of(device) << " " << dtype
                                  << " registered twice";
  kernels_.emplace(std::move(key), kernel);
}

const OpDef* OpRegistry::find(std::string_view name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : it->second.get();
}

const OpDef& OpRegistry::op(std::string_view name) const {
  if (const OpDef* def = find(name)) return *def;
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& [candidate, def] : ops_) {
    const size_t distance = edit_distance(name, candidate);
    if (distance < best_distance) best_distance = distance, best = candidate;
  }
  std::string message = concat("unknown op '", name, "'");
  if (!best.empty() && best_distance <= std::max<size_t>(2, name.size() / 3)) {
    message += concat("; did you mean '", best, "'?");
  } else {
    message += concat(" (", ops_.size(), " ops are registered)");
  }
  throw Error::NotFound(message);
}

bool OpRegistry::has_kernel(std::string_view op, DeviceType device, DType dtype) const {
  return kernels_.count(KernelKey{std::string(op), device, dtype}) > 0;
}

KernelFn OpRegistry::kernel(std::string_view op, DeviceType device, DType dtype) const {
  auto it = kernels_.find(KernelKey{std::string(op), device, dtype});
  if (it != kernels_.end()) return it->second;
  std::string available;
  for (const auto& [key, fn] : kernels_) {
    if (key.op == op && key.device == device) available += concat(available.empty() ? "" : ", ", key.dtype);
  }
  throw Error::Unimplemented(concat("op '", op, "' has no ", name_of(device), " kernel for dtype ", dtype,
                                    available.empty() ? std::string(" (it has no kernels on this device)")
                                                      : concat(" (kernels exist for: ", available, ")")));
}

std::vector<std::string> OpRegistry::op_names() const {
  std::vector<std::string> names;
  for (const auto& [name, def] : ops_) names.push_back(name);
  return names;
}

DType dispatch_dtype(const OpDef* op, std::span<const TensorType> inputs, std::span<const TensorType> outputs) {
  const int input = op ? op->dispatch_input : 0;
  if (inputs.empty() || input < 0) return outputs[0].dtype;
  return inputs[std::min<size_t>(input, inputs.size() - 1)].dtype;
}

}  // namespace tessel
