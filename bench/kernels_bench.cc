// Micro-benchmarks of CPU kernels and of one training step through the reference
// interpreter. They print figures (time, GFLOP/s, bytes/s) and assert nothing.
//
//   build/bench/tessel-bench-kernels [--benchmark_filter=matmul]
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "devices/cpu_device.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"

namespace tessel {
namespace {

HostTensor filled(const Shape& shape, float value) {
  HostTensor t(shape, f32);
  std::fill(t.data<float>(), t.data<float>() + t.numel(), value);
  return t;
}

// Runs `fetch` of `graph` once per iteration on the interpreter.
void run_graph(benchmark::State& state, Graph& graph, const Feeds& feeds, const Tensor& fetch, double flops) {
  Interpreter interpreter(graph);
  for (auto _ : state) benchmark::DoNotOptimize(interpreter.evaluate(feeds, {fetch}));
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Matmul(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  Graph g;
  Tensor a = g.input("a", {m, k}), b = g.input("b", {k, n});
  run_graph(state, g, {{"a", filled({m, k}, 0.5f)}, {"b", filled({k, n}, 0.25f)}}, matmul(a, b),
            2.0 * static_cast<double>(m * k * n));
}
BENCHMARK(BM_Matmul)->Args({256, 1024, 4096})->Args({256, 4096, 1024})->Unit(benchmark::kMillisecond);

// The bf16 kernel (oneDNN, where Tessel was built with it): bf16 operands fed as they are.
void BM_MatmulBf16(benchmark::State& state) {
  if (!OpRegistry::global().has_kernel("matmul", DeviceType::cpu, DType::bf16)) {
    state.SkipWithError("built without oneDNN: no bf16 matmul kernel");
    return;
  }
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const auto bf16_filled = [](const Shape& shape, float value) {
    HostTensor t(shape, DType::bf16);
    std::fill(static_cast<uint16_t*>(t.raw()), static_cast<uint16_t*>(t.raw()) + t.numel(), float_to_bf16(value));
    return t;
  };
  Graph g;
  Tensor a = g.input("a", {m, k}, DType::bf16), b = g.input("b", {k, n}, DType::bf16);
  run_graph(state, g, {{"a", bf16_filled({m, k}, 0.5f)}, {"b", bf16_filled({k, n}, 0.25f)}}, matmul(a, b),
            2.0 * static_cast<double>(m * k * n));
}
BENCHMARK(BM_MatmulBf16)->Args({256, 1024, 4096})->Args({256, 4096, 1024})->Unit(benchmark::kMillisecond);

void BM_Elementwise(benchmark::State& state) {
  const int64_t n = state.range(0);
  Graph g;
  Tensor x = g.input("x", {n}), y = g.input("y", {n});
  Interpreter interpreter(g);
  const Feeds feeds{{"x", filled({n}, 0.5f)}, {"y", filled({n}, 2.0f)}};
  const Tensor sum_xy = x + y;
  for (auto _ : state) benchmark::DoNotOptimize(interpreter.evaluate(feeds, {sum_xy}));
  state.SetBytesProcessed(state.iterations() * n * 3 * 4);
}
BENCHMARK(BM_Elementwise)->Arg(1 << 20)->Arg(1 << 24)->Unit(benchmark::kMicrosecond);

void BM_Gelu(benchmark::State& state) {
  const int64_t n = state.range(0);
  Graph g;
  Tensor x = g.input("x", {n});
  Interpreter interpreter(g);
  const Feeds feeds{{"x", filled({n}, 0.5f)}};
  const Tensor y = gelu(x);
  for (auto _ : state) benchmark::DoNotOptimize(interpreter.evaluate(feeds, {y}));
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Gelu)->Arg(1 << 20)->Unit(benchmark::kMicrosecond);

// Element-wise kernels and row reductions called directly on buffers of 2^24 floats (64 MiB,
// past the caches), beside memcpy of one such buffer: GB/s counts every byte read and written
// (memcpy reads and writes its 64 MiB; add reads two tensors and writes one). A kernel at
// memory speed comes near memcpy's figure.
void BM_Memcpy(benchmark::State& state) {
  const size_t bytes = size_t{4} << 24;
  std::vector<char> from(bytes, 1), to(bytes, 0);
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), bytes);
    benchmark::DoNotOptimize(to.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 2 * bytes));
}
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();

// Inputs of f32 are filled with 0.5, integer ones (labels) with 0.
void BM_KernelBandwidth(benchmark::State& state, const char* op, std::vector<TensorType> types, Attributes attrs) {
  const OpDef& def = OpRegistry::global().op(op);
  const std::vector<TensorType> outputs = def.infer(InferContext{types, attrs});
  std::vector<HostTensor> buffers;
  std::vector<TensorView> in, out;
  int64_t bytes = 0;
  for (const TensorType& t : types) {
    buffers.push_back(t.dtype == f32 ? filled(t.shape, 0.5f) : HostTensor(t.shape, t.dtype));
    if (t.dtype != f32) std::memset(buffers.back().raw(), 0, buffers.back().nbytes());
  }
  for (size_t i = 0; i < types.size(); ++i)
    in.push_back({buffers[i].raw(), types[i].shape, types[i].dtype, DeviceType::cpu});
  for (const TensorType& t : outputs) buffers.push_back(HostTensor(t.shape, t.dtype));
  for (size_t i = 0; i < outputs.size(); ++i) {
    out.push_back({buffers[types.size() + i].raw(), outputs[i].shape, outputs[i].dtype, DeviceType::cpu});
  }
  for (const TensorView& v : in) bytes += static_cast<int64_t>(v.nbytes());
  for (const TensorView& v : out) bytes += static_cast<int64_t>(v.nbytes());
  const KernelFn kernel = OpRegistry::global().kernel(op, DeviceType::cpu, f32);
  // The machine's bandwidth drifts (a shared host): each iteration also copies as many bytes as
  // the kernel moves (bytes / 2 read, bytes / 2 written), so "vs_memcpy", the kernel's time over
  // the copy's, compares the two under the same conditions.
  std::vector<char> from(static_cast<size_t>(bytes / 2), 1), to(static_cast<size_t>(bytes / 2), 0);
  double kernel_seconds = 0, copy_seconds = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    kernel(KernelContext{in, out, attrs});
    benchmark::DoNotOptimize(out[0].data);
    const auto middle = std::chrono::steady_clock::now();
    std::memcpy(to.data(), from.data(), from.size());
    benchmark::DoNotOptimize(to.data());
    const double seconds = std::chrono::duration<double>(middle - start).count();
    kernel_seconds += seconds;
    copy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - middle).count();
    state.SetIterationTime(seconds);
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["vs_memcpy"] = kernel_seconds / copy_seconds;
}
const TensorType kRows{Shape{1 << 14, 1 << 10}, f32};  // 2^24 floats in rows of 1024
const TensorType kRow{Shape{1 << 10}, f32}, kLabels{Shape{1 << 14}, i64}, kScalar{Shape{}, f32};
BENCHMARK_CAPTURE(BM_KernelBandwidth, add, "add", {kRows, kRows}, {})->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_CAPTURE(BM_KernelBandwidth, mul, "mul", {kRows, kRows}, {})->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_CAPTURE(BM_KernelBandwidth, relu, "relu", {kRows}, {})->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_CAPTURE(BM_KernelBandwidth, gelu, "gelu", {kRows}, {})->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_CAPTURE(BM_KernelBandwidth, gelu_grad, "gelu_grad", {kRows, kRows}, {})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();
BENCHMARK_CAPTURE(BM_KernelBandwidth, softmax, "softmax", {kRows}, {{"axis", int64_t{-1}}})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();
BENCHMARK_CAPTURE(BM_KernelBandwidth, layer_norm, "layer_norm", {kRows, kRow, kRow}, {{"eps", 1e-5}})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();
BENCHMARK_CAPTURE(BM_KernelBandwidth, cross_entropy, "cross_entropy", {kRows, kLabels},
                  {{"reduction", std::string("mean")}})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();
BENCHMARK_CAPTURE(BM_KernelBandwidth, cross_entropy_grad, "cross_entropy_grad", {kRows, kLabels, kScalar},
                  {{"reduction", std::string("mean")}})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

// Forward, backward and SGD of an MLP 1024-4096-4096-1024, batch 256, f32.
void BM_MlpTrainStep(benchmark::State& state) {
  set_cpu_threads(static_cast<int>(state.range(0)));
  Graph g;
  Tensor x = g.input("x", {256, 1024}), target = g.input("target", {256, 1024});
  Tensor w1 = g.param("w1", {1024, 4096}, init::normal(0.02));
  Tensor w2 = g.param("w2", {4096, 4096}, init::normal(0.02));
  Tensor w3 = g.param("w3", {4096, 1024}, init::normal(0.02));
  Tensor error = matmul(relu(matmul(relu(matmul(x, w1)), w2)), w3) - target;
  Tensor loss = mean(error * error);
  g.minimize(loss, SGD{.lr = 1e-3});
  Interpreter interpreter(g);
  const Feeds feeds{{"x", filled({256, 1024}, 0.1f)}, {"target", filled({256, 1024}, 0.0f)}};
  for (auto _ : state) benchmark::DoNotOptimize(interpreter.train_step(feeds, {loss}));
  const double weights = 1024.0 * 4096 + 4096.0 * 4096 + 4096.0 * 1024;
  state.counters["GFLOP/s"] =
      benchmark::Counter(3 * 2 * 256 * weights * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_MlpTrainStep)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

}  // namespace
}  // namespace tessel

BENCHMARK_MAIN();
