#include "comm/ucx_worker.h"

#include <ucp/api/ucp.h>

#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace tessel::ucx {
namespace {
void check(ucs_status_t status, const char* what) {
  if (status != UCS_OK) throw Error::FailedPrecondition(concat(what, " failed: ", ucs_status_string(status)));
}
}  // namespace

struct Worker::State {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  std::vector<ucp_ep_h> endpoints;
};

Worker::Worker() : state_(std::make_unique<State>()) {
  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG;
  const ucs_status_t status = ucp_init(&params, config, &state_->context);
  ucp_config_release(config);
  check(status, "ucp_init");
  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  check(ucp_worker_create(state_->context, &worker_params, &state_->worker), "ucp_worker_create");
}

Worker::~Worker() {
  for (ucp_ep_h endpoint : state_->endpoints) {
    ucp_request_param_t params{};
    void* request = ucp_ep_close_nbx(endpoint, &params);
    if (UCS_PTR_IS_PTR(request)) {
      for (int spin = 0; spin < 100000 && ucp_request_check_status(request) == UCS_INPROGRESS; ++spin) {
        ucp_worker_progress(state_->worker);
      }
      ucp_request_free(request);
    }
  }
  if (state_->worker) ucp_worker_destroy(state_->worker);
  if (state_->context) ucp_cleanup(state_->context);
}

std::vector<uint8_t> Worker::address() const {
  ucp_address_t* address = nullptr;
  size_t length = 0;
  check(ucp_worker_get_address(state_->worker, &address, &length), "ucp_worker_get_address");
  std::vector<uint8_t> bytes(reinterpret_cast<uint8_t*>(address), reinterpret_cast<uint8_t*>(address) + length);
  ucp_worker_release_address(state_->worker, address);
  return bytes;
}

int Worker::connect(const std::vector<uint8_t>& address) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  params.address = reinterpret_cast<const ucp_address_t*>(address.data());
  ucp_ep_h endpoint = nullptr;
  check(ucp_ep_create(state_->worker, &params, &endpoint), "ucp_ep_create");
  state_->endpoints.push_back(endpoint);
  return static_cast<int>(state_->endpoints.size()) - 1;
}

namespace {
// The request of a non-blocking call: an error is thrown, nullptr means already complete.
void* checked_request(void* request, const char* what) {
  if (UCS_PTR_IS_ERR(request)) {
    throw Error::FailedPrecondition(concat(what, " failed: ", ucs_status_string(UCS_PTR_STATUS(request))));
  }
  return UCS_PTR_IS_PTR(request) ? request : nullptr;
}
}  // namespace

bool Worker::Transfer::complete() const {
  return request == nullptr || ucp_request_check_status(request) != UCS_INPROGRESS;
}

Worker::Transfer Worker::send(int endpoint, uint64_t tag, const void* data, size_t bytes) {
  ucp_request_param_t params{};
  void* request = ucp_tag_send_nbx(state_->endpoints.at(endpoint), data, bytes, tag, &params);
  Transfer transfer;
  transfer.request = checked_request(request, "ucp_tag_send_nbx");
  return transfer;
}

Worker::Transfer Worker::receive(uint64_t tag, void* data, size_t bytes) {
  ucp_request_param_t params{};
  void* request = ucp_tag_recv_nbx(state_->worker, data, bytes, tag, ~uint64_t{0}, &params);
  Transfer transfer;
  transfer.request = checked_request(request, "ucp_tag_recv_nbx");
  return transfer;
}

bool Worker::progress() { return ucp_worker_progress(state_->worker) != 0; }

void Worker::finish(Transfer& transfer) {
  if (transfer.request == nullptr || !transfer.complete()) return;
  const ucs_status_t status = ucp_request_check_status(transfer.request);
  ucp_request_free(transfer.request);
  transfer.request = nullptr;
  check(status, "UCX transfer");
}

void Worker::wait(Transfer& transfer, std::chrono::milliseconds timeout, const std::vector<Worker*>& peers) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!transfer.complete()) {
    progress();
    for (Worker* peer : peers) peer->progress();
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error::FailedPrecondition(concat("UCX transfer did not complete within ", timeout.count(), " ms"));
    }
  }
  finish(transfer);
}

std::string Worker::transports() const {
  char* text = nullptr;
  size_t size = 0;
  FILE* stream = open_memstream(&text, &size);
  ucp_context_print_info(state_->context, stream);
  std::fclose(stream);
  std::string info(text, size);
  std::free(text);
  return info;
}

}  // namespace tessel::ucx
