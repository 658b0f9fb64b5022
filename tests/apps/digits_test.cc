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
