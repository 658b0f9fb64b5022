// The handwritten digits of Debian's python3-sklearn (1,797 8x8 images, labels 0-9), and an
// MLP trained on them with Tessel.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "runtime/checkpoint.h"

namespace tessel::digits {

struct Dataset {
  HostTensor images;  // [n, 64] f32, pixel values scaled from 0..16 to 0..1
  HostTensor labels;  // [n] i64
  int64_t size() const { return labels.numel(); }
};

// Where digits.csv.gz is: $TESSEL_DIGITS_CSV if set, else python3-sklearn's copy under one
// of `library_roots` (their python3*/dist-packages and site-packages). Throws
// Error::NotFound naming the package to install when there is none.
std::string find_digits_file(const std::vector<std::string>& library_roots = {"/usr/lib", "/usr/local/lib"});

// Reads the gzipped CSV (64 pixel columns, then the label). Error::DataLoss names the line
// of a malformed row, and refuses a file that expands past `max_bytes` (a gzip of a few KB can
// expand to gigabytes) before it holds them.
constexpr size_t kMaxDigitsBytes = size_t{1} << 30;
Dataset load_digits(const std::string& path, size_t max_bytes = kMaxDigitsBytes);

// A fixed, seeded split: `test_fraction` of the images, drawn by a seeded shuffle, for test.
struct Split {
  Dataset train, test;
};
Split split(const Dataset& all, double test_fraction, uint64_t seed);

struct TrainOptions {
  int epochs = 25;
  int batch = 32;
  int hidden = 128;
  double lr = 3e-3;
  double weight_decay = 1e-4;
  uint64_t seed = 0;
  bool use_interpreter = false;  // the reference interpreter instead of the actor runtime
  int worker_threads = 1;        // actor runtime: actors that run at the same time
  std::string plan_path{};       // when set, the training plan is written there (for tessel-plan)
  // Checkpoints: every `checkpoint_every` steps into `checkpoint_dir`; with `resume`, training
  // starts from the newest complete checkpoint there (mid-epoch if it was saved mid-epoch), and
  // `on_resume` hears what was restored. The batches of a step are a function of its number, so a
  // resumed run trains on exactly the batches the uninterrupted one would have.
  std::string checkpoint_dir{};
  int64_t checkpoint_every = 0;
  bool resume = false;
  std::function<void(const CheckpointInfo&)> on_resume{};
};

struct EpochReport {
  int epoch = 0;
  double mean_loss = 0;
  double test_accuracy = 0;
  double samples_per_second = 0;
  std::vector<float> step_losses;  // the loss of each training step of the epoch (run in this call)
};

// Trains a 64-hidden-10 ReLU MLP with AdamW on `data.train` through a Session (the actor
// runtime, or the reference interpreter) and measures accuracy on `data.test` after each
// epoch, calling `report` with each epoch's figures.
std::vector<EpochReport> train(const Split& data, const TrainOptions& options,
                               const std::function<void(const EpochReport&)>& report = {});

}  // namespace tessel::digits
