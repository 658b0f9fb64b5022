// Character-level text for the GPT: Debian's fortunes (the `fortunes` package), one token per
// character, split into training and validation by fortune.
//
// The vocabulary is fixed, not learned from the data: newline and the 95 printable ASCII
// characters, 96 tokens. Other bytes (the odd Latin-1 or UTF-8 letter, tabs) become spaces.
//
// The loader is deterministic and its position is one number: the sequences drawn so far.
// Sequence n is a window of context + 1 tokens at an offset that is a pure function of (seed, n),
// so batch s of B rows is sequences s*B ... s*B + B - 1 on every machine, and a run resumed at a
// position (a checkpoint's, a recovery's) draws exactly what the uninterrupted run drew.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace tessel::models {

constexpr int64_t kTextVocab = 96;
int64_t char_token(unsigned char c);  // 0 newline, 1 + (c - ' ') for ' ' ... '~', else a space
char token_char(int64_t token);       // the inverse; '?' for a token outside the vocabulary

struct TextCorpus {
  std::vector<int32_t> train{}, validation{};  // tokens
  int64_t fortunes = 0;                    // fortunes read (every 20th is validation)
  std::string source{};                    // the directory read
};

// Reads every fortune file of `directory` (default /usr/share/games/fortunes), in name order,
// leaving out the index (.dat) files and the ASCII art. Error::NotFound naming the directory and
// the package when it is missing or empty.
TextCorpus read_fortunes(const std::string& directory = "/usr/share/games/fortunes");

class TextLoader {
 public:
  // Windows of context + 1 tokens from `tokens` (which must hold more than that).
  TextLoader(const std::vector<int32_t>* tokens, int64_t context, uint64_t seed);
  // Sequences first ... first + rows - 1: inputs [rows, context] (i64) and targets [rows,
  // context], the inputs shifted by one.
  void batch(int64_t first, int64_t rows, HostTensor& inputs, HostTensor& targets) const;
  int64_t windows() const { return static_cast<int64_t>(tokens_->size()) - context_; }

 private:
  const std::vector<int32_t>* tokens_;
  int64_t context_;
  uint64_t seed_;
};

std::vector<int32_t> encode(const std::string& text);
std::string decode(const std::vector<int32_t>& tokens);

}  // namespace tessel::models
