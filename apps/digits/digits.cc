#include "apps/digits/digits.h"

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "core/random.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "runtime/session.h"

namespace tessel::digits {

std::string find_digits_file(const std::vector<std::string>& library_roots) {
  if (const char* path = std::getenv("TESSEL_DIGITS_CSV")) {
    if (std::filesystem::exists(path)) return path;
    throw Error::NotFound(concat("TESSEL_DIGITS_CSV is set to '", path, "', which does not exist"));
  }
  const std::filesystem::path relative = "sklearn/datasets/data/digits.csv.gz";
  std::vector<std::filesystem::path> candidates;
  for (const std::string& root : library_roots) {
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(root, ignored)) {
      if (entry.path().filename().string().rfind("python3", 0) != 0) continue;
      candidates.push_back(entry.path() / "dist-packages" / relative);
      candidates.push_back(entry.path() / "site-packages" / relative);
    }
  }
  for (const auto& candidate : candidates) {
    if (std::filesystem::exists(candidate)) return candidate.string();
  }
  throw Error::NotFound(
      "the digits data set (sklearn/datasets/data/digits.csv.gz) was not found; install Debian's python3-sklearn "
      "(apt-get install python3-sklearn, as scripts/setup.sh does) or set TESSEL_DIGITS_CSV to the file");
}

namespace {
std::string read_gzip(const std::string& path, size_t max_bytes) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw Error::NotFound(concat("cannot open '", path, "'"));
  std::string text;
  char buffer[1 << 16];
  int read = 0;
  while ((read = gzread(file, buffer, sizeof buffer)) > 0) {
    if (text.size() + static_cast<size_t>(read) > max_bytes) {
      gzclose(file);
      throw Error::DataLoss(concat("'", path, "' expands past ", max_bytes,
                                   " bytes: too much for a data set of digits (a damaged or hostile file?)"));
    }
    text.append(buffer, read);
  }
  int code = Z_OK;
  const std::string reason = read < 0 ? gzerror(file, &code) : "";
  // A stream cut short, even at a line boundary or within its trailer (the CRC and length), ends
  // the last read in the middle of the gzip stream: gzclose says so. A wrong CRC fails the read.
  const int closed = gzclose(file);
  if (read < 0) throw Error::DataLoss(concat("'", path, "' is not a readable gzip file: ", reason));
  if (closed == Z_BUF_ERROR) {
    throw Error::DataLoss(concat("'", path, "' is truncated: its gzip stream ends early (after ", text.size(),
                                 " bytes of data, without its end or checksum)"));
  }
  if (closed != Z_OK) throw Error::DataLoss(concat("'", path, "': closing its gzip stream failed (zlib ", closed, ")"));
  return text;
}
}  // namespace

Dataset load_digits(const std::string& path, size_t max_bytes) {
  const std::string text = read_gzip(path, max_bytes);
  std::vector<float> pixels;
  std::vector<int64_t> labels;
  std::istringstream lines(text);
  std::string line;
  int line_number = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // a file with CRLF line ends
    if (line.empty()) continue;
    std::vector<double> values;
    std::istringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) {
      char* end = nullptr;
      const double value = std::strtod(field.c_str(), &end);
      if (field.empty() || *end != '\0') {
        throw Error::DataLoss(concat(path, ":", line_number, ": '", field, "' is not a number"));
      }
      values.push_back(value);
    }
    if (values.size() != 65) {
      throw Error::DataLoss(
          concat(path, ":", line_number, ": expected 64 pixel values and a label 0-9, got ", values.size(), " fields"));
    }
    if (values[64] != std::floor(values[64]) || values[64] < 0 || values[64] > 9) {
      throw Error::DataLoss(concat(path, ":", line_number, ": the label is ", values[64], ", expected an integer 0-9"));
    }
    for (int i = 0; i < 64; ++i) {
      // strtod reads "nan" and "inf" too: a pixel is a count of 0 to 16 set cells of a 4x4 block.
      if (!(values[i] >= 0 && values[i] <= 16)) {
        throw Error::DataLoss(concat(path, ":", line_number, ": pixel ", i, " is ", values[i], ", expected 0 to 16"));
      }
      pixels.push_back(static_cast<float>(values[i] / 16.0));
    }
    labels.push_back(static_cast<int64_t>(values[64]));
  }
  if (labels.empty()) throw Error::DataLoss(concat("'", path, "' holds no images"));
  const int64_t n = static_cast<int64_t>(labels.size());
  return {HostTensor::of<float>({n, 64}, pixels), HostTensor::of<int64_t>({n}, labels)};
}

namespace {
// A seeded Fisher-Yates shuffle of 0..n-1, the same on every machine.
std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j =
        static_cast<int64_t>(mix64(seed ^ mix64(static_cast<uint64_t>(i))) % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

Dataset gather(const Dataset& all, const std::vector<int64_t>& rows, size_t begin, size_t end) {
  const int64_t n = static_cast<int64_t>(end - begin);
  Dataset out{HostTensor(Shape{n, 64}, f32), HostTensor(Shape{n}, i64)};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = rows[begin + i];
    std::copy_n(all.images.data<float>() + row * 64, 64, out.images.data<float>() + i * 64);
    out.labels.data<int64_t>()[i] = all.labels.data<int64_t>()[row];
  }
  return out;
}
}  // namespace

Split split(const Dataset& all, double test_fraction, uint64_t seed) {
  const std::vector<int64_t> order = permutation(all.size(), seed);
  const size_t test_count = static_cast<size_t>(static_cast<double>(all.size()) * test_fraction);
  return {gather(all, order, test_count, order.size()), gather(all, order, 0, test_count)};
}

std::vector<EpochReport> train(const Split& data, const TrainOptions& options,
                               const std::function<void(const EpochReport&)>& report) {
  if (options.batch < 1 || options.batch > data.train.size()) {
    throw Error::InvalidArgument(concat("batch size ", options.batch, " must lie in [1, ", data.train.size(), "]"));
  }
  Graph g(options.seed);
  const int64_t batch = options.batch, test_count = data.test.size();
  Tensor w1 = g.param("w1", {64, options.hidden}, init::xavier_uniform());
  Tensor b1 = g.param("b1", {options.hidden}, init::zeros());
  Tensor w2 = g.param("w2", {options.hidden, 10}, init::xavier_uniform());
  Tensor b2 = g.param("b2", {10}, init::zeros());
  const auto mlp = [&](const Tensor& x) { return bias_add(matmul(relu(bias_add(matmul(x, w1), b1)), w2), b2); };
  Tensor x = g.input("x", {batch, 64});
  Tensor y = g.input("y", {batch}, i64);
  Tensor loss = cross_entropy(mlp(x), y);
  g.minimize(loss, AdamW{.lr = options.lr, .weight_decay = options.weight_decay});
  Tensor test_logits = mlp(g.input("test_x", {test_count, 64}));

  const int64_t steps = data.train.size() / batch;  // per epoch
  const Session* running = nullptr;
  Session session(g, {loss},
                  {.use_interpreter = options.use_interpreter,
                   .worker_threads = options.worker_threads,
                   .checkpoint_dir = options.checkpoint_dir,
                   .checkpoint_every = options.checkpoint_every,
                   .data_position = [&] {
                     const int64_t done = running->steps_done();
                     return std::map<std::string, int64_t>{{"epoch", done / steps + 1}, {"batch", done % steps}};
                   }});
  running = &session;
  if (!options.plan_path.empty()) {
    if (options.use_interpreter)
      throw Error::InvalidArgument("the interpreter runs no plan, so there is none to write");
    write_plan(session.plan(), options.plan_path);
  }
  int first_epoch = 1;
  if (options.resume) {
    const CheckpointInfo restored = session.restore(options.checkpoint_dir);
    first_epoch = static_cast<int>(restored.step / steps) + 1;
    if (options.on_resume) options.on_resume(restored);
  }
  std::vector<EpochReport> reports;
  for (int epoch = first_epoch; epoch <= options.epochs; ++epoch) {
    // Step s trains on batch s % steps of epoch s / steps + 1's shuffle.
    const std::vector<int64_t> order = permutation(data.train.size(), options.seed * 1000003 + epoch);
    const auto start = std::chrono::steady_clock::now();
    const int64_t epoch_start = (epoch - 1) * steps;
    const auto outputs = session.run(epoch * steps - session.steps_done(), [&](int64_t step) -> std::optional<Feeds> {
      const int64_t i = step - epoch_start;
      const Dataset part = gather(data.train, order, i * batch, (i + 1) * batch);
      return Feeds{{"x", part.images}, {"y", part.labels}};
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::vector<float> losses;
    double total_loss = 0;
    for (const auto& output : outputs) {
      losses.push_back(output[0].data<float>()[0]);
      total_loss += losses.back();
    }
    const HostTensor logits = session.evaluate({{"test_x", data.test.images}}, {test_logits})[0];
    int64_t correct = 0;
    for (int64_t i = 0; i < test_count; ++i) {
      const float* row = logits.data<float>() + i * 10;
      correct += (std::max_element(row, row + 10) - row) == data.test.labels.data<int64_t>()[i];
    }
    const auto ran = static_cast<int64_t>(outputs.size());
    EpochReport r{epoch, total_loss / static_cast<double>(std::max<int64_t>(1, ran)),
                  static_cast<double>(correct) / static_cast<double>(test_count),
                  static_cast<double>(ran * batch) / seconds, std::move(losses)};
    if (report) report(r);
    reports.push_back(r);
  }
  return reports;
}

}  // namespace tessel::digits
