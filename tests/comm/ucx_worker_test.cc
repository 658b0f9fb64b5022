#include "comm/ucx_worker.h"

#include <gtest/gtest.h>

#include <numeric>

namespace tessel {
namespace {

using namespace std::chrono_literals;

TEST(Ucx, TagTransferBetweenTwoWorkersDeliversEveryByte) {
  ucx::Worker sender, receiver;
  const int endpoint = sender.connect(receiver.address());
  for (size_t bytes : {size_t{8}, size_t{64} << 10, size_t{4} << 20}) {
    std::vector<uint32_t> source(bytes / 4), target(bytes / 4, 0);
    std::iota(source.begin(), source.end(), static_cast<uint32_t>(bytes));
    ucx::Worker::Transfer receive = receiver.receive(/*tag=*/bytes, target.data(), bytes);
    ucx::Worker::Transfer send = sender.send(endpoint, /*tag=*/bytes, source.data(), bytes);
    receiver.wait(receive, 10s, {&sender});
    sender.wait(send, 10s, {&receiver});
    EXPECT_EQ(target, source) << bytes << " bytes";
  }
}

TEST(Ucx, TagsKeepMessagesApart) {
  ucx::Worker sender, receiver;
  const int endpoint = sender.connect(receiver.address());
  int64_t first = 0, second = 0;
  const int64_t one = 1, two = 2;
  ucx::Worker::Transfer to_second = receiver.receive(2, &second, sizeof second);
  ucx::Worker::Transfer to_first = receiver.receive(1, &first, sizeof first);
  ucx::Worker::Transfer a = sender.send(endpoint, 1, &one, sizeof one);
  ucx::Worker::Transfer b = sender.send(endpoint, 2, &two, sizeof two);
  receiver.wait(to_first, 10s, {&sender});
  receiver.wait(to_second, 10s, {&sender});
  sender.wait(a, 10s, {&receiver});
  sender.wait(b, 10s, {&receiver});
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 2);
}

}  // namespace
}  // namespace tessel
