// Matmul speed beside the machine's limit (issue 18's first measurement): the FMA peak of one
// core, measured here, then GFLOP/s at the shapes of the benchmark MLP's training step
// (1024-4096-4096-1024, batch 256: forward, and backward's input and weight gradients) for
//   - OpenBLAS sgemm, as Tessel's matmul kernel calls it today (OPENBLAS_CORETYPE as the
//     environment sets it);
//   - oneDNN's sgemm, and its matmul primitive in f32 (made once per shape, then reused);
//   - oneDNN's matmul primitive in bf16 with f32 accumulation and f32 output.
// Every library runs on `--threads` threads (OpenBLAS's pool; oneDNN's OpenMP team: Debian's
// oneDNN is built for OpenMP, without the threadpool interface). Each figure is the best of
// repeated runs. Each result is checked against OpenBLAS's (bf16 within bf16's rounding).
#include <cblas.h>
#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "apps/cli/flags.h"

extern "C" void openblas_set_num_threads(int threads);
extern "C" void omp_set_num_threads(int threads);

namespace {

using Clock = std::chrono::steady_clock;

// Best seconds of `run` over repeats that add up to at least `budget` seconds (one warm-up first).
double best_seconds(const std::function<void()>& run, double budget) {
  run();
  double best = 1e30, total = 0;
  for (int i = 0; i < 1000 && (total < budget || i < 3); ++i) {
    const auto start = Clock::now();
    run();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::min(best, seconds);
    total += seconds;
  }
  return best;
}

// 12 independent chains of fused multiply-adds: more in flight than the FMA latency times the
// ports needs. The empty asm keeps every chain in a register of its own (an array of them was
// kept in memory, and measured a third of the peak). Returns FLOP/s of one thread.
#define TESSEL_FMA_CHAINS(vector, set1, fmadd, store, lanes)                                                    \
  vector a0 = set1(0.1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,      \
         a10 = a0, a11 = a0;                                                                                     \
  const vector x = set1(0.999999f), y = set1(1e-7f);                                                           \
  const auto start = Clock::now();                                                                              \
  for (int64_t n = 0; n < iterations; ++n) {                                                                    \
    a0 = fmadd(a0, x, y), a1 = fmadd(a1, x, y), a2 = fmadd(a2, x, y), a3 = fmadd(a3, x, y);                     \
    a4 = fmadd(a4, x, y), a5 = fmadd(a5, x, y), a6 = fmadd(a6, x, y), a7 = fmadd(a7, x, y);                     \
    a8 = fmadd(a8, x, y), a9 = fmadd(a9, x, y), a10 = fmadd(a10, x, y), a11 = fmadd(a11, x, y);                 \
    __asm__ volatile(""                                                                                         \
                     : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8), \
                       "+v"(a9), "+v"(a10), "+v"(a11));                                                         \
  }                                                                                                             \
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();                         \
  float out[lanes];                                                                                             \
  store(out, a0);                                                                                               \
  if (out[0] == 12345.f) std::printf(" ");                                                                      \
  return 2.0 * lanes * 12 * static_cast<double>(iterations) / seconds;

__attribute__((target("avx512f"))) double fma_peak_avx512(int64_t iterations) {
  TESSEL_FMA_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps, 16)
}
__attribute__((target("avx2,fma"))) double fma_peak_avx2(int64_t iterations) {
  TESSEL_FMA_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps, 8)
}

struct Shape {
  const char* what;
  int64_t m, n, k;
  bool ta, tb;
};

std::vector<float> random_floats(int64_t count, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) v = uniform(random);
  return values;
}

// The largest difference from `reference`, relative to its largest magnitude.
double difference(const std::vector<float>& result, const std::vector<float>& reference) {
  double largest = 0, scale = 0;
  for (size_t i = 0; i < reference.size(); ++i) {
    largest = std::max(largest, static_cast<double>(std::fabs(result[i] - reference[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(reference[i])));
  }
  return largest / std::max(scale, 1e-30);
}

}  // namespace

int main(int argc, char** argv) {
  namespace cli = tessel::cli;
  int threads = 1;
  double budget = 0.5;
  CLI::App app("matmul GFLOP/s of OpenBLAS and oneDNN (f32, bf16) at the MLP's shapes, beside one core's FMA peak",
               "tessel-bench-matmul");
  cli::style(app);
  app.add_option("--threads", threads, "threads every library runs on")->check(cli::integer_in(1, 256));
  app.add_option("--seconds", budget, "time spent on each figure")->check(cli::number_in(0.01, 60));
  cli::parse(app, argc, argv);
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);

  const bool avx512 = __builtin_cpu_supports("avx512f");
  double peak = 0;
  for (int repeat = 0; repeat < 5; ++repeat) {
    peak = std::max(peak, avx512 ? fma_peak_avx512(20'000'000) : fma_peak_avx2(20'000'000));
  }
  std::printf("measured FMA peak of one core: %.1f GFLOP/s (%s, 12 chains of f32 fused multiply-adds in registers)\n",
              peak / 1e9,
              avx512 ? "AVX-512" : "AVX2");
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::printf("%d thread(s); OPENBLAS_CORETYPE=%s; peak of %d core(s): %.1f GFLOP/s\n\n", threads,
              coretype ? coretype : "(unset)", threads, threads * peak / 1e9);

  const std::vector<Shape> shapes = {
      {"forward 1024->4096", 256, 4096, 1024, false, false},  {"forward 4096->4096", 256, 4096, 4096, false, false},
      {"forward 4096->1024", 256, 1024, 4096, false, false},  {"input grad 4096<-4096", 256, 4096, 4096, false, true},
      {"weight grad 4096x4096", 4096, 4096, 256, true, false}, {"weight grad 1024x4096", 1024, 4096, 256, true, false},
  };
  std::printf("%-24s %-18s %15s %15s %15s %15s   %s\n", "shape", "M x N x K", "OpenBLAS f32", "oneDNN sgemm",
              "oneDNN f32", "oneDNN bf16", "(GFLOP/s, % of peak)");
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  bool agree = true;
  for (const Shape& s : shapes) {
    const std::vector<float> a = random_floats(s.m * s.k, 1), b = random_floats(s.k * s.n, 2);
    std::vector<float> reference(static_cast<size_t>(s.m * s.n)), c(reference.size());
    const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    const double flops = 2.0 * s.m * s.n * s.k;
    const auto report = [&](double seconds) {
      char text[32];
      std::snprintf(text, sizeof text, "%6.1f (%3.0f%%)", flops / seconds / 1e9, 100 * flops / seconds / (threads * peak));
      return std::string(text);
    };
    const double openblas = best_seconds(
        [&] {
          cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k,
                      1.0f, a.data(), lda, b.data(), ldb, 0.0f, reference.data(), s.n);
        },
        budget);
    const double sgemm = best_seconds(
        [&] {
          dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                     c.data(), s.n);
        },
        budget);
    const double sgemm_error = difference(c, reference);
    // The primitive: a transposed operand is a memory descriptor with swapped strides.
    const auto matmul_seconds = [&](dt type, double* error) {
      const dnnl::memory::desc a_desc({s.m, s.k}, type, s.ta ? dnnl::memory::dims{1, s.m} : dnnl::memory::dims{s.k, 1});
      const dnnl::memory::desc b_desc({s.k, s.n}, type, s.tb ? dnnl::memory::dims{1, s.k} : dnnl::memory::dims{s.n, 1});
      const dnnl::memory::desc c_desc({s.m, s.n}, dt::f32, tag::ab);
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_desc, b_desc, c_desc), engine);
      const dnnl::matmul product(pd);
      dnnl::memory a_mem({{s.ta ? s.k : s.m, s.ta ? s.m : s.k}, dt::f32, tag::ab}, engine, const_cast<float*>(a.data()));
      dnnl::memory b_mem({{s.tb ? s.n : s.k, s.tb ? s.k : s.n}, dt::f32, tag::ab}, engine, const_cast<float*>(b.data()));
      dnnl::memory a_in = a_mem, b_in = b_mem;
      if (type != dt::f32) {  // bf16 operands, converted once, outside the timing (a bf16 model holds them so)
        a_in = dnnl::memory({a_mem.get_desc().dims(), type, tag::ab}, engine);
        b_in = dnnl::memory({b_mem.get_desc().dims(), type, tag::ab}, engine);
        dnnl::reorder(a_mem, a_in).execute(stream, a_mem, a_in);
        dnnl::reorder(b_mem, b_in).execute(stream, b_mem, b_in);
        stream.wait();
      }
      dnnl::memory a_arg(a_desc, engine, a_in.get_data_handle()), b_arg(b_desc, engine, b_in.get_data_handle());
      dnnl::memory c_mem(c_desc, engine, c.data());
      const double seconds = best_seconds(
          [&] {
            product.execute(stream, {{DNNL_ARG_SRC, a_arg}, {DNNL_ARG_WEIGHTS, b_arg}, {DNNL_ARG_DST, c_mem}});
            stream.wait();
          },
          budget);
      *error = difference(c, reference);
      return seconds;
    };
    double f32_error = 0, bf16_error = 0;
    const double f32 = matmul_seconds(dt::f32, &f32_error);
    const double bf16 = matmul_seconds(dt::bf16, &bf16_error);
    char dims[32];
    std::snprintf(dims, sizeof dims, "%lldx%lldx%lld%s%s", static_cast<long long>(s.m), static_cast<long long>(s.n),
                  static_cast<long long>(s.k), s.ta ? " Ta" : "", s.tb ? " Tb" : "");
    std::printf("%-24s %-18s %15s %15s %15s %15s\n", s.what, dims, report(openblas).c_str(), report(sgemm).c_str(),
                report(f32).c_str(), report(bf16).c_str());
    // f32: the same sums in another order; bf16: 8 bits of mantissa per operand, over K terms.
    const bool same = sgemm_error < 1e-5 && f32_error < 1e-5 && bf16_error < 3e-2;
    if (!same) {
      std::printf("  results differ from OpenBLAS's: sgemm %.2e, f32 %.2e, bf16 %.2e (relative to the largest)\n",
                  sgemm_error, f32_error, bf16_error);
    }
    agree = agree && same;
  }
  std::printf("\nevery result matches OpenBLAS's (f32 within 1e-5, bf16 within 3e-2 of the largest entry): %s\n",
              agree ? "yes" : "NO");
  return agree ? 0 : 1;
}
