// matmul of bf16 tensors through oneDNN's matmul primitive: bf16 operands, f32 accumulation,
// bf16 result (the same rounding as casting the f32 product). AVX-512 BF16's dot products do
// twice the work of an f32 FMA: tessel-bench-matmul measured 186 to 219 GFLOP/s on one core
// here, where f32 peaks at 115.
//
// Threads: Debian's oneDNN is built for OpenMP, without the threadpool interface. So the
// product is split into blocks of rows over the device's pool (parallel_for), one block per
// thread, and each block runs on one OpenMP thread: no second pool competes for the cores.
//
// Primitives are made once per block shape and kept (a process-wide cache, under a mutex);
// a step reuses them. Batched products run a block per batch and row range.
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "devices/cpu_device.h"
#include "ops/kernels/cpu/matmul_layout.h"
#include "ops/registry.h"

extern "C" void omp_set_num_threads(int threads);

namespace tessel::cpu {
namespace {

using dt = dnnl::memory::data_type;

const dnnl::engine& engine() {
  static const dnnl::engine made(dnnl::engine::kind::cpu, 0);
  return made;
}

// One block: rows x n = (rows x k) . (k x n), each operand in its storage order. lda and ldb are
// the operands' row strides in storage.
struct BlockShape {
  int64_t rows, n, k, lda, ldb;
  bool ta, tb;
  auto key() const { return std::tie(rows, n, k, lda, ldb, ta, tb); }
  friend bool operator<(const BlockShape& x, const BlockShape& y) { return x.key() < y.key(); }
};

struct Block {
  dnnl::memory::desc a, b, c, scratchpad;
  dnnl::matmul product;
};

const Block& block_for(const BlockShape& s) {
  static std::mutex mutex;
  static std::map<BlockShape, std::unique_ptr<Block>> blocks;
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<Block>& block = blocks[s];
  if (!block) {
    // A transposed operand is a descriptor whose strides run the other way.
    const dnnl::memory::desc a({s.rows, s.k}, dt::bf16, s.ta ? dnnl::memory::dims{1, s.lda} : dnnl::memory::dims{s.lda, 1});
    const dnnl::memory::desc b({s.k, s.n}, dt::bf16, s.tb ? dnnl::memory::dims{1, s.ldb} : dnnl::memory::dims{s.ldb, 1});
    const dnnl::memory::desc c({s.rows, s.n}, dt::bf16, dnnl::memory::dims{s.n, 1});
    // Blocks run at once on the pool's threads: each brings its own scratchpad (the library's
    // own is shared unless oneDNN was built for concurrent execution, and Debian's is not).
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, engine());
    block = std::make_unique<Block>(Block{a, b, c, pd.scratchpad_desc(), dnnl::matmul(pd)});
  }
  return *block;
}

void run_block(const BlockShape& shape, const void* a, const void* b, void* c) {
  thread_local const bool one_thread = (omp_set_num_threads(1), true);  // this pool thread's OpenMP team
  (void)one_thread;
  thread_local dnnl::stream stream(engine());
  thread_local std::vector<std::byte> scratch;
  const Block& block = block_for(shape);
  if (scratch.size() < block.scratchpad.get_size()) scratch.resize(block.scratchpad.get_size());
  dnnl::memory a_mem(block.a, engine(), const_cast<void*>(a)), b_mem(block.b, engine(), const_cast<void*>(b));
  dnnl::memory c_mem(block.c, engine(), c), scratch_mem(block.scratchpad, engine(), scratch.data());
  block.product.execute(stream, {{DNNL_ARG_SRC, a_mem},
                                 {DNNL_ARG_WEIGHTS, b_mem},
                                 {DNNL_ARG_DST, c_mem},
                                 {DNNL_ARG_SCRATCHPAD, scratch_mem}});
  stream.wait();
}

// Rows of a block: one block per pool thread, of at least 32 rows (smaller ones lose more to
// the call than they gain).
int64_t rows_per_block(int64_t rows) {
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(parallel_for_threads(), rows / 32));
  return (rows + blocks - 1) / blocks;
}

void matmul_bf16(const KernelContext& c) {
  const MatmulLayout l = matmul_layout(c);
  const auto* pa = static_cast<const uint16_t*>(c.inputs[0].data);
  const auto* pb = static_cast<const uint16_t*>(c.inputs[1].data);
  auto* py = static_cast<uint16_t*>(c.outputs[0].data);
  if (c.outputs[0].numel() == 0) return;
  if (l.k == 0) {
    std::fill(py, py + c.outputs[0].numel(), uint16_t{0});  // bf16 zero
    return;
  }
  const int64_t rows = l.tall() ? l.batches * l.m : l.m, products = l.tall() ? 1 : l.batches;
  const int64_t lda = l.ta ? l.m : l.k, ldb = l.tb ? l.k : l.n;
  const int64_t block_rows = rows_per_block(rows);
  const int64_t per_product = (rows + block_rows - 1) / block_rows;
  parallel_for(products * per_product, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t product = i / per_product, first = (i % per_product) * block_rows;
      const int64_t count = std::min(block_rows, rows - first);
      const uint16_t* a_product = pa + (l.a_batched ? product * l.a_matrix : 0);
      const uint16_t* b_product = pb + (l.b_batched ? product * l.b_matrix : 0);
      // Rows first..first+count of A: down its rows, or along them when A is stored transposed.
      const uint16_t* a_rows = a_product + (l.ta ? first : first * lda);
      run_block({count, l.n, l.k, lda, ldb, l.ta, l.tb}, a_rows, b_product, py + product * l.m * l.n + first * l.n);
    }
  });
}

TESSEL_KERNEL("matmul", cpu, bf16, matmul_bf16);

}  // namespace
}  // namespace tessel::cpu
