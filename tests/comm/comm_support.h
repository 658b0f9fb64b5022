// Helpers for tests that stand several ranks up in one process: each "rank" has its own
// transport (UCX) and runs on its own thread.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "comm/transport.h"

namespace tessel::testing {

// Runs `work(rank)` for every rank at once and waits for all; rethrows the first rank's error.
inline void on_every_rank(int ranks, const std::function<void(int)>& work) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(ranks);
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      try {
        work(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

// `ranks` transports in this process, each connected to every other one.
inline std::vector<std::unique_ptr<comm::Transport>> connected_transports(int ranks) {
  std::vector<std::unique_ptr<comm::Transport>> transports;
  std::vector<std::vector<uint8_t>> addresses;
  for (int r = 0; r < ranks; ++r) {
    transports.push_back(std::make_unique<comm::Transport>());
    addresses.push_back(transports.back()->address());
  }
  for (int r = 0; r < ranks; ++r) transports[r]->connect(addresses, r);
  return transports;
}

}  // namespace tessel::testing
