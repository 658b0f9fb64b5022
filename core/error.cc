#include "core/error.h"

namespace tessel {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kShapeMismatch:
      return "shape mismatch";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kUnimplemented:
      return "unimplemented";
    case ErrorCode::kFailedPrecondition:
      return "failed precondition";
    case ErrorCode::kOutOfRange:
      return "out of range";
    case ErrorCode::kAborted:
      return "aborted";
    case ErrorCode::kDataLoss:
      return "data loss";
  }
  return "unknown error";
}

Error::Error(ErrorCode code, std::string message) : std::runtime_error(std::move(message)), code_(code) {}

Error Error::with_context(std::string_view context) const { return Error(code_, concat(context, ": ", what())); }

}  // namespace tessel
