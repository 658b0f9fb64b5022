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
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "apps/digits/digits.h"
#include "core/logging.h"
#include "devices/cpu_device.h"

namespace {

// The usage, after `problem`: on stderr with status 2, or for --help (no problem) on stdout with 0.
[[noreturn]] void usage(const char* problem) {
  std::FILE* out = problem == nullptr ? stdout : stderr;
  std::fprintf(out,
               "tessel-digits: %s\n"
               "usage: tessel-digits [--epochs N] [--batch N] [--hidden N] [--lr X] [--seed N] [--threads N]\n"
               "                     [--workers N] [--interpreter] [--write-plan FILE]\n"
               "                     [--checkpoint-dir DIR] [--checkpoint-every N] [--resume]\n",
               problem == nullptr ? "trains an MLP on the digits data set" : problem);
  std::exit(problem == nullptr ? 0 : 2);
}

double number(const char* flag, const char* text) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (*text == '\0' || *end != '\0' || !std::isfinite(value)) {
    usage((std::string(flag) + " expects a number, got '" + text + "'").c_str());
  }
  return value;
}

// A whole number in [low, high]: 1.7 epochs is refused, not truncated.
int64_t integer(const char* flag, const char* text, int64_t low, int64_t high) {
  const double value = number(flag, text);
  if (value != std::floor(value) || value < static_cast<double>(low) || value > static_cast<double>(high)) {
    usage((std::string(flag) + ": '" + text + "' is not an integer in [" + std::to_string(low) + ", " +
           std::to_string(high) + "]")
              .c_str());
  }
  return static_cast<int64_t>(value);
}

}  // namespace

int main(int argc, char** argv) {
  tessel::init_logging(argv[0]);
  tessel::digits::TrainOptions options;
  for (int i = 1; i < argc; ++i) {
    const char* flag = argv[i];
    if (std::strcmp(flag, "--help") == 0) usage(nullptr);
    if (std::strcmp(flag, "--interpreter") == 0) {
      options.use_interpreter = true;
      continue;
    }
    if (std::strcmp(flag, "--resume") == 0) {
      options.resume = true;
      continue;
    }
    if (i + 1 >= argc) usage((std::string("missing value after ") + flag).c_str());
    if (std::strcmp(flag, "--write-plan") == 0) {
      options.plan_path = argv[++i];
      continue;
    }
    if (std::strcmp(flag, "--checkpoint-dir") == 0) {
      options.checkpoint_dir = argv[++i];
      if (options.checkpoint_dir.empty()) usage("--checkpoint-dir expects a directory, got ''");
      continue;
    }
    const char* text = argv[++i];
    if (std::strcmp(flag, "--epochs") == 0) {
      options.epochs = static_cast<int>(integer(flag, text, 1, 100000));
    } else if (std::strcmp(flag, "--batch") == 0) {
      options.batch = static_cast<int>(integer(flag, text, 1, 1 << 20));
    } else if (std::strcmp(flag, "--hidden") == 0) {
      options.hidden = static_cast<int>(integer(flag, text, 1, 1 << 20));
    } else if (std::strcmp(flag, "--lr") == 0) {
      options.lr = number(flag, text);
      if (!(options.lr > 0)) usage((std::string("--lr expects a positive number, got '") + text + "'").c_str());
    } else if (std::strcmp(flag, "--seed") == 0) {
      options.seed = static_cast<uint64_t>(integer(flag, text, 0, int64_t{1} << 53));
    } else if (std::strcmp(flag, "--checkpoint-every") == 0) {
      options.checkpoint_every = integer(flag, text, 1, int64_t{1} << 40);
    } else if (std::strcmp(flag, "--workers") == 0) {
      options.worker_threads = static_cast<int>(integer(flag, text, 1, 256));
    } else if (std::strcmp(flag, "--threads") == 0) {
      tessel::set_cpu_threads(static_cast<int>(integer(flag, text, 1, 256)));
    } else {
      usage((std::string("unknown flag ") + flag).c_str());
    }
  }
  if ((options.resume || options.checkpoint_every > 0) && options.checkpoint_dir.empty()) {
    usage("--resume and --checkpoint-every need --checkpoint-dir");
  }
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
    const auto reports = tessel::digits::train(data, options, [](const tessel::digits::EpochReport& r) {
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
