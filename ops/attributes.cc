#include "ops/attributes.h"

#include "core/error.h"

namespace tessel {

const AttributeValue& Attributes::find(const std::string& name, const char* expected_type) const {
  auto it = values_.find(name);
  if (it == values_.end()) {
    throw Error::InvalidArgument(concat("missing attribute '", name, "' (", expected_type, ")"));
  }
  return it->second;
}

namespace {
template <typename T>
const T& typed(const AttributeValue& value, const std::string& name, const char* expected_type) {
  if (const T* typed_value = std::get_if<T>(&value)) return *typed_value;
  throw Error::InvalidArgument(concat("attribute '", name, "' must be of type ", expected_type));
}
}  // namespace

bool Attributes::get_bool(const std::string& name) const { return typed<bool>(find(name, "bool"), name, "bool"); }
int64_t Attributes::get_int(const std::string& name) const { return typed<int64_t>(find(name, "int"), name, "int"); }
double Attributes::get_float(const std::string& name) const {
  const AttributeValue& value = find(name, "float");
  if (const int64_t* as_int = std::get_if<int64_t>(&value)) return static_cast<double>(*as_int);
  return typed<double>(value, name, "float");
}
const std::string& Attributes::get_string(const std::string& name) const {
  return typed<std::string>(find(name, "string"), name, "string");
}
const std::vector<int64_t>& Attributes::get_ints(const std::string& name) const {
  return typed<std::vector<int64_t>>(find(name, "int list"), name, "int list");
}

std::string Attributes::to_string() const {
  std::string text;
  for (const auto& [name, value] : values_) {
    if (!text.empty()) text += ", ";
    text += name + "=";
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
            text += Shape(v).to_string();
          } else if constexpr (std::is_same_v<T, std::string>) {
            text += v;
          } else {
            text += concat(v);
          }
        },
        value);
  }
  return text;
}

}  // namespace tessel
