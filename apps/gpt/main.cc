// tessel-gpt: trains the character-level GPT (apps/models/gpt.h) on Debian's fortunes, shows its
// progress, and samples text from it at the end.
//
//   tessel-gpt [--layout L] [--steps N] [--width 128 --heads 4 --layers 4 --context 64 --batch 32]
//              [--lr 3e-3] [--warmup 20] [--eval-every 50] [--sample 400 --prompt TEXT
//              --temperature 0.8 --seed 1] [--threads N] [--devices N] [--micro-batches 4]
//              [--data DIR] [--checkpoint-dir DIR --checkpoint-every K] [--resume] [--dump DIR]
//
// In one process it trains on one device (--layout single); under tessel-launch each process is a
// rank and the model is laid over the job's devices: data-parallel by default, or
// tensor-parallel, pipeline or hybrid (--devices, by default one per rank, or 4 for pipeline and
// hybrid over fewer ranks).
//
//   tessel-launch --nproc-per-node 2 -- tessel-gpt --layout tensor-parallel
//
// Progress is one line, refreshed in place on a terminal, and plain lines every --print-every steps
// otherwise: step / total, loss, the latest validation loss (every --eval-every steps, over
// --eval-batches batches of the validation fortunes), tokens per second, elapsed time and ETA. The
// rank that holds the loss prints it.
//
// Sampling runs through evaluation plans: every draw is one forward pass of the whole context (no
// KV cache), with Gumbel noise at --temperature (0: greedy); the drawn tokens are broadcast to
// every device, so every rank feeds the same next draw.
//
// --dump DIR (one process) writes what bench/gpt_torch_check.py needs to train the same model in
// PyTorch: the initial parameters, every step's batch, and the losses.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>

#include "apps/cli/flags.h"
#include "apps/cli/metrics.h"
#include "apps/models/gpt.h"
#include "apps/models/text.h"
#include "comm/job.h"
#include "core/logging.h"
#include "devices/cpu_device.h"
#include "runtime/session.h"

namespace {

using namespace tessel;

std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, seconds) + 0.5);
  return s >= 3600 ? concat(s / 3600, ":", s % 3600 / 60 < 10 ? "0" : "", s % 3600 / 60, ":", s % 60 < 10 ? "0" : "",
                            s % 60)
                   : concat(s / 60, ":", s % 60 < 10 ? "0" : "", s % 60);
}

void write_raw(const std::string& path, const void* bytes, size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
  if (!out) throw Error::FailedPrecondition(concat("cannot write ", path));
}

}  // namespace

int main(int argc, char** argv) {
  init_logging(argv[0]);
  models::GptConfig config;
  config.layout.clear();
  int64_t steps = 600, eval_every = 50, eval_batches = 8, print_every = 10, sample = 400, threads = 1, workers = 1, devices = 0;
  int64_t checkpoint_every = 0, seed = 1;
  bool resume = false, no_fuse = false;
  std::string prompt = "The ", data = "/usr/share/games/fortunes", checkpoint_dir, dump, matmuls = "f32", activations = "f32";
  const int64_t big = int64_t{1} << 40;
  CLI::App app("trains a character-level GPT on Debian's fortunes, then samples from it", "tessel-gpt");
  cli::style(app);
  app.add_option("--layout", config.layout, "single, data-parallel, tensor-parallel, pipeline or hybrid "
                                            "(default: single alone, data-parallel under tessel-launch)")
      ->check(CLI::IsMember({"single", "data-parallel", "tensor-parallel", "pipeline", "hybrid"}));
  app.add_option("--steps", steps, "training steps")->check(cli::integer_in(1, big));
  app.add_option("--matmuls", matmuls,
                 "the products' operand dtype: bf16 is mixed precision (oneDNN; f32 master weights, optimizer state "
                 "and every other op)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--activations", activations,
                 "the activations' dtype: bf16 stores every activation and its gradient in bf16 (each op computes "
                 "in f32 and rounds); needs --matmuls bf16")
      ->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--workers", workers, "actors that run at once on each device (scheduler threads per device)")
      ->check(cli::integer_in(1, 256));
  app.add_flag("--no-fuse", no_fuse, "no epilogue fusion: each matmul, bias_add and activation an actor of its own");
  app.add_option("--width", config.width, "the model's width")->check(cli::integer_in(1, 1 << 16));
  app.add_option("--heads", config.heads, "attention heads")->check(cli::integer_in(1, 1 << 10));
  app.add_option("--layers", config.layers, "transformer blocks")->check(cli::integer_in(1, 1 << 10));
  app.add_option("--context", config.context, "characters per sequence")->check(cli::integer_in(2, 1 << 14));
  app.add_option("--batch", config.batch, "sequences per step")->check(cli::integer_in(1, 1 << 20));
  app.add_option("--micro-batches", config.micro_batches, "micro-batches of the pipeline layout")
      ->check(cli::integer_in(1, 1 << 10));
  app.add_option("--lr", config.lr, "the peak learning rate")->check(cli::number_in(0, 10));
  app.add_option("--min-lr", config.min_lr, "the learning rate at the end of the cosine decay")
      ->check(cli::number_in(0, 10));
  CLI::Option* warmup = app.add_option("--warmup", config.warmup_steps, "linear warmup steps (default: a tenth of --steps, at most 20)")
                            ->check(cli::integer_in(0, big));
  app.add_option("--weight-decay", config.weight_decay, "AdamW's weight decay")->check(cli::number_in(0, 10));
  app.add_option("--clip", config.clip, "clips gradients to this global norm (0: off)")->check(cli::number_in(0, 1e9));
  app.add_option("--eval-every", eval_every, "steps between validation losses")->check(cli::integer_in(1, big));
  app.add_option("--eval-batches", eval_batches, "validation batches per validation loss")
      ->check(cli::integer_in(1, 1 << 16));
  app.add_option("--print-every", print_every, "steps between progress lines in a log")
      ->check(cli::integer_in(1, big));
  app.add_option("--sample", sample, "characters sampled at the end")->check(cli::integer_in(0, 1 << 20));
  app.add_option("--prompt", prompt, "the sample's beginning");
  app.add_option("--temperature", config.temperature, "the sample's temperature (0: greedy)")
      ->check(cli::number_in(0, 100));
  app.add_option("--seed", seed, "initial weights, batches and the sample")->check(cli::integer_in(0, big));
  app.add_option("--threads", threads, "kernel threads per device")
      ->check(cli::integer_in(1, 256))
      ->envname("TESSEL_CPU_THREADS");
  app.add_option("--devices", devices, "devices of the layout (default: one per rank, 4 for pipeline and hybrid over fewer ranks)")
      ->check(cli::integer_in(1, 1 << 16));
  app.add_option("--data", data, "the fortunes' folder")->type_name("DIR");
  app.add_option("--checkpoint-dir", checkpoint_dir, "where checkpoints go")->type_name("DIR");
  app.add_option("--checkpoint-every", checkpoint_every, "saves every K steps")->check(cli::integer_in(1, big));
  app.add_flag("--resume", resume, "goes on from the newest checkpoint in --checkpoint-dir");
  app.add_option("--dump", dump, "writes what bench/gpt_torch_check.py needs (one process)")->type_name("DIR");
  std::string metrics_path;
  app.add_option("--metrics", metrics_path, "writes step, loss, validation loss, tokens/s, learning rate and time "
                                            "as JSON Lines (scripts/plot.sh draws them)")
      ->type_name("FILE");
  cli::add_trace_flag(app);
  cli::parse(app, argc, argv);
  config.matmuls = dtype_named(matmuls);
  config.activations = dtype_named(activations);
  const bool warmup_set = warmup->count() > 0;
  if ((resume || checkpoint_every > 0) && checkpoint_dir.empty()) {
    std::fprintf(stderr, "tessel-gpt: --resume and --checkpoint-every need --checkpoint-dir\n");
    return 2;
  }
  try {
    std::optional<comm::JobConfig> job_config = comm::job_config_from_environment();
    std::unique_ptr<comm::Job> job = job_config ? std::make_unique<comm::Job>(*job_config) : nullptr;
    const int ranks = job ? job->world_size() : 1;
    if (config.layout.empty()) config.layout = ranks > 1 ? "data-parallel" : "single";
    const bool halves = config.layout == "pipeline" || config.layout == "hybrid";
    if (devices == 0) devices = config.layout == "single" ? 1 : halves && ranks < 4 && 4 % ranks == 0 ? 4 : ranks;
    if (!dump.empty() && ranks > 1) {
      std::fprintf(stderr, "tessel-gpt: --dump writes one process's run: start it without tessel-launch\n");
      return 2;
    }
    config.devices = static_cast<int>(devices);
    config.total_steps = steps;
    if (!warmup_set) config.warmup_steps = std::min<int64_t>(config.warmup_steps, steps / 10);
    config.seed = static_cast<uint64_t>(seed);
    const models::TextCorpus corpus = models::read_fortunes(data);
    const models::TextLoader train(&corpus.train, config.context, 11 * config.seed + 1);
    const models::TextLoader validation(&corpus.validation, config.context, 11 * config.seed + 2);
    models::Gpt gpt = models::build_gpt(config);
    // A rank with one device runs its kernels (and OpenBLAS) on the process's pool, which is as
    // wide as the machine unless told: --threads holds for it too.
    set_cpu_threads(static_cast<int>(threads));
    const auto batch_feeds = [&](const models::TextLoader& loader, int64_t first) {
      HostTensor inputs, targets;
      loader.batch(first, config.batch, inputs, targets);
      return models::gpt_feeds(gpt, inputs, targets);
    };
    Session session(*gpt.graph, {gpt.loss},
                    SessionOptions{.worker_threads = static_cast<int>(workers),
                                   .fuse = !no_fuse,
                                   .placement = gpt.placement,
                                   .kernel_threads_per_device = static_cast<int>(threads),
                                   .checkpoint_dir = checkpoint_dir,
                                   .checkpoint_every = checkpoint_every,
                                   .job = job.get()});
    const int rank = job ? job->rank() : 0;
    int64_t parameters = 0;
    for (const Tensor& p : gpt.graph->params()) parameters += gpt.graph->node(p.node()).outputs[0].shape.numel();
    if (rank == 0) {
      std::printf("tessel-gpt: %lld parameters (width %lld, %lld heads, %lld layers, context %lld), %s over %d "
                  "device%s in %d process%s; %lld fortunes from %s: %zu training and %zu validation characters\n",
                  static_cast<long long>(parameters), static_cast<long long>(config.width),
                  static_cast<long long>(config.heads), static_cast<long long>(config.layers),
                  static_cast<long long>(config.context), config.layout.c_str(), config.devices,
                  config.devices == 1 ? "" : "s", ranks, ranks == 1 ? "" : "es",
                  static_cast<long long>(corpus.fortunes), corpus.source.c_str(), corpus.train.size(),
                  corpus.validation.size());
      std::fflush(stdout);
    }
    if (resume) {
      const CheckpointInfo restored = session.restore(checkpoint_dir);
      if (rank == 0) {
        std::printf("resumed from %s at step %lld\n", restored.path.c_str(), static_cast<long long>(restored.step));
      }
    }
    if (!dump.empty()) {
      std::filesystem::create_directories(dump);
      std::ofstream manifest(dump + "/manifest.txt");
      manifest << "vocab " << config.vocab << "\ncontext " << config.context << "\nwidth " << config.width
               << "\nheads " << config.heads << "\nlayers " << config.layers << "\nbatch " << config.batch
               << "\nsteps " << steps << "\nlr " << config.lr << "\nmin_lr " << config.min_lr << "\nwarmup "
               << config.warmup_steps << "\nweight_decay " << config.weight_decay << "\nclip " << config.clip
               << "\n";
      for (const Tensor& p : gpt.graph->params()) {
        const std::string name = gpt.graph->node(p.node()).attrs.get_string("name");
        const HostTensor value = session.variable(name);
        std::string file = name;
        for (char& c : file) c = c == '/' ? '.' : c;
        manifest << "param " << name << " " << file << ".f32";
        for (int64_t d : value.shape().dims()) manifest << " " << d;
        manifest << "\n";
        write_raw(concat(dump, "/", file, ".f32"), value.data<float>(), value.numel() * sizeof(float));
      }
    }
    std::FILE* losses_file = dump.empty() ? nullptr : std::fopen((dump + "/losses.txt").c_str(), "w");
    std::ofstream dumped_inputs, dumped_targets;
    if (!dump.empty()) {
      dumped_inputs.open(dump + "/inputs.i64", std::ios::binary);
      dumped_targets.open(dump + "/targets.i64", std::ios::binary);
    }

    cli::MetricsLog metrics(metrics_path);
    const LrSchedule schedule{.warmup_steps = config.warmup_steps, .decay = LrSchedule::Decay::cosine,
                              .total_steps = config.total_steps, .min_lr = config.min_lr};
    const bool terminal = isatty(STDOUT_FILENO) != 0;
    const auto started = std::chrono::steady_clock::now();
    const int64_t first_step = session.steps_done();
    double validation_loss = NAN;
    int64_t validation_step = -1;
    const auto evaluate_validation = [&] {
      double total = 0;
      bool held = false;
      for (int64_t b = 0; b < eval_batches; ++b) {
        const HostTensor loss = session.evaluate(batch_feeds(validation, b * config.batch), {gpt.loss})[0];
        if (loss.defined()) total += loss.get(0), held = true;
      }
      if (held) validation_loss = total / static_cast<double>(eval_batches);
      validation_step = session.steps_done();
      if (held) {
        metrics.write({{"step", static_cast<double>(validation_step)}, {"val_loss", validation_loss},
                       {"time", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()}});
      }
    };
    const auto progress = [&](int64_t step, double loss, bool line) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      const int64_t done = step + 1 - first_step;
      const double tokens = static_cast<double>(done * config.batch * config.context);
      const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(steps - step - 1) : 0;
      std::string text = concat("step ", step + 1, "/", steps, "  loss ", loss);
      if (validation_step >= 0 && !std::isnan(validation_loss)) {
        text += concat("  val ", validation_loss, " (step ", validation_step, ")");
      }
      char rate[64];
      std::snprintf(rate, sizeof rate, "  %.0f tok/s", elapsed > 0 ? tokens / elapsed : 0.0);
      text += concat(rate, "  elapsed ", clock_text(elapsed), "  eta ", clock_text(eta));
      if (terminal) {
        std::printf("\r%s\x1b[K%s", text.c_str(), line ? "\n" : "");
      } else if (line) {
        std::printf("%s\n", text.c_str());
      }
      std::fflush(stdout);
    };
    double last_loss = NAN;
    while (session.steps_done() < steps) {
      const int64_t chunk = std::min(steps - session.steps_done(), eval_every - session.steps_done() % eval_every);
      session.run(
          chunk,
          [&](int64_t step) -> std::optional<Feeds> {
            Feeds feeds = batch_feeds(train, step * config.batch);
            if (dumped_inputs.is_open()) {
              HostTensor inputs, targets;
              train.batch(step * config.batch, config.batch, inputs, targets);
              dumped_inputs.write(static_cast<const char*>(inputs.raw()), inputs.numel() * 8);
              dumped_targets.write(static_cast<const char*>(targets.raw()), targets.numel() * 8);
            }
            return feeds;
          },
          [&](int64_t step, const std::vector<HostTensor>& fetched) {
            if (!fetched[0].defined()) return;  // another rank holds the loss
            last_loss = fetched[0].get(0);
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            metrics.write({{"step", static_cast<double>(step + 1)},
                           {"loss", last_loss},
                           {"tokens_per_s", elapsed > 0 ? static_cast<double>((step + 1 - first_step) * config.batch *
                                                                              config.context) / elapsed
                                                        : NAN},
                           {"lr", scheduled_lr(config.lr, schedule, step)},
                           {"time", elapsed}});
            if (losses_file != nullptr) std::fprintf(losses_file, "%lld %.9g\n", static_cast<long long>(step), last_loss);
            const bool boundary = (step + 1) % eval_every == 0 || step + 1 == steps;
            if (terminal || (step + 1) % print_every == 0) progress(step, last_loss, !terminal && !boundary);
          });
      evaluate_validation();
      if (!std::isnan(last_loss)) progress(session.steps_done() - 1, last_loss, true);
    }
    if (losses_file != nullptr) std::fclose(losses_file);
    if (!std::isnan(validation_loss)) {
      std::printf("validation loss %.4f after %lld steps (%.3f bits per character)\n", validation_loss,
                  static_cast<long long>(steps), validation_loss / std::log(2.0));
    }
    if (sample > 0) {
      std::vector<int32_t> start = models::encode(prompt.empty() ? "\n" : prompt);
      std::vector<std::vector<int32_t>> contexts(gpt.rows_per_input(), start);
      const auto sample_started = std::chrono::steady_clock::now();
      for (int64_t draw = 0; draw < sample; ++draw) {
        const HostTensor next = models::drawn_tokens(
            session.evaluate(models::gpt_sample_feeds(gpt, contexts, config.seed * 7919 + 13, draw), gpt.next));
        for (int64_t r = 0; r < next.numel(); ++r) contexts[r].push_back(static_cast<int32_t>(next.get(r)));
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - sample_started).count();
      if (rank == 0) {
        std::printf("sample (temperature %g, seed %lld, %lld characters in %.1f s, %lld rows at once, no KV cache):\n",
                    config.temperature, static_cast<long long>(seed), static_cast<long long>(sample), seconds,
                    static_cast<long long>(contexts.size()));
        std::printf("----\n%s\n----\n", models::decode(contexts[0]).c_str());
      }
    }
    std::fflush(stdout);
    if (job) job->finish();
    return 0;
  } catch (const Error& error) {
    std::fprintf(stderr, "tessel-gpt: %s\n", error.what());
    return 1;
  }
}
