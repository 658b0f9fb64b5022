#include "apps/models/text.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/random.h"

namespace tessel::models {

int64_t char_token(unsigned char c) {
  if (c == '\n') return 0;
  if (c < ' ' || c > '~') c = ' ';
  return 1 + (c - ' ');
}

char token_char(int64_t token) {
  if (token == 0) return '\n';
  if (token < 1 || token >= kTextVocab) return '?';
  return static_cast<char>(' ' + token - 1);
}

std::vector<int32_t> encode(const std::string& text) {
  std::vector<int32_t> tokens(text.size());
  std::transform(text.begin(), text.end(), tokens.begin(),
                 [](char c) { return static_cast<int32_t>(char_token(static_cast<unsigned char>(c))); });
  return tokens;
}

std::string decode(const std::vector<int32_t>& tokens) {
  std::string text(tokens.size(), ' ');
  std::transform(tokens.begin(), tokens.end(), text.begin(), token_char);
  return text;
}

TextCorpus read_fortunes(const std::string& directory) {
  namespace fs = std::filesystem;
  std::error_code error;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(directory, error), end; !error && it != end; it.increment(error)) {
    const fs::path& path = it->path();
    const std::string name = path.filename().string();
    // The .dat files are strfile's indexes, the .u8 names links to the same files; art is pictures.
    if (path.has_extension() || name.find("art") != std::string::npos) continue;
    if (fs::is_regular_file(path, error) && !fs::is_symlink(path, error)) files.push_back(path);
  }
  if (files.empty()) {
    throw Error::NotFound(concat("no fortune files in ", directory,
                                 " (expected the text of Debian's fortunes package: apt-get install fortunes, "
                                 "which scripts/setup.sh installs)"));
  }
  std::sort(files.begin(), files.end());
  TextCorpus corpus{.source = directory};
  for (const fs::path& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    // Fortunes are separated by a line holding only '%'.
    std::string fortune, line;
    std::istringstream lines(text.str());
    const auto flush = [&] {
      if (fortune.find_first_not_of(" \n\t") == std::string::npos) {
        fortune.clear();
        return;
      }
      std::vector<int32_t>& into = corpus.fortunes++ % 20 == 19 ? corpus.validation : corpus.train;
      const std::vector<int32_t> tokens = encode(fortune + "\n");
      into.insert(into.end(), tokens.begin(), tokens.end());
      fortune.clear();
    };
    while (std::getline(lines, line)) {
      if (line == "%") {
        flush();
      } else {
        fortune += line + "\n";
      }
    }
    flush();
  }
  return corpus;
}

TextLoader::TextLoader(const std::vector<int32_t>* tokens, int64_t context, uint64_t seed)
    : tokens_(tokens), context_(context), seed_(seed) {
  if (context < 1 || static_cast<int64_t>(tokens->size()) <= context + 1) {
    throw Error::InvalidArgument(concat("a text of ", tokens->size(), " tokens holds no window of ", context + 1,
                                        " (expected a context of at least 1, shorter than the text)"));
  }
}

void TextLoader::batch(int64_t first, int64_t rows, HostTensor& inputs, HostTensor& targets) const {
  inputs = HostTensor(Shape{rows, context_}, DType::i64);
  targets = HostTensor(Shape{rows, context_}, DType::i64);
  const auto offsets = static_cast<uint64_t>(windows());
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t n = static_cast<uint64_t>(first + r);
    const int64_t at = static_cast<int64_t>(mix64(seed_ ^ mix64(n)) % offsets);
    for (int64_t t = 0; t < context_; ++t) {
      inputs.data<int64_t>()[r * context_ + t] = (*tokens_)[at + t];
      targets.data<int64_t>()[r * context_ + t] = (*tokens_)[at + t + 1];
    }
  }
}

}  // namespace tessel::models
