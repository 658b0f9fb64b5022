#include "apps/models/gpt.h"

#include <cmath>

#include "core/random.h"
#include "ops/ops.h"
#include "ops/registry.h"

namespace tessel::models {
namespace {

// The SBPs a layout gives each kind of tensor, on one stage's placement.
struct Layout {
  Placement placement;
  NdSbp tokens, replicated;
  NdSbp columns, column_bias;  // a matrix split by output columns, and its bias
  NdSbp rows;                  // a matrix split by input rows: its product is partial
  NdSbp reduced;               // what a row-split product becomes before the residual add
  bool tensor_split = false;
};

Layout layout_of(const std::string& name, const Placement& placement) {
  if (name == "single") return {.placement = placement, .tokens = {B}, .replicated = {B}, .columns = {B},
                                .column_bias = {B}, .rows = {B}, .reduced = {B}};
  if (name == "data-parallel" || name == "pipeline")
    return {.placement = placement, .tokens = {S(0)}, .replicated = {B}, .columns = {B}, .column_bias = {B},
            .rows = {B}, .reduced = {S(0)}};
  if (name == "tensor-parallel")
    return {.placement = placement, .tokens = {B}, .replicated = {B}, .columns = {S(1)}, .column_bias = {S(0)},
            .rows = {S(0)}, .reduced = {B}, .tensor_split = true};
  // hybrid: data x tensor
  return {.placement = placement, .tokens = {S(0), B}, .replicated = {B, B}, .columns = {B, S(1)},
          .column_bias = {B, S(0)}, .rows = {B, S(0)}, .reduced = {S(0), B}, .tensor_split = true};
}

struct Block {
  Tensor ln1_gain, ln1_bias, wq, bq, wk, wv, bv, wo, bo;
  Tensor ln2_gain, ln2_bias, w1, b1, w2, b2;
};

class Builder {
 public:
  explicit Builder(Gpt& gpt) : gpt_(gpt), c_(gpt.config), g_(*gpt.graph) {}

  Tensor param(const std::string& name, Shape shape, Initializer init, const Layout& layout, const NdSbp& sbp) {
    Tensor p = g_.param(name, std::move(shape), init);
    pin(p, layout.placement, sbp);
    return p;
  }

  Block block(int index, const Layout& l) {
    const std::string at = concat("block", index, "/");
    const int64_t w = c_.width;
    const Initializer weight = init::normal(0.02);
    // GPT-2's scaling of the projections into the residual stream.
    const Initializer residual = init::normal(0.02 / std::sqrt(2.0 * static_cast<double>(c_.layers)));
    Block b;
    b.ln1_gain = param(at + "ln1/gain", {w}, init::ones(), l, l.replicated);
    b.ln1_bias = param(at + "ln1/bias", {w}, init::zeros(), l, l.replicated);
    b.wq = param(at + "attention/wq", {w, w}, weight, l, l.columns);
    b.bq = param(at + "attention/bq", {w}, init::zeros(), l, l.column_bias);
    b.wk = param(at + "attention/wk", {w, w}, weight, l, l.columns);
    b.wv = param(at + "attention/wv", {w, w}, weight, l, l.columns);
    b.bv = param(at + "attention/bv", {w}, init::zeros(), l, l.column_bias);
    b.wo = param(at + "attention/wo", {w, w}, residual, l, l.rows);
    b.bo = param(at + "attention/bo", {w}, init::zeros(), l, l.replicated);
    b.ln2_gain = param(at + "ln2/gain", {w}, init::ones(), l, l.replicated);
    b.ln2_bias = param(at + "ln2/bias", {w}, init::zeros(), l, l.replicated);
    b.w1 = param(at + "mlp/w1", {w, 4 * w}, weight, l, l.columns);
    b.b1 = param(at + "mlp/b1", {4 * w}, init::zeros(), l, l.column_bias);
    b.w2 = param(at + "mlp/w2", {4 * w, w}, residual, l, l.rows);
    b.b2 = param(at + "mlp/b2", {w}, init::zeros(), l, l.replicated);
    return b;
  }

  // A parameter where it is used: in the activations' dtype.
  Tensor use(const Tensor& p) const { return c_.activations == DType::f32 ? p : cast(p, c_.activations); }

  // a @ b in the configuration's matmul dtype, in the activations' dtype. With f32 activations a
  // bf16 product is cast back at once, so its partial sums are reduced in f32.
  Tensor product(const Tensor& a, const Tensor& b, MatmulOptions options = {}) const {
    if (c_.matmuls == c_.activations) return matmul(a, b, options);
    return cast(matmul(cast(a, c_.matmuls), cast(b, c_.matmuls), options), c_.activations);
  }

  // A row-split product (partial under a tensor split) made whole again, then its bias.
  Tensor project(const Tensor& x, const Tensor& weight, const Tensor& bias, const Layout& l) const {
    Tensor product = this->product(x, use(weight));
    // Megatron's all-reduce: pinned, so inference does not pick a reduce-scatter the backward
    // pass pays for.
    if (l.tensor_split) product = to(product, l.reduced);
    return bias_add(product, use(bias));
  }

  // x [rows, T, C] -> the block's output, same shape.
  Tensor apply(const Block& b, const Tensor& x, const Tensor& mask, const Layout& l) const {
    const int64_t rows = x.shape().dims()[0], t = c_.context, h = c_.heads, d = c_.width / c_.heads;
    const auto heads = [&](const Tensor& y) {  // [rows, T, C] -> [rows, H, T, D]
      return transpose(reshape(y, {rows, t, h, d}), {0, 2, 1, 3});
    };
    Tensor n1 = layer_norm(x, use(b.ln1_gain), use(b.ln1_bias));
    Tensor q = heads(bias_add(product(n1, use(b.wq)), use(b.bq)));
    // No key bias: it adds q . bk to every score of a query, which the softmax cancels, so its
    // gradient is only rounding noise, and Adam's normalised step turns noise into updates.
    Tensor k = heads(product(n1, use(b.wk)));
    Tensor v = heads(bias_add(product(n1, use(b.wv)), use(b.bv)));
    Tensor scores = product(q, k, {.transpose_b = true}) * (1.0 / std::sqrt(static_cast<double>(d))) + mask;
    Tensor attended = product(softmax(scores, -1), v);  // [rows, H, T, D]
    Tensor merged = reshape(transpose(attended, {0, 2, 1, 3}), {rows, t, c_.width});
    Tensor x1 = x + project(merged, b.wo, b.bo, l);
    Tensor n2 = layer_norm(x1, use(b.ln2_gain), use(b.ln2_bias));
    Tensor hidden = gelu(bias_add(product(n2, use(b.w1)), use(b.b1)));
    return x1 + project(hidden, b.w2, b.b2, l);
  }

  // 0 where a position may attend, a large negative number where it may not: added to the
  // scores before the softmax.
  Tensor mask() {
    HostTensor m(Shape{c_.context, c_.context}, DType::f32);
    for (int64_t i = 0; i < c_.context; ++i) {
      for (int64_t j = 0; j < c_.context; ++j) m.data<float>()[i * c_.context + j] = j <= i ? 0.0f : -1e9f;
    }
    return use(constant(g_, m));
  }

  void build() {
    const int n = c_.devices;
    const bool pipeline = c_.layout == "pipeline";
    const Placement all = c_.layout == "hybrid" ? Placement::cpu_mesh_for(n, {-1, 2}) : Placement::cpu(n);
    const Layout first = layout_of(c_.layout, pipeline ? Placement::cpu(n / 2) : all);
    const Layout second = pipeline ? layout_of(c_.layout, Placement::cpu(n / 2, n / 2)) : first;
    gpt_.placement = first.placement;

    const Tensor token_table = param("embedding/tokens", {c_.vocab, c_.width}, init::normal(0.02), first,
                                     first.replicated);
    const Tensor positions = param("embedding/positions", {c_.context, c_.width}, init::normal(0.02), first,
                                   first.replicated);
    std::vector<Block> blocks;
    // The pipeline's first stage has the first (layers + 1) / 2 blocks.
    const int64_t split = (c_.layers + 1) / 2;
    for (int i = 0; i < c_.layers; ++i) blocks.push_back(block(i, pipeline && i >= split ? second : first));
    const Tensor final_gain = param("final/gain", {c_.width}, init::ones(), second, second.replicated);
    const Tensor final_bias = param("final/bias", {c_.width}, init::zeros(), second, second.replicated);
    const Tensor head = param("head/w", {c_.width, c_.vocab}, init::normal(0.02), second, second.replicated);

    const int inputs = pipeline ? c_.micro_batches : 1;
    const int64_t rows = c_.batch / inputs;
    Tensor first_mask = mask(), second_mask = pipeline ? mask() : first_mask;
    for (int m = 0; m < inputs; ++m) {
      const std::string suffix = pipeline ? concat(m) : "";
      Tensor tokens = g_.input("tokens" + suffix, {rows, c_.context}, DType::i64);
      Tensor targets = g_.input("targets" + suffix, {rows, c_.context}, DType::i64);
      pin(tokens, first.placement, first.tokens);
      pin(targets, second.placement, second.tokens);
      Tensor x = embedding(use(token_table), tokens) + use(positions);
      for (int i = 0; i < c_.layers; ++i) {
        const bool later = pipeline && i >= split;
        if (pipeline && i == split) x = to(x, second.placement, second.tokens);  // the hand-off between the stages
        x = apply(blocks[i], x, later ? second_mask : first_mask, later ? second : first);
      }
      if (pipeline && split == c_.layers) x = to(x, second.placement, second.tokens);
      Tensor logits = product(layer_norm(x, use(final_gain), use(final_bias)), use(head));
      if (c_.activations != DType::f32) logits = cast(logits, DType::f32);
      Tensor loss = cross_entropy(logits, targets);
      if (inputs > 1) loss = loss / static_cast<double>(inputs);
      gpt_.loss = gpt_.loss.defined() ? gpt_.loss + loss : loss;
      gpt_.token_inputs.push_back("tokens" + suffix);
      gpt_.target_inputs.push_back("targets" + suffix);
      gpt_.logits.push_back(logits);
    }
    // The sampler: the chosen position's logits over the temperature, plus Gumbel noise, argmax.
    const int64_t rows_sampled = rows;
    Tensor select = g_.input("sample/select", {rows_sampled, c_.context, 1});
    Tensor noise = g_.input("sample/noise", {rows_sampled, c_.vocab});
    pin(select, second.placement, second.tokens);
    pin(noise, second.placement, second.tokens);
    Tensor last = sum(gpt_.logits[0] * select, {1});  // [rows, vocab]
    Tensor choice = argmax(last * (c_.temperature > 0 ? 1.0 / c_.temperature : 1.0) + noise, -1);
    for (int d = 0; d < n; ++d) gpt_.next.push_back(to(choice, Placement::cpu(1, d), {B}));
    g_.minimize(gpt_.loss, AdamW{.lr = c_.lr, .weight_decay = c_.weight_decay},
                MinimizeOptions{.schedule = {.warmup_steps = c_.warmup_steps,
                                             .decay = LrSchedule::Decay::cosine,
                                             .total_steps = c_.total_steps,
                                             .min_lr = c_.min_lr},
                                .clip_grad_norm = c_.clip,
                                .decay_only_matrices = true});
  }

 private:
  Gpt& gpt_;
  const GptConfig& c_;
  Graph& g_;
};

}  // namespace

std::vector<std::string> gpt_layout_names() { return {"single", "data-parallel", "tensor-parallel", "pipeline", "hybrid"}; }

Gpt build_gpt(const GptConfig& config) {
  const auto refuse = [&](const std::string& why) {
    throw Error::InvalidArgument(concat("the GPT cannot be laid out ", config.layout, " over ", config.devices,
                                        " devices: ", why));
  };
  bool known = false;
  for (const std::string& name : gpt_layout_names()) known |= name == config.layout;
  if (!known) {
    std::string names;
    for (const std::string& name : gpt_layout_names()) names += concat(names.empty() ? "" : ", ", name);
    throw Error::NotFound(concat("no GPT layout named '", config.layout, "' (expected one of ", names, ")"));
  }
  if (config.vocab < 1 || config.context < 1 || config.width < 1 || config.heads < 1 || config.layers < 1 ||
      config.batch < 1 || config.devices < 1) {
    refuse("vocabulary, context, width, heads, layers, batch and devices must each be at least 1");
  }
  const auto refuse_precision = [](const std::string& why) {
    throw Error::InvalidArgument(concat("the GPT's precision: ", why));
  };
  if (config.matmuls != DType::f32 && config.matmuls != DType::bf16) {
    refuse_precision(concat("matmuls in ", config.matmuls, ": expected f32 or bf16"));
  }
  if (config.activations != DType::f32 && config.activations != config.matmuls) {
    refuse_precision(concat(config.activations, " activations need ", config.activations, " matmuls, not ",
                            config.matmuls));
  }
  if (config.matmuls == DType::bf16 && !OpRegistry::global().has_kernel("matmul", DeviceType::cpu, DType::bf16)) {
    refuse_precision("bf16 matmuls need oneDNN, and this build has none (install libdnnl-dev and rebuild)");
  }
  if (config.width % config.heads != 0) refuse(concat(config.heads, " heads do not divide the width ", config.width));
  const int n = config.devices;
  if (config.layout == "single" && n != 1) refuse("the single layout is one device");
  if ((config.layout == "pipeline" || config.layout == "hybrid") && n % 2 != 0) refuse("expected an even number");
  const int tensor_ways = config.layout == "tensor-parallel" ? n : config.layout == "hybrid" ? 2 : 1;
  if (config.heads % tensor_ways != 0) refuse(concat(tensor_ways, "-way tensor split of ", config.heads, " heads"));
  const int inputs = config.layout == "pipeline" ? config.micro_batches : 1;
  if (inputs < 1 || config.batch % inputs != 0) refuse(concat(inputs, " micro-batches do not divide ", config.batch));
  const int data_ways = config.layout == "data-parallel" ? n
                        : config.layout == "pipeline"    ? n / 2
                        : config.layout == "hybrid"      ? n / 2
                                                         : 1;
  if ((config.batch / inputs) % data_ways != 0) {
    refuse(concat("a data split ", data_ways, " ways of ", config.batch / inputs, " sequences"));
  }
  Gpt gpt{.config = config, .graph = std::make_unique<Graph>(config.seed)};
  Builder(gpt).build();
  return gpt;
}

Feeds gpt_feeds(const Gpt& gpt, const HostTensor& inputs, const HostTensor& targets) {
  const int64_t rows = gpt.rows_per_input(), t = gpt.config.context;
  if (gpt.token_inputs.size() == 1) return {{gpt.token_inputs[0], inputs}, {gpt.target_inputs[0], targets}};
  Feeds feeds;
  for (size_t m = 0; m < gpt.token_inputs.size(); ++m) {
    const int64_t start = static_cast<int64_t>(m) * rows;
    feeds[gpt.token_inputs[m]] = block_of(inputs, {start, 0}, Shape{rows, t});
    feeds[gpt.target_inputs[m]] = block_of(targets, {start, 0}, Shape{rows, t});
  }
  return feeds;
}

}  // namespace tessel::models

namespace tessel::models {

HostTensor drawn_tokens(const std::vector<HostTensor>& fetched) {
  for (const HostTensor& tokens : fetched) {
    if (tokens.defined()) return tokens;
  }
  throw Error::FailedPrecondition("no copy of the drawn tokens is on this rank (expected one on every device)");
}

Feeds gpt_sample_feeds(const Gpt& gpt, const std::vector<std::vector<int32_t>>& contexts, uint64_t seed,
                       int64_t draw) {
  const int64_t rows = gpt.rows_per_input(), t = gpt.config.context, v = gpt.config.vocab;
  if (static_cast<int64_t>(contexts.size()) != rows) {
    throw Error::InvalidArgument(concat("the sampler continues ", rows, " rows at once, got ", contexts.size()));
  }
  HostTensor tokens(Shape{rows, t}, DType::i64), select(Shape{rows, t, 1}, DType::f32),
      noise(Shape{rows, v}, DType::f32);
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<int32_t>& context = contexts[r];
    if (context.empty()) throw Error::InvalidArgument(concat("sample row ", r, " has no tokens to continue"));
    const int64_t length = std::min<int64_t>(t, static_cast<int64_t>(context.size()));
    const int64_t from = static_cast<int64_t>(context.size()) - length;
    for (int64_t i = 0; i < t; ++i) {
      // Positions after the context see nothing the causal mask lets the chosen one see.
      tokens.data<int64_t>()[r * t + i] = i < length ? context[from + i] : 0;
      select.data<float>()[r * t + i] = i == length - 1 ? 1.0f : 0.0f;
    }
    for (int64_t c = 0; c < v; ++c) {
      if (gpt.config.temperature <= 0) break;
      // Row r's noise of draw d is the same whatever the number of rows.
      const uint64_t stream = mix64(seed ^ mix64(static_cast<uint64_t>(draw)));
      const double u = std::max(1e-12, static_cast<double>(uniform_at(stream, static_cast<uint64_t>(r * v + c))));
      noise.data<float>()[r * v + c] = static_cast<float>(-std::log(-std::log(u)));
    }
  }
  return {{gpt.token_inputs[0], tokens}, {"sample/select", select}, {"sample/noise", noise}};
}

}  // namespace tessel::models
