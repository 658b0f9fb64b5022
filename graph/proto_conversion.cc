#include "graph/proto_conversion.h"

#include <memory>

#include "core/error.h"

namespace tessel {

void attributes_to_proto(const Attributes& attrs, ProtoAttributes& out) {
  for (const auto& [name, value] : attrs.values()) {
    proto::AttributeValue& attr = out[name];
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>)
            attr.set_b(v);
          else if constexpr (std::is_same_v<T, int64_t>)
            attr.set_i(v);
          else if constexpr (std::is_same_v<T, double>)
            attr.set_f(v);
          else if constexpr (std::is_same_v<T, std::string>)
            attr.set_s(v);
          else {
            proto::IntList* list = attr.mutable_ints();  // set even when empty: a scalar's shape
            for (int64_t x : v) list->add_values(x);
          }
        },
        value);
  }
}

Attributes attributes_from_proto(const ProtoAttributes& attrs) {
  Attributes result;
  for (const auto& [name, attr] : attrs) {
    switch (attr.value_case()) {
      case proto::AttributeValue::kB:
        result.set(name, attr.b());
        break;
      case proto::AttributeValue::kI:
        result.set(name, attr.i());
        break;
      case proto::AttributeValue::kF:
        result.set(name, attr.f());
        break;
      case proto::AttributeValue::kS:
        result.set(name, attr.s());
        break;
      case proto::AttributeValue::kInts:
        result.set(name, std::vector<int64_t>(attr.ints().values().begin(), attr.ints().values().end()));
        break;
      default:
        throw Error::InvalidArgument(concat("attribute '", name, "' has no value"));
    }
  }
  return result;
}

void tensor_type_to_proto(const TensorType& type, proto::TensorTypeDef& out) {
  for (int64_t extent : type.shape) out.add_shape(extent);
  out.set_dtype(std::string(name_of(type.dtype)));
}

TensorType tensor_type_from_proto(const proto::TensorTypeDef& type) {
  std::vector<int64_t> dims(type.shape().begin(), type.shape().end());
  for (int64_t extent : dims) {
    if (extent < 0) throw Error::InvalidArgument(concat("a tensor type has the negative extent ", extent));
  }
  return {Shape(std::move(dims)), dtype_named(type.dtype())};
}

bool strings_are_utf8(const google::protobuf::Message& message) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) return false;
  const std::unique_ptr<google::protobuf::Message> back(message.New());
  return back->ParseFromString(bytes);
}

}  // namespace tessel
