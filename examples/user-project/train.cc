// A user's own model: a Megatron-style MLP, tensor-parallel over one CPU device per process
// (2 at least). Under tessel-launch each process is one rank of the job; started alone, it runs
// both devices itself. Each rank checks its shards of the trained weights, and rank 0 the
// losses, against the same graph trained on one device.
#include <tessel/tessel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>

using namespace tessel;

int main(int, char** argv) {
  init_logging(argv[0]);
  std::optional<comm::JobConfig> config = comm::job_config_from_environment();
  std::unique_ptr<comm::Job> job = config ? std::make_unique<comm::Job>(*config) : nullptr;
  const int ranks = job ? job->world_size() : 1, rank = job ? job->rank() : 0;

  Graph g(/*seed=*/11);
  const Placement devices = Placement::cpu(std::max(2, ranks));
  Tensor x = g.input("x", {32, 24});
  Tensor target = g.input("target", {32, 8});
  Tensor w1 = g.param("w1", {24, 64}, init::normal(0.2));
  Tensor b1 = g.param("b1", {64});
  Tensor w2 = g.param("w2", {64, 8}, init::normal(0.125));
  pin(x, devices, {B});
  pin(w1, devices, {S(1)});  // column-parallel
  pin(b1, devices, {S(0)});
  pin(w2, devices, {S(0)});  // row-parallel: a partial product per device, then all-reduced
  Tensor y = to(matmul(gelu(bias_add(matmul(x, w1), b1)), w2), {B});
  Tensor error = y - target;
  Tensor loss = mean(error * error);
  g.minimize(loss, AdamW{.lr = 1e-2});

  HostTensor xs(Shape{32, 24}, f32), ts(Shape{32, 8}, f32);
  for (int64_t i = 0; i < xs.numel(); ++i) xs.set(i, std::sin(i * 0.29));
  for (int64_t i = 0; i < ts.numel(); ++i) ts.set(i, std::cos(i * 0.13));
  const Feeds feeds{{"x", xs}, {"target", ts}};

  double worst = 0, first = 0, last = 0;
  {
    Session parallel(g, {loss}, {.placement = devices, .job = job.get()});
    Session one_device(g, {loss}, {.use_interpreter = true});
    for (int step = 0; step < 40; ++step) {
      const HostTensor a = parallel.step(feeds)[0];  // fetched on rank 0 (the first device)
      const double b = one_device.step(feeds)[0].get(0);
      if (!a.defined()) continue;
      worst = std::max(worst, std::abs(a.get(0) - b) / std::abs(b));
      if (step == 0) first = a.get(0);
      last = a.get(0);
    }
    for (const char* name : {"w1", "b1", "w2"}) {
      const HostTensor whole = one_device.variable(name);
      for (const VariableShardValue& shard : parallel.local_shards(name)) {
        const HostTensor expected = block_of(whole, shard.starts, shard.value.shape());
        for (int64_t i = 0; i < expected.numel(); ++i) {
          worst = std::max(worst, std::abs(shard.value.get(i) - expected.get(i)));
        }
      }
    }
  }  // the session drains before the job ends
  if (job) job->finish();
  if (rank == 0) std::printf("loss %.6f -> %.6f over 40 steps\n", first, last);
  std::printf("rank %d of %d (%d devices): largest difference from one device %.1e\n", rank, ranks,
              devices.size(), worst);
  return worst < 1e-5 && (rank != 0 || last < first) ? 0 : 1;
}
