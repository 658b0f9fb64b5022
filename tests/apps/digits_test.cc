#include "apps/digits/digits.h"

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

}  // namespace
}  // namespace tessel
