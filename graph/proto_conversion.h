// Conversions between Tessel's types and their protobuf messages, shared by graph files
// (graph/serialize.cc) and plans (graph/compile.cc, actors/executor.cc). It includes the
// generated headers, so only .cc files include it.
#pragma once

#include <google/protobuf/map.h>

#include "ops/attributes.h"
#include "ops/registry.h"
#include "proto/graph.pb.h"
#include "proto/plan.pb.h"

namespace tessel {

using ProtoAttributes = google::protobuf::Map<std::string, proto::AttributeValue>;

void attributes_to_proto(const Attributes& attrs, ProtoAttributes& out);
// Error::InvalidArgument for an attribute with no value.
Attributes attributes_from_proto(const ProtoAttributes& attrs);

void tensor_type_to_proto(const TensorType& type, proto::TensorTypeDef& out);
// Error::InvalidArgument for an unknown dtype or a negative extent.
TensorType tensor_type_from_proto(const proto::TensorTypeDef& type);

// Whether every string field of `message` holds UTF-8, as the binary format requires. The text
// format's parser takes any bytes (it only logs), and such a message, once written in binary,
// does not read back.
bool strings_are_utf8(const google::protobuf::Message& message);

}  // namespace tessel
