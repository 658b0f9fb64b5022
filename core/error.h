// The error type of Tessel. A user-facing mistake (bad shape, unknown op, bad attribute,
// missing feed, corrupt file) is thrown as an Error whose message names the thing at fault
// and what was expected. An internal invariant that only a Tessel bug can break is a CHECK.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tessel {

enum class ErrorCode {
  kInvalidArgument,     // a value the caller passed is malformed
  kShapeMismatch,       // shapes or dtypes of an op's inputs do not fit together
  kNotFound,            // a name (op, tensor, input, file) does not exist
  kUnimplemented,       // a valid request Tessel cannot serve (no kernel for a dtype)
  kFailedPrecondition,  // the request is valid but the state does not allow it
  kOutOfRange,          // an index or label lies outside its range
  kDataLoss,            // a file or message is corrupt or truncated
  kAborted,             // stopped from outside: the job's membership changed (recovery)
};

std::string_view to_string(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message);

  static Error InvalidArgument(std::string message) { return {ErrorCode::kInvalidArgument, std::move(message)}; }
  static Error ShapeMismatch(std::string message) { return {ErrorCode::kShapeMismatch, std::move(message)}; }
  static Error NotFound(std::string message) { return {ErrorCode::kNotFound, std::move(message)}; }
  static Error Unimplemented(std::string message) { return {ErrorCode::kUnimplemented, std::move(message)}; }
  static Error FailedPrecondition(std::string message) { return {ErrorCode::kFailedPrecondition, std::move(message)}; }
  static Error OutOfRange(std::string message) { return {ErrorCode::kOutOfRange, std::move(message)}; }
  static Error DataLoss(std::string message) { return {ErrorCode::kDataLoss, std::move(message)}; }
  static Error Aborted(std::string message) { return {ErrorCode::kAborted, std::move(message)}; }

  ErrorCode code() const { return code_; }

  // The same error with `context` put in front of the message ("matmul at x.cc:3: ...").
  Error with_context(std::string_view context) const;

 private:
  ErrorCode code_;
};

// Streams every argument into one string: concat("shape ", shape, " has ", n, " axes").
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace tessel
