#include "comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "core/error.h"

namespace tessel::nccl {
namespace {
void check(ncclResult_t result, const char* what) {
  if (result != ncclSuccess) throw Error::FailedPrecondition(concat(what, " failed: ", ncclGetErrorString(result)));
}
}  // namespace

std::string version() {
  int code = 0;
  check(ncclGetVersion(&code), "ncclGetVersion");
  return concat(code / 10000, ".", (code / 100) % 100, ".", code % 100);
}

struct LocalCommunicators::State {
  std::vector<ncclComm_t> comms;
  std::vector<cudaStream_t> streams;
};

LocalCommunicators::LocalCommunicators(int count) : count_(count), state_(std::make_unique<State>()) {
  state_->comms.resize(count);
  check(ncclCommInitAll(state_->comms.data(), count, nullptr), "ncclCommInitAll");
  for (int i = 0; i < count; ++i) {
    cudaSetDevice(i);
    cudaStream_t stream = nullptr;
    cudaStreamCreate(&stream);
    state_->streams.push_back(stream);
  }
}

LocalCommunicators::~LocalCommunicators() {
  for (ncclComm_t comm : state_->comms) ncclCommDestroy(comm);
  for (cudaStream_t stream : state_->streams) cudaStreamDestroy(stream);
}

void LocalCommunicators::all_reduce_sum(const std::vector<float*>& buffers, size_t elements) {
  check(ncclGroupStart(), "ncclGroupStart");
  for (int i = 0; i < count_; ++i) {
    check(ncclAllReduce(buffers[i], buffers[i], elements, ncclFloat, ncclSum, state_->comms[i], state_->streams[i]),
          "ncclAllReduce");
  }
  check(ncclGroupEnd(), "ncclGroupEnd");
  for (int i = 0; i < count_; ++i) {
    cudaSetDevice(i);
    cudaStreamSynchronize(state_->streams[i]);
  }
}

}  // namespace tessel::nccl
