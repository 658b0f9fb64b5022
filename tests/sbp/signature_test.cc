// Every SBP signature every op declares, on its own: the op's inputs are converted to the
// signature's SBPs with to(), inference must then choose that signature, and the op's output
// (and the gradients of its inputs, whose layouts inference chooses) over 2 and 3 CPU devices
// must equal the one-device reference. Shapes are uneven over 2 and 3 devices.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <set>

#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "sbp/inference.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

using V = std::vector<Tensor>;
using Build = std::function<Tensor(const V&)>;

struct OpCase {
  std::string op;  // the op whose signatures are checked (the last node of that op the build makes)
  std::vector<TensorType> inputs;
  Build build;
  std::vector<HostTensor> integer_values = {};  // for the integer inputs, in order
};

HostTensor labels(int64_t count, int64_t classes) {
  HostTensor t(Shape{count}, DType::i64);
  for (int64_t i = 0; i < count; ++i) t.set(i, (i * 7 + 3) % classes);
  return t;
}

std::vector<OpCase> cases() {
  const DType f = DType::f32;
  return {
      {"matmul", {{{6, 5}, f}, {{5, 4}, f}}, [](const V& x) { return matmul(x[0], x[1]); }},
      {"matmul",
       {{{5, 6}, f}, {{4, 5}, f}},
       [](const V& x) {
         return matmul(x[0], x[1], {true, true});
       }},
      {"matmul", {{{3, 6, 5}, f}, {{3, 5, 4}, f}}, [](const V& x) { return matmul(x[0], x[1]); }},
      {"matmul", {{{3, 6, 5}, f}, {{5, 4}, f}}, [](const V& x) { return matmul(x[0], x[1]); }},
      {"add", {{{6, 5}, f}, {{6, 5}, f}}, [](const V& x) { return x[0] + x[1]; }},
      {"add", {{{6, 5}, f}, {{5}, f}}, [](const V& x) { return x[0] + x[1]; }},
      {"sub", {{{6, 5}, f}, {{6, 1}, f}}, [](const V& x) { return x[0] - x[1]; }},
      {"mul", {{{6, 5}, f}, {{6, 5}, f}}, [](const V& x) { return x[0] * x[1]; }},
      {"div",
       {{{6, 5}, f}, {{5}, f}},
       [](const V& x) { return x[0] / (sigmoid(x[1]) + x[1] * x[1] + 1.0 * x[1] * 0); }},
      {"scale", {{{6, 5}, f}}, [](const V& x) { return scale(x[0], -1.5); }},
      {"bias_add", {{{6, 5}, f}, {{5}, f}}, [](const V& x) { return bias_add(x[0], x[1]); }},
      {"relu", {{{6, 5}, f}}, [](const V& x) { return relu(x[0]); }},
      {"gelu", {{{6, 5}, f}}, [](const V& x) { return gelu(x[0]); }},
      {"tanh", {{{6, 5}, f}}, [](const V& x) { return tanh(x[0]); }},
      {"sigmoid", {{{6, 5}, f}}, [](const V& x) { return sigmoid(x[0]); }},
      {"softmax", {{{6, 5}, f}}, [](const V& x) { return softmax(x[0]); }},
      {"softmax", {{{6, 5}, f}}, [](const V& x) { return softmax(x[0], 0); }},
      {"log_softmax", {{{6, 5}, f}}, [](const V& x) { return log_softmax(x[0]); }},
      {"cross_entropy",
       {{{6, 5}, f}, {{6}, DType::i64}},
       [](const V& x) { return cross_entropy(x[0], x[1]); },
       {labels(6, 5)}},
      {"cross_entropy",
       {{{6, 5}, f}, {{6}, DType::i64}},
       [](const V& x) { return cross_entropy(x[0], x[1], Reduction::sum); },
       {labels(6, 5)}},
      {"cross_entropy",
       {{{6, 5}, f}, {{6}, DType::i64}},
       [](const V& x) { return cross_entropy(x[0], x[1], Reduction::none); },
       {labels(6, 5)}},
      {"sum", {{{6, 5}, f}}, [](const V& x) { return sum(x[0], {0}); }},
      {"sum", {{{6, 5}, f}}, [](const V& x) { return sum(x[0], {1}, true); }},
      {"sum", {{{6, 5}, f}}, [](const V& x) { return sum(x[0]); }},
      {"mean", {{{6, 5}, f}}, [](const V& x) { return mean(x[0], {0}); }},
      {"mean", {{{6, 5}, f}}, [](const V& x) { return mean(x[0]); }},
      {"reshape",
       {{{6, 10}, f}},
       [](const V& x) {
         return reshape(x[0], {6, 2, 5});
       }},
      {"transpose",
       {{{6, 5}, f}},
       [](const V& x) {
         return transpose(x[0], {1, 0});
       }},
      {"concat",
       {{{3, 5}, f}, {{4, 5}, f}},
       [](const V& x) {
         return concat({x[0], x[1]}, 0);
       }},
      {"concat",
       {{{6, 3}, f}, {{6, 4}, f}},
       [](const V& x) {
         return concat({x[0], x[1]}, 1);
       }},
      {"slice",
       {{{6, 5}, f}},
       [](const V& x) {
         return slice(x[0], {0, 1}, {6, 4});
       }},
      {"slice",
       {{{6, 5}, f}},
       [](const V& x) {
         return slice(x[0], {1, 0}, {5, 5});
       }},
      {"layer_norm", {{{6, 5}, f}, {{5}, f}, {{5}, f}}, [](const V& x) { return layer_norm(x[0], x[1], x[2]); }},
      {"embedding", {{{7, 6}, f}, {{6}, DType::i64}}, [](const V& x) { return embedding(x[0], x[1]); }, {labels(6, 7)}},
      {"dropout", {{{6, 5}, f}}, [](const V& x) { return dropout(x[0], 0.4, 5); }},
      {"broadcast_to",
       {{{6, 1}, f}},
       [](const V& x) {
         return broadcast_to(x[0], {3, 6, 5});
       }},
      {"sum_to",
       {{{3, 6, 5}, f}},
       [](const V& x) {
         return sum_to(x[0], {6, 1});
       }},
  };
}

std::vector<SbpSignature> signatures_of(const OpCase& c) {
  Graph g;
  V xs;
  for (size_t i = 0; i < c.inputs.size(); ++i)
    xs.push_back(g.input(concat("x", i), c.inputs[i].shape, c.inputs[i].dtype));
  c.build(xs);
  for (int id = g.num_nodes() - 1; id >= 0; --id) {
    const Node& node = g.node(id);
    if (node.op != c.op) continue;
    std::vector<TensorType> inputs;
    for (const TensorRef& in : node.inputs) inputs.push_back(g.node(in.node).outputs[in.output]);
    return OpRegistry::global().op(c.op).signatures(SbpContext{inputs, node.outputs, node.attrs});
  }
  ADD_FAILURE() << "the build makes no " << c.op;
  return {};
}

int alternatives = 0;  // signatures checked through a same-input alternative

void expect_close(const HostTensor& actual, const HostTensor& expected, const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    ASSERT_NEAR(actual.get(i), expected.get(i), 1e-5 * std::max(1.0, std::abs(expected.get(i)))) << what << " @" << i;
  }
}

// Runs `c` with its inputs converted to `signature`; false when a layout cannot hold a shape.
// Where several signatures take the same inputs (broadcast_to of a B input may give B or a
// split), inference picks one of them and that is the one checked.
bool check_signature(const OpCase& c, const std::vector<SbpSignature>& all, const SbpSignature& signature,
                     const Placement& mesh, const std::string& what) {
  Graph g(3);
  V xs, converted, floats;
  Feeds feeds;
  size_t integer = 0;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const TensorType& type = c.inputs[i];
    if (!layout_fits(type.shape, {mesh, {signature.inputs[i]}})) return false;
    xs.push_back(g.input(concat("x", i), type.shape, type.dtype));
    pin(xs.back(), mesh, {B});
    converted.push_back(to(xs.back(), mesh, {signature.inputs[i]}));
    if (is_floating(type.dtype)) {
      floats.push_back(xs.back());
      feeds[concat("x", i)] = testing::random_tensor(type.shape, 40 + i, -1.5f, 1.5f);
    } else {
      feeds[concat("x", i)] = c.integer_values.at(integer++);
    }
  }
  const Tensor y = c.build(converted);
  int op_node = -1;
  for (int id = g.num_nodes() - 1; id >= 0 && op_node < 0; --id) op_node = g.node(id).op == c.op ? id : -1;
  for (size_t o = 0; o < signature.outputs.size(); ++o) {
    if (!layout_fits(g.node(op_node).outputs[o].shape, {mesh, {signature.outputs[o]}})) return false;
  }
  const Tensor weights = g.input("weights", y.shape());
  feeds["weights"] = testing::random_tensor(y.shape(), 7);
  std::vector<Tensor> fetches{y};
  for (const Tensor& gradient : g.gradients(sum(y * weights), floats)) fetches.push_back(gradient);

  const SbpAssignment layouts = infer_sbp(g, mesh);
  std::vector<NdSbp> wanted_inputs, wanted_outputs;
  for (const Sbp& s : signature.inputs) wanted_inputs.push_back(NdSbp({s}));
  for (const Sbp& s : signature.outputs) wanted_outputs.push_back(NdSbp({s}));
  EXPECT_EQ(layouts.nodes[op_node].inputs, wanted_inputs) << what << ": inference chose another signature";
  bool declared = false;
  for (const SbpSignature& other : all) {
    std::vector<NdSbp> outputs;
    for (const Sbp& o : other.outputs) outputs.push_back(NdSbp({o}));
    declared = declared || (other.inputs == signature.inputs && outputs == layouts.nodes[op_node].outputs);
  }
  EXPECT_TRUE(declared) << what << ": inference chose outputs no signature with these inputs declares";
  if (layouts.nodes[op_node].outputs != wanted_outputs) ++alternatives;

  Session session(g, {.fetches = fetches, .placement = mesh});
  Interpreter reference(g);
  const std::vector<HostTensor> actual = session.step(feeds);
  const std::vector<HostTensor> expected = reference.evaluate(feeds, fetches, /*training_mode=*/true);
  for (size_t f = 0; f < fetches.size(); ++f) expect_close(actual[f], expected[f], concat(what, ", fetch ", f));
  return true;
}

TEST(Signatures, EverySignatureOfEveryOpGivesTheOneDeviceValues) {
  int checked = 0;
  std::set<std::string> ops;
  for (const OpCase& c : cases()) {
    const std::vector<SbpSignature> signatures = signatures_of(c);
    for (int devices : {2, 3}) {
      for (size_t s = 0; s < signatures.size(); ++s) {
        std::string text;
        for (const Sbp& in : signatures[s].inputs) text += in.to_string() + " ";
        text += "->";
        for (const Sbp& out : signatures[s].outputs) text += " " + out.to_string();
        const std::string what = concat(c.op, " ", text, " on ", devices, " devices");
        if (check_signature(c, signatures, signatures[s], Placement::cpu(devices), what)) {
          ++checked;
          ops.insert(c.op);
        }
        if (HasFailure()) return;
      }
    }
  }
  std::printf("%d signatures checked over %zu ops (%d through a same-input alternative)\n", checked, ops.size(),
              alternatives);
  EXPECT_GE(checked, 250);
  EXPECT_LE(alternatives, checked / 10);
  EXPECT_GE(ops.size(), 25u);
}

}  // namespace
}  // namespace tessel
