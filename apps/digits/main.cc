// Trains an MLP on the handwritten digits of python3-sklearn and prints, per epoch, the
// training loss, the test accuracy and the training throughput.
//
//   tessel-digits [--epochs N] [--batch N] [--hidden N] [--lr X] [--seed N] [--threads N]
//                 [--workers N] [--interpreter] [--write-plan FILE]
//                 [--checkpoint-dir DIR] [--checkpoint-every N] [--resume]
//
// Training runs through the actor runtime; --interpreter uses the reference interpreter.
// --workers sets how many actors run at once, --threads how many threads one kernel uses.
// --checkpoint-every N saves every N steps into --checkpoint-dir; --resume goes on from the newest
// complete checkpoint there, to the end of --epochs.
#include <chrono>
#include <cstdio>
#include <string>

#include "apps/cli/flags.h"
#include "apps/cli/metrics.h"
#include "apps/digits/digits.h"
#include "core/logging.h"
#include "devices/cpu_device.h"

int main(int argc, char** argv) {
  tessel::init_logging(argv[0]);
  tessel::digits::TrainOptions options;
  int threads = 0;
  CLI::App app("trains an MLP on the digits data set", "tessel-digits");
  tessel::cli::style(app);
  app.add_option("--epochs", options.epochs, "passes over the training set")->check(tessel::cli::integer_in(1, 100000));
  app.add_option("--batch", options.batch, "samples per step")->check(tessel::cli::integer_in(1, 1 << 20));
  app.add_option("--hidden", options.hidden, "hidden units")->check(tessel::cli::integer_in(1, 1 << 20));
  app.add_option("--lr", options.lr, "AdamW's learning rate")->check(tessel::cli::number_in(1e-12, 100));
  app.add_option("--seed", options.seed, "initial weights and batch order")
      ->check(tessel::cli::integer_in(0, int64_t{1} << 53));
  app.add_option("--threads", threads, "threads one kernel uses (unset: TESSEL_CPU_THREADS, or every core)")
      ->check(tessel::cli::integer_in(1, 256))
      ->envname("TESSEL_CPU_THREADS");
  app.add_option("--workers", options.worker_threads, "actors that run at once")
      ->check(tessel::cli::integer_in(1, 256));
  app.add_flag("--interpreter", options.use_interpreter, "the reference interpreter instead of the actors");
  app.add_option("--write-plan", options.plan_path, "writes the training plan to FILE")->type_name("FILE");
  app.add_option("--checkpoint-dir", options.checkpoint_dir, "where checkpoints go")
      ->type_name("DIR")
      ->check([](const std::string& text) { return text.empty() ? std::string("expected a directory, got ''") : ""; });
  app.add_option("--checkpoint-every", options.checkpoint_every, "saves every N steps into --checkpoint-dir")
      ->check(tessel::cli::integer_in(1, int64_t{1} << 40));
  app.add_flag("--resume", options.resume, "goes on from the newest complete checkpoint in --checkpoint-dir");
  std::string metrics_path;
  app.add_option("--metrics", metrics_path, "writes each epoch's loss, test accuracy, samples/s, learning rate and time "
                                            "as JSON Lines")
      ->type_name("FILE");
  tessel::cli::add_trace_flag(app);
  tessel::cli::parse(app, argc, argv);
  if ((options.resume || options.checkpoint_every > 0) && options.checkpoint_dir.empty()) {
    std::fprintf(stderr, "tessel-digits: --resume and --checkpoint-every need --checkpoint-dir\n");
    return 2;
  }
  if (threads > 0) tessel::set_cpu_threads(threads);
  options.on_resume = [](const tessel::CheckpointInfo& restored) {
    std::printf("  resumed from %s at step %lld\n", restored.path.c_str(), static_cast<long long>(restored.step));
  };
  try {
    const std::string path = tessel::digits::find_digits_file();
    const auto data = tessel::digits::split(tessel::digits::load_digits(path), 0.2, 2024);
    std::printf("digits: %s\n  %lld training and %lld test images; MLP 64-%d-10, AdamW lr %g, batch %d\n", path.c_str(),
                static_cast<long long>(data.train.size()), static_cast<long long>(data.test.size()), options.hidden,
                options.lr, options.batch);
    if (options.use_interpreter) {
      std::printf("  runtime: the reference interpreter\n");
    } else {
      std::printf("  runtime: actors on CAF, %d worker thread(s)\n", options.worker_threads);
    }
    tessel::cli::MetricsLog metrics(metrics_path);
    const auto started = std::chrono::steady_clock::now();
    const auto reports = tessel::digits::train(data, options, [&](const tessel::digits::EpochReport& r) {
      metrics.write({{"epoch", static_cast<double>(r.epoch)},
                     {"loss", r.mean_loss},
                     {"test_accuracy", r.test_accuracy},
                     {"samples_per_s", r.samples_per_second},
                     {"lr", options.lr},
                     {"time", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()}});
      std::printf("epoch %3d  loss %.4f  test accuracy %6.2f%%  %8.0f samples/s\n", r.epoch, r.mean_loss,
                  100 * r.test_accuracy, r.samples_per_second);
      std::fflush(stdout);
    });
    if (reports.empty()) {
      std::printf("the checkpoint already holds all %d epochs: nothing to train\n", options.epochs);
    } else {
      std::printf("final test accuracy: %.2f%%\n", 100 * reports.back().test_accuracy);
    }
  } catch (const tessel::Error& error) {
    std::fprintf(stderr, "tessel-digits: %s\n", error.what());
    return 1;
  }
  return 0;
}
