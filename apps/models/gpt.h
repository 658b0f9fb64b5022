// A decoder-only transformer (GPT) in the DSL: token and position embeddings, `layers`
// pre-LayerNorm blocks of causal multi-head self-attention and a GELU MLP, a final LayerNorm and
// an output head, trained with AdamW, a warmup + cosine schedule, clipping by global norm and
// no weight decay on biases and norm scales.
//
// One graph, laid out five ways by a few pins (the compiler chooses everything else):
//   single           one device
//   data-parallel    tokens S(0), parameters B
//   tensor-parallel  Megatron: q, k, v and the MLP's first matrix split by columns (attention by
//                    heads), the attention output and the MLP's second matrix by rows; their
//                    products are P(sum), all-reduced to B before the residual add
//   pipeline         embeddings and the first half of the blocks on the first half of the
//                    devices, the rest on the second half, each stage data-parallel, the batch
//                    in micro-batches
//   hybrid           a (devices/2) x 2 mesh: data x tensor
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graph/graph.h"

namespace tessel::models {

struct GptConfig {
  int64_t vocab = 96, context = 64, width = 128, heads = 4, layers = 4;
  int64_t batch = 32;  // sequences per step (the global batch)
  int micro_batches = 4;  // pipeline only
  int devices = 1;
  std::string layout = "single";
  // Training.
  double lr = 3e-3, min_lr = 3e-4, weight_decay = 0.1, clip = 1.0;
  int64_t warmup_steps = 20, total_steps = 1000;
  uint64_t seed = 1;
  // Sampling (evaluation only): logits are divided by this before drawing.
  double temperature = 0.8;
  // Mixed precision: bf16 runs every product (the projections, the attention's scores and
  // weighted values, the MLP and the head) on bf16 operands, with f32 accumulation, and takes
  // the product back to f32: bf16 activations and weights are what the matmuls read (and what
  // their gradients keep), while the f32 weights stay the master copy and AdamW's state, the
  // embeddings, norms, softmax, gelu, residuals and loss stay f32. Needs oneDNN (libdnnl-dev).
  DType matmuls = DType::f32;
  // bf16 activations as well: each parameter is cast to bf16 where it is used, and the residual
  // stream, the attention, the norms' and MLP's outputs and every gradient of them are bf16 (each
  // op computes in f32 and rounds its result); the logits are cast to f32 for the loss, and the
  // parameters' gradients to f32 for the f32 master weights and AdamW. Needs matmuls bf16.
  DType activations = DType::f32;
};

struct Gpt {
  GptConfig config;
  std::unique_ptr<Graph> graph{};
  Placement placement{};  // where tensors nothing pins live
  // One entry per micro-batch (one without a pipeline): inputs "tokens<m>" and "targets<m>"
  // [rows, context] i64, the logits [rows, context, vocab] of those rows, and the mean loss.
  std::vector<std::string> token_inputs{}, target_inputs{};
  std::vector<Tensor> logits{};
  Tensor loss{};  // the mean over the whole batch
  // The sampler, evaluated with the first micro-batch's tokens: feed "sample/select" [rows,
  // context, 1], one-hot at the position to continue from, and "sample/noise" [rows, vocab],
  // Gumbel noise (zeros: greedy). next[d] [rows] i64 is the token drawn for each row, copied to
  // device d: a fetch is read on its placement's first device, so with one copy per device every
  // rank of any layout gets the tokens and feeds the same next draw. Evaluate all of them and
  // take the one this rank holds (drawn_tokens).
  std::vector<Tensor> next{};
  int64_t rows_per_input() const { return config.batch / static_cast<int64_t>(token_inputs.size()); }
};

std::vector<std::string> gpt_layout_names();
// Error::InvalidArgument for a configuration the layout cannot be laid over (heads or widths the
// tensor split does not divide, a batch the micro-batches or the data split do not divide).
Gpt build_gpt(const GptConfig& config);

// Feeds of a batch: inputs and targets [batch, context] cut into the model's micro-batches.
Feeds gpt_feeds(const Gpt& gpt, const HostTensor& inputs, const HostTensor& targets);
// The tokens of an evaluation of gpt.next: the copy this rank holds.
HostTensor drawn_tokens(const std::vector<HostTensor>& fetched);
// Feeds of the sampler: row r continues `contexts[r]` (its last `context` tokens), with noise
// drawn from (seed, draw). Evaluate gpt.next with them.
Feeds gpt_sample_feeds(const Gpt& gpt, const std::vector<std::vector<int32_t>>& contexts, uint64_t seed,
                       int64_t draw);

}  // namespace tessel::models
