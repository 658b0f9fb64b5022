// The coordinator's gate (comm/gate.h): only a peer that proves the job token reaches what is
// behind it; bytes then flow both ways, and everything else is refused, counted and logged.
#include "comm/gate.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace tessel::comm {
namespace {

int connect_to(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// What stands behind the gate: a listener that counts the connections reaching it and echoes.
struct Inside {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  uint16_t port = 0;
  int reached = 0;
  std::thread thread;
  Inside() {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(listener, 16);
    socklen_t length = sizeof address;
    getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
    thread = std::thread([this] {
      while (true) {
        const int fd = accept(listener, nullptr, nullptr);
        if (fd < 0) return;
        ++reached;
        char buffer[4096];
        ssize_t got;
        while ((got = read(fd, buffer, sizeof buffer)) > 0) {
          if (write(fd, buffer, static_cast<size_t>(got)) != got) break;
        }
        close(fd);
      }
    });
  }
  ~Inside() {
    shutdown(listener, SHUT_RDWR);
    close(listener);
    thread.join();
  }
};

// Reads until the peer closes or `limit` bytes came, within 10 s.
std::string read_all(int fd, size_t limit = 1 << 20) {
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (text.size() < limit && std::chrono::steady_clock::now() < deadline) {
    pollfd wait{fd, POLLIN, 0};
    if (poll(&wait, 1, 100) <= 0) continue;
    char buffer[4096];
    const ssize_t got = read(fd, buffer, sizeof buffer);
    if (got <= 0) break;
    text.append(buffer, static_cast<size_t>(got));
  }
  return text;
}

TEST(Gate, ATunnelWithTheTokenCarriesBytesBothWays) {
  Inside inside;
  Gate gate("secret", "127.0.0.1", 0, inside.port);
  Tunnel tunnel("secret", "127.0.0.1", gate.port());
  const int fd = connect_to(tunnel.local_port());
  ASSERT_GE(fd, 0);
  const std::string message(100000, 'x');
  ASSERT_EQ(write(fd, message.data(), message.size()), static_cast<ssize_t>(message.size()));
  EXPECT_EQ(read_all(fd, message.size()), message);
  close(fd);
  EXPECT_EQ(gate.admitted(), 1);
  EXPECT_EQ(inside.reached, 1);
  EXPECT_TRUE(tunnel.refusal().empty());
}

TEST(Gate, AWrongTokenIsRefusedAndTheTunnelSaysWhy) {
  Inside inside;
  Gate gate("secret", "127.0.0.1", 0, inside.port);
  Tunnel tunnel("guess", "127.0.0.1", gate.port());
  const int fd = connect_to(tunnel.local_port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(read_all(fd), "") << "the tunnel closes what it cannot carry";
  close(fd);
  EXPECT_EQ(gate.refused(), 1) << "counted before the peer hears of it";
  EXPECT_EQ(inside.reached, 0);
  EXPECT_EQ(tunnel.refusal().rfind("wrong job token", 0), 0u) << tunnel.refusal();
}

// Random bytes, a header shaped like CAF's BASP with absurd sizes, an HTTP request, and 200 idle
// connections: none reaches the inside, and a tunnel with the token still gets through.
TEST(Gate, NothingButAProofReachesTheInside) {
  Inside inside;
  Gate gate("secret", "127.0.0.1", 0, inside.port);
  std::mt19937 random(7);
  std::vector<std::string> attacks;
  for (int i = 0; i < 20; ++i) {
    std::string bytes(1 + random() % 200, '\0');
    for (char& c : bytes) c = static_cast<char>(random());
    attacks.push_back(bytes);
  }
  std::string basp(32, '\0');
  basp[8] = static_cast<char>(0xff);
  for (int i = 12; i < 16; ++i) basp[i] = static_cast<char>(0xff);  // a payload of 4 GiB
  attacks.push_back(basp);
  attacks.push_back("GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n");
  attacks.push_back(std::string(56, 'T'));  // as long as an answer, but no proof
  for (const std::string& attack : attacks) {
    const int fd = connect_to(gate.port());
    ASSERT_GE(fd, 0);
    if (write(fd, attack.data(), attack.size()) < 0) ADD_FAILURE() << "cannot send";
    shutdown(fd, SHUT_WR);
    read_all(fd);  // the hello, then the gate closes
    close(fd);
  }
  std::vector<int> idle;
  for (int i = 0; i < 200; ++i) idle.push_back(connect_to(gate.port()));
  Tunnel tunnel("secret", "127.0.0.1", gate.port());
  const int fd = connect_to(tunnel.local_port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "ping", 4), 4);
  EXPECT_EQ(read_all(fd, 4), "ping") << "a rank with the token gets through 200 idle connections";
  close(fd);
  for (int each : idle) close(each);
  EXPECT_EQ(inside.reached, 1) << "only the tunnel reached the inside";
  EXPECT_GE(gate.refused(), static_cast<int64_t>(attacks.size()));
}

}  // namespace
}  // namespace tessel::comm
