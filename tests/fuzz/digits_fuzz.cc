// Data files: the digits reader (apps/digits/digits.h), a gzipped CSV. The first byte picks the
// form: the file as given, or the rest gzipped here so that mutations reach the CSV parser. The
// file is written into a folder of this process's own. What is accepted holds pixels in [0, 1]
// and labels 0 to 9, one of each per row.
#include <zlib.h>

#include <fstream>

#include "apps/digits/digits.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

namespace {

const std::string& file() {
  static const std::string path = tessel::fuzz::scratch_folder() + "/digits.csv.gz";
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessel;
  if (size == 0) return 0;
  if (data[0] % 2 == 0) {
    std::ofstream out(file(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  } else {
    gzFile out = gzopen(file().c_str(), "wb");
    fuzz::expect(out != nullptr, "cannot write the data file", file());
    if (size > 1) gzwrite(out, data + 1, static_cast<unsigned>(size - 1));
    gzclose(out);
  }
  digits::Dataset dataset;
  try {
    dataset = digits::load_digits(file(), size_t{1} << 24);
  } catch (const Error&) {
    return 0;
  }
  fuzz::expect(dataset.images.numel() == dataset.size() * 64, "images and labels disagree");
  for (int64_t i = 0; i < dataset.images.numel(); ++i) {
    const float pixel = dataset.images.data<float>()[i];
    fuzz::expect(pixel >= 0 && pixel <= 1, "a pixel outside [0, 1] was accepted");
  }
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const int64_t label = dataset.labels.data<int64_t>()[i];
    fuzz::expect(label >= 0 && label <= 9, "a label outside 0 to 9 was accepted");
  }
  return 0;
}
