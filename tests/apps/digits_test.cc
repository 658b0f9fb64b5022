#include "apps/digits/digits.h"

#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/test_support.h"

namespace tessel {
namespace {

TEST(Digits, LoadsAllImagesFromPython3Sklearn) {
  const digits::Dataset all = digits::load_digits(digits::find_digits_file());
  EXPECT_EQ(all.images.shape(), (Shape{1797, 64}));
  int64_t per_label[10] = {};
  for (int64_t i = 0; i < all.size(); ++i) ++per_label[all.labels.data<int64_t>()[i]];
  for (int64_t count : per_label) EXPECT_GT(count, 170);  // each digit has ~180 images
}

TEST(Digits, SplitIsFixedAndDisjointInSize) {
  const digits::Dataset all = digits::load_digits(digits::find_digits_file());
  const digits::Split a = digits::split(all, 0.2, 2024), b = digits::split(all, 0.2, 2024);
  EXPECT_EQ(a.test.size(), 359);
  EXPECT_EQ(a.train.size() + a.test.size(), 1797);
  EXPECT_EQ(a.test.images.to_floats(), b.test.images.to_floats());
}

TEST(Digits, MlpReachesAtLeast95PercentTestAccuracy) {
  const digits::Split data = digits::split(digits::load_digits(digits::find_digits_file()), 0.2, 2024);
  const std::vector<digits::EpochReport> reports = digits::train(data, {});
  ASSERT_FALSE(reports.empty());
  EXPECT_LT(reports.back().mean_loss, reports.front().mean_loss / 10);
  EXPECT_GE(reports.back().test_accuracy, 0.95);
}

// The digits model trains through actors by default; the interpreter is the reference.
// Same kernels in the same order: every step's loss and the test accuracy are identical.
TEST(Digits, ActorRuntimeGivesTheInterpretersLossAtEveryStep) {
  const auto data = digits::split(digits::load_digits(digits::find_digits_file()), 0.2, 2024);
  const std::vector<digits::EpochReport> reference = digits::train(data, {.epochs = 3, .use_interpreter = true});
  for (int workers : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << workers << " worker threads");
    const std::vector<digits::EpochReport> actors = digits::train(data, {.epochs = 3, .worker_threads = workers});
    ASSERT_EQ(actors.size(), reference.size());
    for (size_t epoch = 0; epoch < reference.size(); ++epoch) {
      ASSERT_EQ(actors[epoch].step_losses.size(), 44u);
      ASSERT_EQ(actors[epoch].step_losses.size(), reference[epoch].step_losses.size());
      for (size_t step = 0; step < reference[epoch].step_losses.size(); ++step) {
        EXPECT_EQ(actors[epoch].step_losses[step], reference[epoch].step_losses[step])
            << "epoch " << epoch + 1 << ", step " << step;
      }
      EXPECT_EQ(actors[epoch].test_accuracy, reference[epoch].test_accuracy);
    }
  }
}

// Stopped mid-epoch (a checkpoint every 10 steps; 44 steps per epoch) and resumed: the steps after
// the checkpoint have the uninterrupted run's losses, bit for bit, and so do the epochs after.
TEST(Digits, AResumedRunTrainsOnTheSameBatchesAsAnUninterruptedOne) {
  const auto data = digits::split(digits::load_digits(digits::find_digits_file()), 0.2, 2024);
  char pattern[] = "/tmp/tessel-digits-test-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  const std::vector<digits::EpochReport> straight = digits::train(data, {.epochs = 3});
  digits::train(data, {.epochs = 2, .checkpoint_dir = dir, .checkpoint_every = 10});  // last checkpoint: step 80
  int64_t resumed_at = -1;
  const std::vector<digits::EpochReport> resumed = digits::train(
      data, {.epochs = 3, .checkpoint_dir = dir, .resume = true, .on_resume = [&](const CheckpointInfo& info) {
               resumed_at = info.step;
               EXPECT_EQ(info.data, (std::map<std::string, int64_t>{{"batch", 36}, {"epoch", 2}}));
             }});
  std::filesystem::remove_all(dir);
  EXPECT_EQ(resumed_at, 80);
  ASSERT_EQ(resumed.size(), 2u);  // the rest of epoch 2 (steps 80 to 87), then epoch 3
  EXPECT_EQ(resumed[0].epoch, 2);
  ASSERT_EQ(resumed[0].step_losses.size(), 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(resumed[0].step_losses[i], straight[1].step_losses[36 + i]) << i;
  EXPECT_EQ(resumed[1].step_losses, straight[2].step_losses);
  EXPECT_EQ(resumed[1].test_accuracy, straight[2].test_accuracy);
}

TEST(Digits, MissingFileNamesThePackage) {
  EXPECT_TESSEL_ERROR(digits::find_digits_file({"/nonexistent"}), ErrorCode::kNotFound, "digits.csv.gz",
                      "install Debian's python3-sklearn", "TESSEL_DIGITS_CSV");
  EXPECT_NO_THROW(digits::find_digits_file());
}

TEST(Digits, OverridePathThatDoesNotExistIsNamed) {
  setenv("TESSEL_DIGITS_CSV", "/nonexistent/digits.csv.gz", 1);
  EXPECT_TESSEL_ERROR(digits::find_digits_file(), ErrorCode::kNotFound, "/nonexistent/digits.csv.gz");
  unsetenv("TESSEL_DIGITS_CSV");
}

// A CSV with CRLF line ends reads like one with LF ends; a label that is not a whole digit is
// refused by line, never truncated (3.7 used to be read as 3).
TEST(Digits, CrlfLinesReadAndFractionalLabelsAreRefused) {
  const auto write = [](const std::string& path, const std::string& label, const std::string& end) {
    std::FILE* file = std::fopen(path.c_str(), "w");
    ASSERT_NE(file, nullptr);
    for (int row = 0; row < 2; ++row) {
      for (int i = 0; i < 64; ++i) std::fprintf(file, "%d,", i % 17);
      std::fprintf(file, "%s%s", row == 0 ? "7" : label.c_str(), end.c_str());
    }
    std::fclose(file);
  };
  const std::string path = ::testing::TempDir() + "digits_crlf.csv";
  write(path, "2", "\r\n");
  const digits::Dataset two = digits::load_digits(path);
  ASSERT_EQ(two.size(), 2);
  EXPECT_EQ(two.labels.data<int64_t>()[1], 2);
  write(path, "3.7", "\n");
  EXPECT_TESSEL_ERROR(digits::load_digits(path), ErrorCode::kDataLoss, "digits_crlf.csv:2: the label is 3.7",
                      "expected an integer 0-9");
  std::remove(path.c_str());
}

// strtod reads "nan" and "inf": a pixel that is not a count of 0 to 16 is refused by line and
// column, never fed as NaN.
TEST(Digits, PixelsOutsideTheirRangeAreRefused) {
  const std::string path = ::testing::TempDir() + "digits_nan.csv";
  for (const std::string pixel : {"nan", "inf", "-1", "17"}) {
    std::FILE* file = std::fopen(path.c_str(), "w");
    ASSERT_NE(file, nullptr);
    for (int i = 0; i < 64; ++i) std::fprintf(file, "%s,", i == 5 ? pixel.c_str() : "3");
    std::fprintf(file, "4\n");
    std::fclose(file);
    EXPECT_TESSEL_ERROR(digits::load_digits(path), ErrorCode::kDataLoss, "digits_nan.csv:1: pixel 5 is",
                        "expected 0 to 16");
  }
  std::remove(path.c_str());
}

// A gzip file cut short is refused, naming the file, whether the cut falls at a line boundary
// (it used to be read as a smaller data set) or within the trailer that holds the checksum.
TEST(Digits, TruncatedGzipFilesAreRefused) {
  const std::string whole = ::testing::TempDir() + "digits_whole.csv.gz";
  gzFile out = gzopen(whole.c_str(), "wb");
  ASSERT_NE(out, nullptr);
  std::string rows;
  for (int row = 0; row < 40; ++row) {
    for (int i = 0; i < 64; ++i) rows += std::to_string((row * 7 + i) % 17) + ",";
    rows += std::to_string(row % 10) + "\n";
  }
  gzwrite(out, rows.data(), static_cast<unsigned>(rows.size()));
  gzclose(out);
  EXPECT_EQ(digits::load_digits(whole).size(), 40);
  // A file that expands past the bound is refused before it is held (the bound is 1 GiB by default).
  EXPECT_TESSEL_ERROR(digits::load_digits(whole, 1000), ErrorCode::kDataLoss, "expands past 1000 bytes");
  std::string bytes;
  {
    std::ifstream in(whole, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (const size_t cut : {size_t{4}, size_t{8}, bytes.size() / 2}) {
    const std::string truncated = ::testing::TempDir() + "digits_truncated.csv.gz";
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() - cut);
    SCOPED_TRACE(concat("cut ", cut, " bytes"));
    EXPECT_TESSEL_ERROR(digits::load_digits(truncated), ErrorCode::kDataLoss, "digits_truncated.csv.gz");
    std::remove(truncated.c_str());
  }
  std::remove(whole.c_str());
}

}  // namespace
}  // namespace tessel
