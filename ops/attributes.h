// Attributes: the named constant arguments of an op (axis, transpose flags, learning rate).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "core/shape.h"

namespace tessel {

using AttributeValue = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>>;

class Attributes {
 public:
  Attributes() = default;
  Attributes(std::initializer_list<std::pair<const std::string, AttributeValue>> values) : values_(values) {}

  void set(const std::string& name, AttributeValue value) { values_[name] = std::move(value); }
  bool has(const std::string& name) const { return values_.count(name) > 0; }

  // Typed reads. A missing attribute, or one of another type, is an Error naming it.
  bool get_bool(const std::string& name) const;
  int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;  // ints are accepted too
  const std::string& get_string(const std::string& name) const;
  const std::vector<int64_t>& get_ints(const std::string& name) const;
  Shape get_shape(const std::string& name) const { return Shape(get_ints(name)); }

  bool get_bool(const std::string& name, bool fallback) const { return has(name) ? get_bool(name) : fallback; }
  int64_t get_int(const std::string& name, int64_t fallback) const { return has(name) ? get_int(name) : fallback; }
  double get_float(const std::string& name, double fallback) const { return has(name) ? get_float(name) : fallback; }

  const std::map<std::string, AttributeValue>& values() const { return values_; }
  std::string to_string() const;

 private:
  const AttributeValue& find(const std::string& name, const char* expected_type) const;
  std::map<std::string, AttributeValue> values_;
};

}  // namespace tessel
