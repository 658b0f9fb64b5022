// Plan files are untrusted input (issue 17, item 6): the decoder and validate_plan. The first
// byte picks the form: a binary plan as given (header, length, checksum), the rest as a plan
// message behind a correct header (so that mutations reach protobuf and validate_plan past the
// checksum), or a text plan. A plan accepted once must be written and read back the same, and
// what validate_plan passes the runtime must survive: a one-rank plan that fits the target's
// memory budget runs two steps through the Executor on zero feeds, which may end in an Error,
// never in a crash.
#include <xxhash.h>

#include <cstring>
#include <vector>

#include "actors/executor.h"
#include "core/error.h"
#include "core/tensor.h"
#include "graph/compile.h"
#include "graph/proto_conversion.h"
#include "proto/plan.pb.h"
#include "tests/fuzz/fuzz.h"

namespace {

std::string behind_a_header(std::string_view message) {
  std::string bytes = "TSLPLAN1";
  const uint64_t fields[2] = {message.size(), XXH64(message.data(), message.size(), 0)};
  for (uint64_t field : fields)
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(field >> (8 * i)));
  return bytes.append(message);
}

constexpr int64_t kBudget = int64_t{64} << 20;  // bytes of arenas and feeds a plan may ask of this target

// Runs a validated plan of one rank, when its arenas and feeds fit the budget.
void run(const tessel::proto::Plan& plan) {
  using namespace tessel;
  if (plan.ranks_size() != 1 || plan.rank_count() > 1) return;
  int64_t bytes = 0;
  for (const proto::DevicePlan& device : plan.ranks(0).devices()) {
    if (device.arena_bytes() < 0 || device.variable_arena_bytes() < 0) return;
    bytes += std::min(device.arena_bytes(), kBudget) + std::min(device.variable_arena_bytes(), kBudget);
  }
  Feeds feeds;
  for (const proto::FeedDef& feed : plan.feeds()) {
    TensorType type;
    try {
      type = tensor_type_from_proto(feed.type());
      if (type.shape.numel() > kBudget) return;
      feeds.emplace(feed.name(), HostTensor(type.shape, type.dtype));
    } catch (const Error&) {
      return;  // the executor refuses a feed that matches no FeedDef; this one cannot be made
    }
    bytes += static_cast<int64_t>(feeds.rbegin()->second.nbytes());
  }
  if (bytes > kBudget) return;
  std::vector<std::vector<std::byte>> arenas;
  std::vector<std::byte*> variables;
  for (const proto::DevicePlan& device : plan.ranks(0).devices()) {
    arenas.emplace_back(static_cast<size_t>(device.variable_arena_bytes()));
    variables.push_back(arenas.back().data());
  }
  try {
    Executor executor(plan, plan.ranks(0).rank(), variables, {.stall_timeout_seconds = 5});
    executor.run(2, [&](int64_t) -> std::optional<Feeds> { return feeds; });
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessel;
  if (size == 0) return 0;
  const std::string_view rest = fuzz::text_of(data + 1, size - 1);
  std::string bytes;
  PlanFormat format = PlanFormat::binary;
  switch (data[0] % 3) {
    case 0: bytes = rest; break;
    case 1: bytes = behind_a_header(rest); break;
    default: bytes = rest; format = PlanFormat::text; break;
  }
  proto::Plan plan;
  try {
    plan = plan_from_bytes(bytes, format);
  } catch (const Error&) {
    return 0;  // refused, with a message: what untrusted bytes may get
  }
  // Accepted: it survives its own round trip.
  const std::string again = plan_to_bytes(plan, PlanFormat::binary);
  try {
    const proto::Plan back = plan_from_bytes(again, PlanFormat::binary);
    fuzz::expect(plan_to_bytes(back, PlanFormat::binary) == again, "a plan read back differs from the one written");
  } catch (const Error& error) {
    fuzz::expect(false, "an accepted plan, written again, is refused", error.what());
  }
  run(plan);
  return 0;
}
