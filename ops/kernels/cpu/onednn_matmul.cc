// Matmuls through oneDNN's matmul primitive:
// - "matmul" of bf16 tensors: bf16 operands, f32 accumulation, a bf16 result (the same rounding
//   as casting the f32 product). AVX-512 BF16's dot products do twice the work of an f32 FMA:
//   tessel-bench-matmul measured 186 to 219 GFLOP/s on one core here, where f32 peaks at 115.
//   f32 matmuls stay on OpenBLAS (matmul.cc), which that bench shows as fast here.
// - "fused_matmul" of f32 or bf16 operands (graph/fuse.cc): the product in the result's dtype,
//   its bias and activation applied by oneDNN to each block of rows while it is in cache
//   (post-ops), where the unfused plan makes a pass over memory for each.
//
// Threads: Debian's oneDNN is built for OpenMP, without the threadpool interface. So the
// product is split into blocks of rows over the device's pool (parallel_for), one block per
// thread, and each block runs on one OpenMP thread: no second pool competes for the cores.
//
// Primitives are made once per block shape and kept (a process-wide cache, under a mutex);
// a step reuses them. Batched products run a block per batch and row range.
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "devices/cpu_device.h"
#include "ops/kernels/cpu/matmul_layout.h"
#include "ops/kernels/cpu/vector_math.h"
#include "ops/registry.h"

extern "C" void omp_set_num_threads(int threads);

namespace tessel::cpu {
namespace {

using dt = dnnl::memory::data_type;

const dnnl::engine& engine() {
  static const dnnl::engine made(dnnl::engine::kind::cpu, 0);
  return made;
}

enum class Activation { none, relu, gelu };

// One block: rows x n = (rows x k) . (k x n), each operand in its storage order, then the
// epilogue. lda and ldb are the operands' row strides in storage.
struct BlockShape {
  int64_t rows, n, k, lda, ldb;
  bool ta, tb;
  dt operands = dt::bf16, result = dt::bf16;
  bool bias = false;  // of the result's type, one per column
  Activation activation = Activation::none;
  auto key() const { return std::tie(rows, n, k, lda, ldb, ta, tb, operands, result, bias, activation); }
  friend bool operator<(const BlockShape& x, const BlockShape& y) { return x.key() < y.key(); }
};

struct Block {
  dnnl::memory::desc a, b, c, bias, scratchpad;
  dnnl::matmul product;
};

const Block& block_for(const BlockShape& s) {
  static std::mutex mutex;
  static std::map<BlockShape, std::unique_ptr<Block>> blocks;
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<Block>& block = blocks[s];
  if (!block) {
    // A transposed operand is a descriptor whose strides run the other way.
    const dnnl::memory::desc a({s.rows, s.k}, s.operands,
                               s.ta ? dnnl::memory::dims{1, s.lda} : dnnl::memory::dims{s.lda, 1});
    const dnnl::memory::desc b({s.k, s.n}, s.operands,
                               s.tb ? dnnl::memory::dims{1, s.ldb} : dnnl::memory::dims{s.ldb, 1});
    const dnnl::memory::desc c({s.rows, s.n}, s.result, dnnl::memory::dims{s.n, 1});
    const dnnl::memory::desc bias =
        s.bias ? dnnl::memory::desc({1, s.n}, s.result, dnnl::memory::dims{s.n, 1}) : dnnl::memory::desc();
    // Blocks run at once on the pool's threads: each brings its own scratchpad (the library's
    // own is shared unless oneDNN was built for concurrent execution, and Debian's is not).
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (s.activation != Activation::none) {
      dnnl::post_ops post;
      post.append_eltwise(
          1.0f, s.activation == Activation::relu ? dnnl::algorithm::eltwise_relu : dnnl::algorithm::eltwise_gelu_erf,
          0.0f, 0.0f);
      attr.set_post_ops(post);
    }
    const dnnl::matmul::desc desc = s.bias ? dnnl::matmul::desc(a, b, bias, c) : dnnl::matmul::desc(a, b, c);
    const dnnl::matmul::primitive_desc pd(desc, attr, engine());
    block = std::make_unique<Block>(Block{a, b, c, bias, pd.scratchpad_desc(), dnnl::matmul(pd)});
  }
  return *block;
}

void run_block(const BlockShape& shape, const void* a, const void* b, const void* bias, void* c) {
  thread_local const bool one_thread = (omp_set_num_threads(1), true);  // this pool thread's OpenMP team
  (void)one_thread;
  thread_local dnnl::stream stream(engine());
  thread_local std::vector<std::byte> scratch;
  const Block& block = block_for(shape);
  if (scratch.size() < block.scratchpad.get_size()) scratch.resize(block.scratchpad.get_size());
  dnnl::memory a_mem(block.a, engine(), const_cast<void*>(a)), b_mem(block.b, engine(), const_cast<void*>(b));
  dnnl::memory c_mem(block.c, engine(), c), scratch_mem(block.scratchpad, engine(), scratch.data());
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem}};
  if (shape.bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(block.bias, engine(), const_cast<void*>(bias)));
  block.product.execute(stream, args);
  stream.wait();
}

// Rows of a block: one block per pool thread, of at least 32 rows (smaller ones lose more to
// the call than they gain).
int64_t rows_per_block(int64_t rows) {
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(parallel_for_threads(), rows / 32));
  return (rows + blocks - 1) / blocks;
}

dt onednn_type(DType dtype) { return dtype == DType::bf16 ? dt::bf16 : dt::f32; }

// The product of inputs 0 and 1 into output 0, with `epilogue`'s result type, bias (input 2)
// and activation.
void matmul_blocks(const KernelContext& c, BlockShape epilogue) {
  const MatmulLayout l = matmul_layout(c);
  const auto* pa = static_cast<const std::byte*>(c.inputs[0].data);
  const auto* pb = static_cast<const std::byte*>(c.inputs[1].data);
  const void* bias = epilogue.bias ? c.inputs[2].data : nullptr;
  auto* py = static_cast<std::byte*>(c.outputs[0].data);
  const int64_t in_size = static_cast<int64_t>(size_of(c.inputs[0].dtype));
  const int64_t out_size = static_cast<int64_t>(size_of(c.outputs[0].dtype));
  if (c.outputs[0].numel() == 0) return;
  const int64_t rows = l.tall() ? l.batches * l.m : l.m, products = l.tall() ? 1 : l.batches;
  const int64_t lda = l.ta ? l.m : l.k, ldb = l.tb ? l.k : l.n;
  const int64_t block_rows = rows_per_block(rows);
  const int64_t per_product = (rows + block_rows - 1) / block_rows;
  parallel_for(products * per_product, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t product = i / per_product, first = (i % per_product) * block_rows;
      const int64_t count = std::min(block_rows, rows - first);
      const std::byte* a_product = pa + (l.a_batched ? product * l.a_matrix : 0) * in_size;
      const std::byte* b_product = pb + (l.b_batched ? product * l.b_matrix : 0) * in_size;
      // Rows first..first+count of A: down its rows, or along them when A is stored transposed.
      const std::byte* a_rows = a_product + (l.ta ? first : first * lda) * in_size;
      BlockShape shape = epilogue;
      shape.rows = count, shape.n = l.n, shape.k = l.k, shape.lda = lda, shape.ldb = ldb, shape.ta = l.ta,
      shape.tb = l.tb;
      run_block(shape, a_rows, b_product, bias, py + (product * l.m * l.n + first * l.n) * out_size);
    }
  });
}

void matmul_bf16(const KernelContext& c) {
  if (matmul_layout(c).k == 0) {
    auto* py = static_cast<uint16_t*>(c.outputs[0].data);
    std::fill(py, py + c.outputs[0].numel(), uint16_t{0});  // bf16 zero
    return;
  }
  matmul_blocks(c, {});
}

void fused_matmul(const KernelContext& c) {
  const std::string activation = c.attrs.has("activation") ? c.attrs.get_string("activation") : "none";
  BlockShape epilogue;
  epilogue.operands = onednn_type(c.inputs[0].dtype);
  epilogue.result = onednn_type(c.outputs[0].dtype);
  epilogue.bias = c.inputs.size() == 3;
  epilogue.activation = activation == "relu"   ? Activation::relu
                        : activation == "gelu" ? Activation::gelu
                                               : Activation::none;
  if (matmul_layout(c).k == 0) {  // oneDNN refuses it; every row is the epilogue of zeros
    const int64_t n = c.outputs[0].shape[c.outputs[0].shape.rank() - 1];
    for (int64_t j = 0; j < n; ++j) {
      float v = 0;
      if (epilogue.bias) {
        v = c.inputs[2].dtype == DType::bf16 ? bf16_to_float(static_cast<const uint16_t*>(c.inputs[2].data)[j])
                                             : static_cast<const float*>(c.inputs[2].data)[j];
      }
      if (epilogue.activation == Activation::relu) v = v > 0 ? v : 0;
      if (epilogue.activation == Activation::gelu) v *= normal_cdf(v);
      for (int64_t i = j; i < c.outputs[0].numel(); i += n) {
        if (c.outputs[0].dtype == DType::bf16) {
          static_cast<uint16_t*>(c.outputs[0].data)[i] = float_to_bf16(v);
        } else {
          static_cast<float*>(c.outputs[0].data)[i] = v;
        }
      }
    }
    return;
  }
  matmul_blocks(c, epilogue);
}

TESSEL_KERNEL("matmul", cpu, bf16, matmul_bf16);
TESSEL_KERNEL("fused_matmul", cpu, f32, fused_matmul);
TESSEL_KERNEL("fused_matmul", cpu, bf16, fused_matmul);

}  // namespace
}  // namespace tessel::cpu
