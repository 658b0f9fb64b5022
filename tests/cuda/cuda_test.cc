// CUDA kernels against the CPU kernels, and NCCL. Skips, saying why, where no GPU is present.
#include "comm/nccl_communicator.h"
#include "devices/cuda_device.h"
#include "ops/registry.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

#define SKIP_WITHOUT_GPU()                                                          \
  do {                                                                              \
    const cuda::DeviceCount devices = cuda::device_count();                         \
    if (devices.count == 0) GTEST_SKIP() << "no CUDA GPU here: " << devices.reason; \
  } while (0)

// Runs `op` on cuda and on cpu over the same inputs; returns (cuda result, cpu result).
std::pair<HostTensor, HostTensor> run_both(const std::string& op, const std::vector<HostTensor>& inputs,
                                           const Shape& output_shape, const Attributes& attrs = {}) {
  HostTensor cpu(output_shape, f32), gpu(output_shape, f32);
  std::vector<TensorView> host_inputs, device_inputs;
  std::vector<void*> buffers;
  for (const HostTensor& in : inputs) {
    host_inputs.push_back(in.view());
    void* device = cuda::allocate(in.nbytes());
    cuda::copy_to_device(device, in.raw(), in.nbytes());
    buffers.push_back(device);
    device_inputs.push_back({device, in.shape(), f32, DeviceType::cuda});
  }
  void* device_output = cuda::allocate(gpu.nbytes());
  buffers.push_back(device_output);
  const std::vector<TensorView> host_out{cpu.view()};
  const std::vector<TensorView> device_out{{device_output, output_shape, f32, DeviceType::cuda}};
  OpRegistry::global().kernel(op, DeviceType::cpu, f32)(KernelContext{host_inputs, host_out, attrs});
  OpRegistry::global().kernel(op, DeviceType::cuda, f32)(KernelContext{device_inputs, device_out, attrs});
  cuda::synchronize();
  cuda::copy_to_host(gpu.raw(), device_output, gpu.nbytes());
  for (void* buffer : buffers) cuda::release(buffer);
  return {gpu, cpu};
}

void expect_close(const HostTensor& actual, const HostTensor& expected, float tolerance) {
  ASSERT_EQ(actual.numel(), expected.numel());
  for (int64_t i = 0; i < actual.numel(); ++i) EXPECT_NEAR(actual.get(i), expected.get(i), tolerance) << i;
}

TEST(Cuda, DeviceCountNeverCrashesAndExplainsZero) {
  const cuda::DeviceCount devices = cuda::device_count();
  EXPECT_GE(devices.count, 0);
  if (devices.count == 0) {
    EXPECT_FALSE(devices.reason.empty());
  }
}

TEST(Cuda, KernelsAreRegisteredForCuda) {
  for (const char* op : {"relu", "relu_grad", "add", "sub", "mul", "div", "matmul"}) {
    EXPECT_TRUE(OpRegistry::global().has_kernel(op, DeviceType::cuda, f32)) << op;
  }
}

TEST(Nccl, ReportsItsVersion) { EXPECT_EQ(nccl::version().rfind("2.", 0), 0u) << nccl::version(); }

TEST(Cuda, ElementwiseMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const HostTensor a = testing::random_tensor({1000, 33}, 1), b = testing::random_tensor({1000, 33}, 2, 0.5f, 1.5f);
  for (const char* op : {"add", "sub", "mul", "div", "relu_grad"}) {
    auto [gpu, cpu] = run_both(op, {a, b}, a.shape());
    expect_close(gpu, cpu, 1e-6f);
  }
  auto [gpu, cpu] = run_both("relu", {a}, a.shape());
  expect_close(gpu, cpu, 0);
}

TEST(Cuda, MatmulMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const HostTensor a = testing::random_tensor({64, 96}, 3), b = testing::random_tensor({96, 48}, 4);
  auto [gpu, cpu] = run_both("matmul", {a, b}, {64, 48});
  expect_close(gpu, cpu, 1e-4f);
  const HostTensor bt = testing::random_tensor({48, 96}, 5);
  auto [gpu_t, cpu_t] = run_both("matmul", {a, bt}, {64, 48}, {{"transpose_b", true}});
  expect_close(gpu_t, cpu_t, 1e-4f);
}

TEST(Nccl, AllReduceOverLocalGpus) {
  SKIP_WITHOUT_GPU();
  const int count = cuda::device_count().count;
  nccl::LocalCommunicators communicators(count);
  // One GPU still exercises NCCL (a one-member all-reduce is the identity).
  std::vector<float*> buffers;
  const size_t n = 1024;
  for (int d = 0; d < count; ++d) {
    std::vector<float> values(n, static_cast<float>(d + 1));
    cuda::set_device(d);
    buffers.push_back(static_cast<float*>(cuda::allocate(n * sizeof(float))));
    cuda::copy_to_device(buffers.back(), values.data(), n * sizeof(float));
  }
  communicators.all_reduce_sum(buffers, n);
  std::vector<float> result(n);
  cuda::set_device(0);
  cuda::copy_to_host(result.data(), buffers[0], n * sizeof(float));
  for (float v : result) ASSERT_EQ(v, count * (count + 1) / 2.0f);
  for (float* buffer : buffers) cuda::release(buffer);
}

}  // namespace
}  // namespace tessel
