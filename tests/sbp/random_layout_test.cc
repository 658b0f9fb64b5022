// SBP end to end on random graphs: random small graphs with random pins (on inputs, on
// parameters and through to() on intermediates, P included, and hand-offs to other
// placements) on meshes of 1, 2, 3, 4 and 2x2 CPU devices. Every forward output and every
// gradient, at every step, and every parameter after training, must equal the one-device
// reference interpreter within 1e-5 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ops/ops.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "sbp/inference.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

constexpr int kCases = 250;
constexpr int kSteps = 3;

struct RandomCase {
  Graph graph;
  std::vector<std::string> inputs;
  std::vector<Tensor> fetches;
  PlanOptions plan;
  SessionOptions session;
  std::string description;
  int pins = 0, conversions = 0;
};

Placement mesh_of_case(uint64_t seed) {
  switch (seed % 5) {
    case 0:
      return Placement::cpu(1);
    case 1:
      return Placement::cpu(2);
    case 2:
      return Placement::cpu(3);
    case 3:
      return Placement::cpu(4);
    default:
      return Placement::cpu_mesh(2, 2);
  }
}

void build(RandomCase& r, uint64_t seed) {
  std::mt19937_64 random(seed * 7919);
  const auto pick = [&](int64_t low, int64_t high) {
    return std::uniform_int_distribution<int64_t>(low, high)(random);
  };
  const Placement mesh = mesh_of_case(seed);
  Graph& g = r.graph;
  g.set_seed(seed);
  // Extents of 3 to 7 leave uneven splits on 2, 3 and 4 devices.
  const int64_t n = pick(std::max<int64_t>(3, mesh.size()), 7);
  std::string log;
  const auto random_sbp = [&](bool allow_partial, const Placement& on) {
    std::vector<Sbp> sbps;
    for (int axis = 0; axis < on.mesh_rank(); ++axis) {
      const int64_t kind = pick(0, allow_partial ? 4 : 2);
      sbps.push_back(kind == 0 ? B : kind == 1 ? S(0) : kind == 2 ? S(1) : kind == 3 ? P : Sbp::partial_max());
    }
    return NdSbp(sbps);
  };
  // Placements a to() may hand off to: the mesh, part of it, one device, the devices reversed.
  const auto random_placement = [&]() -> Placement {
    switch (pick(0, 5)) {
      case 0:
        return Placement::cpu_devices({mesh.devices.back()});
      case 1: {
        std::vector<int> reversed(mesh.devices.rbegin(), mesh.devices.rend());
        return Placement::cpu_devices(reversed);
      }
      case 2:
        return mesh.size() > 1 ? Placement::cpu(mesh.size() - 1, 1) : mesh;
      default:
        return mesh;
    }
  };
  const auto maybe_pin = [&](const Tensor& leaf) {
    if (pick(0, 1) == 0) return;
    const NdSbp sbp = random_sbp(false, mesh);
    if (!layout_fits(leaf.shape(), {mesh, sbp})) return;
    pin(leaf, mesh, sbp);
    ++r.pins;
    log += concat(leaf.name(), "=", sbp.to_string(), " ");
  };

  std::vector<Tensor> pool, params;
  for (int i = 0, count = static_cast<int>(pick(1, 2)); i < count; ++i) {
    r.inputs.push_back(concat("x", i));
    pool.push_back(g.input(r.inputs.back(), {n, n}));
    maybe_pin(pool.back());
  }
  for (int i = 0, count = static_cast<int>(pick(1, 3)); i < count; ++i) {
    params.push_back(g.param(concat("p", i), {n, n}, init::normal(0.5)));
    maybe_pin(params.back());
    pool.push_back(params.back());
  }
  Tensor bias = g.param("bias", {n}, init::normal(0.5));
  maybe_pin(bias);
  params.push_back(bias);
  const auto operand = [&]() -> Tensor {
    const int64_t size = static_cast<int64_t>(pool.size());
    Tensor t = pool[pick(0, 2) == 0 ? pick(0, size - 1) : pick(std::max<int64_t>(0, size - 3), size - 1)];
    if (pick(0, 5) == 0) {  // a pin on an intermediate, sometimes on another placement
      const Placement to_placement = pick(0, 2) == 0 ? random_placement() : mesh;
      const NdSbp sbp = random_sbp(true, to_placement);
      if (layout_fits(t.shape(), {to_placement, sbp})) {
        t = to(t, to_placement, sbp);
        ++r.conversions;
        log += concat("to(", sbp.to_string(), " on ", to_placement.size(), ") ");
      }
    }
    return t;
  };
  for (int i = 0, count = static_cast<int>(pick(4, 12)); i < count; ++i) {
    Tensor t;
    switch (pick(0, 15)) {
      case 0:
        t = add(operand(), operand()), log += "add ";
        break;
      case 1:
        t = sub(operand(), operand()), log += "sub ";
        break;
      case 2:
        t = mul(operand(), operand()), log += "mul ";
        break;
      case 3:
        t = matmul(operand(), operand()), log += "matmul ";
        break;
      case 4:
        t = matmul(operand(), operand(), {.transpose_a = true}), log += "matmul-ta ";
        break;
      case 5:
        t = relu(operand()), log += "relu ";
        break;
      case 6:
        t = tanh(operand()), log += "tanh ";
        break;
      case 7:
        t = scale(operand(), 0.5), log += "scale ";
        break;
      case 8:
        t = transpose(operand(), {1, 0}), log += "transpose ";
        break;
      case 9:
        t = softmax(operand(), pick(0, 1)), log += "softmax ";
        break;
      case 10:
        t = bias_add(operand(), bias), log += "bias_add ";
        break;
      case 11:
        t = slice(concat({operand(), operand()}, 0), {n / 2, 0}, {n / 2 + n, n}), log += "concat-slice ";
        break;
      case 12:
        t = add(operand(), mean(operand(), {0}, true)), log += "add-mean ";
        break;
      case 13:
        t = reshape(reshape(operand(), {n * n}), {n, n}), log += "reshape ";
        break;
      case 14:
        t = div(operand(), add(sigmoid(operand()), fill(g, {n}, 1.0))), log += "div ";
        break;
      default:
        t = dropout(operand(), 0.25, 11), log += "dropout ";
        break;
    }
    pool.push_back(t);
  }
  // A scalar loss over the last few tensors reaches every parameter.
  Tensor loss = mean(mul(pool.back(), pool.back()));
  for (const Tensor& p : params) loss = add(loss, scale(sum(mul(p, operand())), 0.01));
  r.fetches = {pool[pick(static_cast<int64_t>(r.inputs.size() + params.size()) - 1, pool.size() - 1)], loss};
  for (const Tensor& gradient : g.gradients(loss, params)) r.fetches.push_back(gradient);
  const bool train = pick(0, 2) != 0;
  if (train) {
    g.minimize(loss, SGD{.lr = 0.05, .momentum = pick(0, 1) ? 0.9 : 0.0});
    log += "| SGD";
  }
  r.plan.fetches = r.fetches;
  r.plan.placement = mesh;
  r.plan.register_count = static_cast<int>(pick(1, 2));
  r.session.worker_threads = static_cast<int>(pick(1, 2));
  r.description = concat("case ", seed, " on ", mesh.to_string(), ", n=", n, ": ", log);
}

Feeds feeds_for(const RandomCase& r, int64_t step, uint64_t seed) {
  Feeds feeds;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    feeds[r.inputs[i]] =
        testing::random_tensor(r.graph.find_node(r.inputs[i])->outputs[0].shape, seed * 100 + step * 10 + i);
  }
  return feeds;
}

// Within 1e-5 of the reference, relative to the value; values near 0 (sums whose terms
// cancel, added in another order on several devices) are compared relative to 1e-2 of the
// tensor's largest value, and never closer than 1e-8.
void expect_close(const HostTensor& actual, const HostTensor& expected, const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  double scale = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) scale = std::max(scale, std::abs(expected.get(i)));
  for (int64_t i = 0; i < expected.numel(); ++i) {
    const double tolerance = 1e-5 * std::max({std::abs(expected.get(i)), 1e-2 * scale, 1e-3});
    ASSERT_NEAR(actual.get(i), expected.get(i), tolerance) << what << ", element " << i;
  }
}

TEST(RandomLayouts, EveryMeshAndPinGivesTheOneDeviceValues) {
  int multi_device = 0, pinned = 0, converted = 0, boxed = 0;
  for (uint64_t seed = 1; seed <= kCases; ++seed) {
    RandomCase r;
    build(r, seed);
    SCOPED_TRACE(r.description);
    const SbpAssignment layouts = infer_sbp(r.graph, r.plan.placement);
    for (const Node& node : r.graph.nodes()) {  // every pin is honoured
      Layout pinned;
      if (pinned_layout(node, r.plan.placement, pinned)) {
        EXPECT_EQ(layouts.output({node.id, 0}), pinned) << node.name;
      }
    }
    Session session(r.graph, r.plan, r.session);
    Interpreter reference(r.graph);
    const auto outputs =
        session.run(kSteps, [&](int64_t step) -> std::optional<Feeds> { return feeds_for(r, step, seed); });
    ASSERT_EQ(outputs.size(), static_cast<size_t>(kSteps));
    for (int step = 0; step < kSteps; ++step) {
      const std::vector<HostTensor> expected = reference.train_step(feeds_for(r, step, seed), r.fetches);
      for (size_t f = 0; f < expected.size(); ++f) {
        expect_close(outputs[step][f], expected[f], concat("step ", step, ", fetch ", r.fetches[f].name()));
      }
    }
    for (const Tensor& param : r.graph.params()) {
      const std::string name = r.graph.node(param.node()).attrs.get_string("name");
      expect_close(session.variable(name), reference.variable(name), concat("variable ", name));
    }
    multi_device += session.plan().ranks(0).devices_size() > 1;
    pinned += r.pins > 0;
    converted += r.conversions > 0;
    for (const proto::DevicePlan& device : session.plan().ranks(0).devices()) {
      for (const proto::ActorDef& actor : device.actors()) boxed += actor.op() == "boxing_assemble";
    }
    if (HasFailure()) break;  // one case's report is enough to debug
  }
  // The generator must keep covering what this test claims to cover.
  EXPECT_GE(multi_device, kCases * 3 / 4);
  EXPECT_GE(pinned, kCases / 2);
  EXPECT_GE(converted, kCases / 3);
  EXPECT_GE(boxed, kCases);
}

}  // namespace
}  // namespace tessel
