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
using Build = std::function<Tensor(Graph&, const V&)>;

struct OpCase {
  std::string op;  // the op whose signatures are checked (the last node of that op the build makes)
  std::vector<TensorType> inputs;
  Build build;
  std::vector<HostTensor> integer_values = {};  // for the integer and bool inputs, in order
  bool differentiable = true;                   // false: only the output is compared
};

HostTensor labels(int64_t count, int64_t classes) {
  HostTensor t(Shape{count}, DType::i64);
  for (int64_t i = 0; i < count; ++i) t.set(i, (i * 7 + 3) % classes);
  return t;
}

HostTensor bools(Shape shape) {
  HostTensor t(shape, DType::boolean);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, (i * 5 + 1) % 3 == 0);
  return t;
}

HostTensor integers(Shape shape) {
  HostTensor t(shape, DType::i64);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, (i * 11) % 7 - 3);
  return t;
}

std::vector<OpCase> cases() {
  const DType f = DType::f32;
  return {
      {"matmul", {{{6, 5}, f}, {{5, 4}, f}}, [](Graph&, const V& x) { return matmul(x[0], x[1]); }},
      {"matmul",
       {{{5, 6}, f}, {{4, 5}, f}},
       [](Graph&, const V& x) {
         return matmul(x[0], x[1], {true, true});
       }},
      {"matmul", {{{3, 6, 5}, f}, {{3, 5, 4}, f}}, [](Graph&, const V& x) { return matmul(x[0], x[1]); }},
      {"matmul", {{{3, 6, 5}, f}, {{5, 4}, f}}, [](Graph&, const V& x) { return matmul(x[0], x[1]); }},
      {"add", {{{6, 5}, f}, {{6, 5}, f}}, [](Graph&, const V& x) { return x[0] + x[1]; }},
      {"add", {{{6, 5}, f}, {{5}, f}}, [](Graph&, const V& x) { return x[0] + x[1]; }},
      {"sub", {{{6, 5}, f}, {{6, 1}, f}}, [](Graph&, const V& x) { return x[0] - x[1]; }},
      {"mul", {{{6, 5}, f}, {{6, 5}, f}}, [](Graph&, const V& x) { return x[0] * x[1]; }},
      {"div",
       {{{6, 5}, f}, {{5}, f}},
       [](Graph&, const V& x) { return x[0] / (sigmoid(x[1]) + x[1] * x[1] + 1.0 * x[1] * 0); }},
      {"scale", {{{6, 5}, f}}, [](Graph&, const V& x) { return scale(x[0], -1.5); }},
      {"bias_add", {{{6, 5}, f}, {{5}, f}}, [](Graph&, const V& x) { return bias_add(x[0], x[1]); }},
      {"relu", {{{6, 5}, f}}, [](Graph&, const V& x) { return relu(x[0]); }},
      {"gelu", {{{6, 5}, f}}, [](Graph&, const V& x) { return gelu(x[0]); }},
      {"tanh", {{{6, 5}, f}}, [](Graph&, const V& x) { return tanh(x[0]); }},
      {"sigmoid", {{{6, 5}, f}}, [](Graph&, const V& x) { return sigmoid(x[0]); }},
      {"softmax", {{{6, 5}, f}}, [](Graph&, const V& x) { return softmax(x[0]); }},
      {"softmax", {{{6, 5}, f}}, [](Graph&, const V& x) { return softmax(x[0], 0); }},
      {"log_softmax", {{{6, 5}, f}}, [](Graph&, const V& x) { return log_softmax(x[0]); }},
      {"cross_entropy",
       {{{6, 5}, f}, {{6}, DType::i64}},
       [](Graph&, const V& x) { return cross_entropy(x[0], x[1]); },
       {labels(6, 5)}},
      {"cross_entropy",
       {{{6, 5}, f}, {{6}, DType::i64}},
       [](Graph&, const V& x) { return cross_entropy(x[0], x[1], Reduction::sum); },
       {labels(6, 5)}},
      {"cross_entropy",
       {{{6, 5}, f}, {{6}, DType::i64}},
       [](Graph&, const V& x) { return cross_entropy(x[0], x[1], Reduction::none); },
       {labels(6, 5)}},
      {"sum", {{{6, 5}, f}}, [](Graph&, const V& x) { return sum(x[0], {0}); }},
      {"sum", {{{6, 5}, f}}, [](Graph&, const V& x) { return sum(x[0], {1}, true); }},
      {"sum", {{{6, 5}, f}}, [](Graph&, const V& x) { return sum(x[0]); }},
      {"mean", {{{6, 5}, f}}, [](Graph&, const V& x) { return mean(x[0], {0}); }},
      {"mean", {{{6, 5}, f}}, [](Graph&, const V& x) { return mean(x[0]); }},
      {"reshape",
       {{{6, 10}, f}},
       [](Graph&, const V& x) {
         return reshape(x[0], {6, 2, 5});
       }},
      {"transpose",
       {{{6, 5}, f}},
       [](Graph&, const V& x) {
         return transpose(x[0], {1, 0});
       }},
      {"concat",
       {{{3, 5}, f}, {{4, 5}, f}},
       [](Graph&, const V& x) {
         return concat({x[0], x[1]}, 0);
       }},
      {"concat",
       {{{6, 3}, f}, {{6, 4}, f}},
       [](Graph&, const V& x) {
         return concat({x[0], x[1]}, 1);
       }},
      {"slice",
       {{{6, 5}, f}},
       [](Graph&, const V& x) {
         return slice(x[0], {0, 1}, {6, 4});
       }},
      {"slice",
       {{{6, 5}, f}},
       [](Graph&, const V& x) {
         return slice(x[0], {1, 0}, {5, 5});
       }},
      {"layer_norm", {{{6, 5}, f}, {{5}, f}, {{5}, f}}, [](Graph&, const V& x) { return layer_norm(x[0], x[1], x[2]); }},
      {"embedding", {{{7, 6}, f}, {{6}, DType::i64}}, [](Graph&, const V& x) { return embedding(x[0], x[1]); }, {labels(6, 7)}},
      {"dropout", {{{6, 5}, f}}, [](Graph&, const V& x) { return dropout(x[0], 0.4, 5); }},
      {"broadcast_to",
       {{{6, 1}, f}},
       [](Graph&, const V& x) {
         return broadcast_to(x[0], {3, 6, 5});
       }},
      {"exp", {{{6, 5}, f}}, [](Graph&, const V& x) { return exp(x[0]); }},
      {"log", {{{6, 5}, f}}, [](Graph&, const V& x) { return log(exp(x[0])); }},
      {"sqrt", {{{6, 5}, f}}, [](Graph&, const V& x) { return sqrt(exp(x[0])); }},
      {"rsqrt", {{{6, 5}, f}}, [](Graph&, const V& x) { return rsqrt(exp(x[0])); }},
      {"abs", {{{6, 5}, f}}, [](Graph&, const V& x) { return abs(x[0]); }},
      {"pow", {{{6, 5}, f}}, [](Graph&, const V& x) { return pow(x[0], 3); }},
      {"clamp", {{{6, 5}, f}}, [](Graph&, const V& x) { return clamp(x[0], -0.5, 0.7); }},
      {"less", {{{6, 5}, f}, {{5}, f}}, [](Graph&, const V& x) { return less(x[0], x[1]); }, {}, false},
      {"less_equal", {{{6, 5}, f}, {{6, 1}, f}}, [](Graph&, const V& x) { return less_equal(x[0], x[1]); }, {}, false},
      {"greater", {{{6, 5}, f}, {{6, 5}, f}}, [](Graph&, const V& x) { return greater(x[0], x[1]); }, {}, false},
      {"greater_equal",
       {{{6, 5}, f}, {{5}, f}},
       [](Graph&, const V& x) { return greater_equal(x[0], x[1]); },
       {},
       false},
      {"equal", {{{6}, DType::i64}, {{6}, DType::i64}}, [](Graph&, const V& x) { return equal(x[0], x[1]); },
       {labels(6, 3), labels(6, 2)}, false},
      {"not_equal", {{{6}, DType::i64}, {{6}, DType::i64}}, [](Graph&, const V& x) { return not_equal(x[0], x[1]); },
       {labels(6, 3), labels(6, 2)}, false},
      {"where",
       {{{6, 5}, DType::boolean}, {{6, 5}, f}, {{5}, f}},
       [](Graph&, const V& x) { return where(x[0], x[1], x[2]); },
       {bools({6, 5})}},
      {"cast", {{{6, 5}, f}}, [](Graph&, const V& x) { return cast(cast(x[0], DType::bf16), f); }},
      {"cast", {{{6, 5}, DType::i64}}, [](Graph&, const V& x) { return cast(x[0], f); }, {integers({6, 5})}, false},
      {"cast", {{{6, 5}, f}}, [](Graph&, const V& x) { return cast(cast(x[0], DType::f16), f); }},
      {"cast",
       {{{6, 5}, DType::i64}},
       [](Graph&, const V& x) { return cast(cast(x[0], DType::i32), f); },
       {integers({6, 5})},
       false},
      {"cast", {{{6, 5}, DType::boolean}}, [](Graph&, const V& x) { return cast(x[0], f); }, {bools({6, 5})}, false},
      {"where",
       {{{6, 5}, DType::boolean}, {{6, 5}, DType::i64}, {{6, 1}, DType::i64}},
       [](Graph&, const V& x) { return cast(where(x[0], x[1], x[2]), f); },
       {bools({6, 5}), integers({6, 5}), integers({6, 1})},
       false},
      {"stop_gradient", {{{6, 5}, f}}, [](Graph&, const V& x) { return x[0] * stop_gradient(x[0]); }},
      {"max", {{{6, 5}, f}}, [](Graph&, const V& x) { return max(x[0], {1}); }},
      {"max", {{{6, 5}, f}}, [](Graph&, const V& x) { return max(x[0], {0}, true); }},
      {"min", {{{6, 5}, f}}, [](Graph&, const V& x) { return min(x[0], {0}); }},
      {"argmax", {{{6, 5}, f}}, [](Graph&, const V& x) { return argmax(x[0]); }, {}, false},
      {"argmax", {{{6, 5}, f}}, [](Graph&, const V& x) { return argmax(x[0], 0, true); }, {}, false},
      {"triu", {{{3, 6, 5}, f}}, [](Graph&, const V& x) { return triu(x[0], 1); }},
      {"tril", {{{6, 5}, f}}, [](Graph&, const V& x) { return tril(x[0]); }},
      {"arange", {}, [](Graph& g, const V&) { return cast(arange(g, 3, 21, 3), f); }, {}, false},
      {"constant",
       {},
       [](Graph& g, const V&) { return constant(g, testing::random_tensor({6, 5}, 9)) * 2.0; },
       {},
       false},
      {"cross_entropy",
       {{{6, 5}, f}, {{6}, DType::i64}},
       [](Graph&, const V& x) {
         return cross_entropy(x[0], x[1], CrossEntropyOptions{.ignore_index = 3, .label_smoothing = 0.1});
       },
       {labels(6, 5)}},
      {"reshape",
       {{{6, 4}, DType::i64}},
       [](Graph&, const V& x) {
         return cast(reshape(x[0], {24}), f);
       },
       {integers({6, 4})},
       false},
      {"reshape",
       {{{4, 3, 2}, f}},
       [](Graph&, const V& x) {
         return reshape(x[0], {12, 2});
       }},
      {"sum_to",
       {{{3, 6, 5}, f}},
       [](Graph&, const V& x) {
         return sum_to(x[0], {6, 1});
       }},
  };
}

std::vector<SbpSignature> signatures_of(const OpCase& c) {
  Graph g;
  V xs;
  for (size_t i = 0; i < c.inputs.size(); ++i)
    xs.push_back(g.input(concat("x", i), c.inputs[i].shape, c.inputs[i].dtype));
  c.build(g, xs);
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
  const Tensor y = c.build(g, converted);
  int op_node = -1;
  for (int id = g.num_nodes() - 1; id >= 0 && op_node < 0; --id) op_node = g.node(id).op == c.op ? id : -1;
  for (size_t o = 0; o < signature.outputs.size(); ++o) {
    if (!layout_fits(g.node(op_node).outputs[o].shape, {mesh, {signature.outputs[o]}})) return false;
  }
  // A signature the op itself refuses on these devices (a reshape whose shards would not be
  // blocks) is not expected to be chosen.
  if (const OpDef& def = OpRegistry::global().op(c.op); def.fits) {
    std::vector<TensorType> op_inputs;
    for (const TensorRef& in : g.node(op_node).inputs) op_inputs.push_back(g.node(in.node).outputs[in.output]);
    std::vector<NdSbp> ins, outs;
    for (const Sbp& sbp : signature.inputs) ins.push_back(NdSbp({sbp}));
    for (const Sbp& sbp : signature.outputs) outs.push_back(NdSbp({sbp}));
    if (!def.fits(FitContext{op_inputs, g.node(op_node).outputs, g.node(op_node).attrs, mesh, ins, outs})) return false;
  }
  std::vector<Tensor> fetches{y};
  if (c.differentiable && !floats.empty()) {
    const Tensor weights = g.input("weights", y.shape());
    feeds["weights"] = testing::random_tensor(y.shape(), 7);
    for (const Tensor& gradient : g.gradients(sum(y * weights), floats)) fetches.push_back(gradient);
  }

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
  EXPECT_GE(checked, 420);
  EXPECT_LE(alternatives, checked / 10);
  EXPECT_GE(ops.size(), 48u);
  for (const OpCase& c : cases()) EXPECT_TRUE(ops.count(c.op)) << "no signature of " << c.op << " was checked";
}

}  // namespace
}  // namespace tessel
