#include "runtime/checkpoint.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <regex>
#include <set>

#include "comm/communicator.h"
#include "comm/transport.h"
#include "core/error.h"
#include "graph/graph.h"
#include "graph/serialize.h"
#include "proto/checkpoint.pb.h"
#include "sbp/sbp.h"

namespace tessel::checkpoint {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kFormatVersion = 1;
constexpr char kMagic[8] = {'T', 'E', 'S', 'S', 'E', 'L', 'C', 'K'};
constexpr size_t kHeaderBytes = 32;  // magic, version, reserved, length, xxh64
constexpr int64_t kMaxManifestBytes = int64_t{1} << 30;
constexpr int kChannelTagSpace = 63;  // evaluation plans take 1 to 62 (Session::evaluate)

std::string errno_text() { return std::strerror(errno); }

// A file descriptor that closes itself; every failure names the file.
class File {
 public:
  static File create(const std::string& path) {
    File file(path, ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (file.fd_ < 0) throw Error::FailedPrecondition(concat("cannot create ", path, ": ", errno_text()));
    return file;
  }
  // nullopt-like: fd -1 when the file does not exist; other failures throw.
  static File open_for_reading(const std::string& path, const std::string& why) {
    File file(path, ::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (file.fd_ < 0) throw Error::DataLoss(concat(path, " is missing or unreadable (", errno_text(), "): ", why));
    return file;
  }
  File(File&& other) noexcept : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  void write_all(const void* data, size_t bytes, int64_t offset) {
    const auto* p = static_cast<const std::byte*>(data);
    while (bytes > 0) {
      const ssize_t n = ::pwrite(fd_, p, std::min<size_t>(bytes, size_t{64} << 20), offset);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw Error::FailedPrecondition(concat("cannot write ", path_, ": ", errno_text()));
      p += n, bytes -= static_cast<size_t>(n), offset += n;
    }
  }
  // Reads exactly `bytes` at `offset`; DataLoss when the file ends first.
  void read_all(void* data, size_t bytes, int64_t offset, const std::string& why) const {
    auto* p = static_cast<std::byte*>(data);
    while (bytes > 0) {
      const ssize_t n = ::pread(fd_, p, std::min<size_t>(bytes, size_t{64} << 20), offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Error::DataLoss(concat("cannot read ", path_, ": ", errno_text(), " (", why, ")"));
      if (n == 0)
        throw Error::DataLoss(concat(path_, " ends at byte ", offset, ", before the ", bytes, " more bytes ", why,
                                     " needs: it is truncated"));
      p += n, bytes -= static_cast<size_t>(n), offset += n;
    }
  }
  int64_t size() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw Error::DataLoss(concat("cannot stat ", path_, ": ", errno_text()));
    if (!S_ISREG(st.st_mode)) throw Error::DataLoss(concat(path_, " is not a regular file"));
    return st.st_size;
  }
  void sync() {
    if (::fsync(fd_) != 0) throw Error::FailedPrecondition(concat("cannot fsync ", path_, ": ", errno_text()));
  }
  const std::string& path() const { return path_; }

 private:
  File(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

void sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error::FailedPrecondition(concat("cannot open directory ", path, ": ", errno_text()));
  const int status = ::fsync(fd);
  ::close(fd);
  if (status != 0) throw Error::FailedPrecondition(concat("cannot fsync directory ", path, ": ", errno_text()));
}

template <typename T>
void put(std::byte* at, T value) {
  std::memcpy(at, &value, sizeof value);
}
template <typename T>
T get(const std::byte* at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

// A manifest on disk: the header (magic, version, length and xxh64 of the payload), then the
// message. Written and fsynced.
void write_framed(const std::string& path, const google::protobuf::Message& message) {
  std::string payload;
  if (!message.SerializeToString(&payload)) throw Error::FailedPrecondition(concat("cannot serialize ", path));
  std::vector<std::byte> bytes(kHeaderBytes + payload.size());
  std::memcpy(bytes.data(), kMagic, sizeof kMagic);
  put<uint32_t>(bytes.data() + 8, kFormatVersion);
  put<uint32_t>(bytes.data() + 12, 0);
  put<uint64_t>(bytes.data() + 16, payload.size());
  put<uint64_t>(bytes.data() + 24, XXH64(payload.data(), payload.size(), 0));
  std::memcpy(bytes.data() + kHeaderBytes, payload.data(), payload.size());
  File file = File::create(path);
  file.write_all(bytes.data(), bytes.size(), 0);
  file.sync();
}

void read_framed(const std::string& path, google::protobuf::Message& message) {
  const File file = File::open_for_reading(path, "the checkpoint's manifest");
  const int64_t size = file.size();
  if (size < static_cast<int64_t>(kHeaderBytes)) {
    throw Error::DataLoss(
        concat(path, " is ", size, " bytes, shorter than the ", kHeaderBytes, "-byte header of a manifest"));
  }
  if (size > kMaxManifestBytes)
    throw Error::DataLoss(concat(path, " is ", size, " bytes, over the 1 GiB a manifest may be"));
  std::vector<std::byte> bytes(static_cast<size_t>(size));
  file.read_all(bytes.data(), bytes.size(), 0, "the manifest");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    throw Error::DataLoss(concat(path, " does not start with TESSELCK: it is not a Tessel checkpoint manifest"));
  }
  const uint32_t version = get<uint32_t>(bytes.data() + 8);
  if (version != kFormatVersion) {
    throw Error::DataLoss(
        concat(path, " is of checkpoint format ", version, "; this Tessel reads format ", kFormatVersion));
  }
  const uint64_t length = get<uint64_t>(bytes.data() + 16);
  if (length != static_cast<uint64_t>(size) - kHeaderBytes) {
    throw Error::DataLoss(concat(path, " is ", size, " bytes but its header promises ", kHeaderBytes, " + ", length,
                                 ": it is truncated or has bytes appended"));
  }
  const uint64_t expected = get<uint64_t>(bytes.data() + 24);
  const uint64_t actual = XXH64(bytes.data() + kHeaderBytes, length, 0);
  if (expected != actual) {
    throw Error::DataLoss(concat(path, ": the manifest's xxh64 is ", std::to_string(actual), " but its header says ",
                                 std::to_string(expected), ": it is corrupt"));
  }
  if (!message.ParseFromArray(bytes.data() + kHeaderBytes, static_cast<int>(length))) {
    throw Error::DataLoss(concat(path, ": the manifest's checksum holds but it does not parse"));
  }
}

std::string step_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%012lld", static_cast<long long>(step));
  return name;
}
std::string rank_file(int rank, const char* extension) {
  char name[32];
  std::snprintf(name, sizeof name, "rank-%05d.%s", rank, extension);
  return name;
}

std::string slice_text(const std::vector<int64_t>& starts, const std::vector<int64_t>& extents) {
  std::string text = "[";
  for (size_t i = 0; i < starts.size(); ++i) text += concat(i ? ", " : "", starts[i], ":", starts[i] + extents[i]);
  return text + "]";
}

int64_t row_major_index(const std::vector<int64_t>& index, const std::vector<int64_t>& dims) {
  int64_t linear = 0;
  for (size_t i = 0; i < dims.size(); ++i) linear = linear * dims[i] + index[i];
  return linear;
}

uint64_t variables_fingerprint(const std::vector<LocalVariable>& variables) {
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  for (const LocalVariable& v : variables) {
    const std::string text = concat(v.name, "\n", v.dtype, "\n", v.shape, "\n", v.trainable ? "p" : "s", "\n");
    XXH64_update(state, text.data(), text.size());
  }
  const uint64_t hash = XXH64_digest(state);
  XXH64_freeState(state);
  return hash;
}

uint64_t graph_fingerprint(const Graph& graph) {
  const std::string text = graph_to_text(graph);
  return XXH64(text.data(), text.size(), 0);
}

// --- Reading a manifest from disk: nothing in it is trusted until checked. ---

struct SavedShard {
  Region region;
  const proto::ShardRecord* record;
};
struct SavedVariable {
  TensorType type;
  std::vector<SavedShard> shards;
};

// Checks every field a loader uses; returns the variables by name. DataLoss names the variable.
std::map<std::string, SavedVariable> validated(const proto::CheckpointManifest& manifest, const std::string& path) {
  std::map<std::string, SavedVariable> variables;
  const auto bad = [&](const std::string& variable, const std::string& what) {
    return Error::DataLoss(concat(path, "/MANIFEST, variable '", variable, "': ", what));
  };
  static const std::regex file_name("rank-[0-9]{5}\\.bin");
  for (const proto::VariableRecord& record : manifest.variables()) {
    const std::string& name = record.name();
    if (variables.count(name)) throw bad(name, "listed twice");
    SavedVariable& saved = variables[name];
    try {
      saved.type.dtype = dtype_named(record.dtype());
    } catch (const Error&) {
      throw bad(name, concat("unknown dtype '", record.dtype(), "'"));
    }
    int64_t numel = 1;
    for (int64_t dim : record.shape()) {
      if (dim < 0 || (dim > 0 && numel > (int64_t{1} << 50) / dim))
        throw bad(name, concat("impossible shape extent ", dim));
      numel *= dim;
    }
    saved.type.shape = Shape(std::vector<int64_t>(record.shape().begin(), record.shape().end()));
    const int rank = saved.type.shape.rank();
    const int64_t element = static_cast<int64_t>(size_of(saved.type.dtype));
    int64_t covered = 0;
    for (const proto::ShardRecord& shard : record.shards()) {
      const proto::SliceDef& slice = shard.slice();
      if (slice.starts_size() != rank || slice.extents_size() != rank) {
        throw bad(name, concat("a shard's slice has ", slice.starts_size(), " starts and ", slice.extents_size(),
                               " extents for a variable of rank ", rank));
      }
      Region region{{slice.starts().begin(), slice.starts().end()}, {slice.extents().begin(), slice.extents().end()}};
      int64_t shard_numel = 1;
      for (int i = 0; i < rank; ++i) {
        if (region.starts[i] < 0 || region.extents[i] < 0 || region.starts[i] > saved.type.shape[i] ||
            region.extents[i] > saved.type.shape[i] - region.starts[i]) {
          throw bad(name, concat("shard ", slice_text(region.starts, region.extents), " is outside its shape ",
                                 saved.type.shape));
        }
        shard_numel *= region.extents[i];
      }
      const std::string where = concat("shard ", slice_text(region.starts, region.extents));
      if (shard.bytes() != shard_numel * element) {
        throw bad(name, concat(where, " claims ", shard.bytes(), " bytes, expected ", shard_numel * element));
      }
      if (shard.offset() < 0 || shard.offset() > (int64_t{1} << 56))
        throw bad(name, concat(where, " has offset ", shard.offset()));
      if (!std::regex_match(shard.file(), file_name)) {
        throw bad(name, concat(where, " names file '", shard.file(), "', expected rank-NNNNN.bin"));
      }
      const bool chunk_ok = shard.chunk_bytes() > 0 && shard.chunk_bytes() <= (int64_t{1} << 40);
      const int64_t chunks = chunk_ok ? (shard.bytes() + shard.chunk_bytes() - 1) / shard.chunk_bytes() : -1;
      if (chunks < 0 || chunks != shard.chunk_xxh64_size()) {
        throw bad(name, concat(where, " has ", shard.chunk_xxh64_size(), " chunk checksums for ", shard.bytes(),
                               " bytes in chunks of ", shard.chunk_bytes()));
      }
      for (const SavedShard& other : saved.shards) {
        if (!region.intersect(other.region).empty() && shard_numel > 0) {
          throw bad(name, concat(where, " overlaps shard ", slice_text(other.region.starts, other.region.extents)));
        }
      }
      covered += shard_numel;
      saved.shards.push_back({std::move(region), &shard});
    }
    if (covered != numel) throw bad(name, concat("its shards hold ", covered, " of its ", numel, " elements"));
  }
  return variables;
}

// Refuses a checkpoint of other variables than the graph's, naming the first that differs.
void check_same_variables(const proto::CheckpointManifest& manifest, const std::vector<LocalVariable>& variables,
                          const std::string& path) {
  if (manifest.variables_fingerprint() == variables_fingerprint(variables)) return;
  const std::string refused = concat("cannot load ", path, " into this graph: ");
  const int saved = manifest.variables_size(), ours = static_cast<int>(variables.size());
  for (int i = 0; i < std::max(saved, ours); ++i) {
    if (i >= saved)
      throw Error::FailedPrecondition(concat(refused, "the checkpoint has no variable '", variables[i].name, "'"));
    const proto::VariableRecord& record = manifest.variables(i);
    if (i >= ours)
      throw Error::FailedPrecondition(
          concat(refused, "it holds variable '", record.name(), "', which the graph lacks"));
    const LocalVariable& v = variables[i];
    const Shape shape(std::vector<int64_t>(record.shape().begin(), record.shape().end()));
    if (record.name() != v.name) {
      throw Error::FailedPrecondition(concat(refused, "variable ", i, " is '", v.name, "' in the graph but '",
                                             record.name(), "' in the checkpoint"));
    }
    if (shape != v.shape || record.dtype() != std::string(name_of(v.dtype))) {
      throw Error::FailedPrecondition(concat(refused, "variable '", v.name, "' is ", v.shape, " ", v.dtype,
                                             " in the graph but ", shape, " ", record.dtype(), " in the checkpoint"));
    }
    if (record.trainable() != v.trainable) {
      throw Error::FailedPrecondition(concat(
          refused, "variable '", v.name, "' is ", v.trainable ? "a trained parameter" : "not trained",
          " in the graph but ", record.trainable() ? "a trained parameter" : "not trained", " in the checkpoint"));
    }
  }
  throw Error::FailedPrecondition(concat(refused, "the variables' fingerprint differs (the manifest may be damaged)"));
}

// Reads and verifies the chunks of `record` that cover bytes [first, last] of the shard into
// `buffer` (the shard's size) at their own offsets. Returns the bytes read.
int64_t read_chunks(const File& file, int64_t file_size, const proto::ShardRecord& record, const std::string& variable,
                    int64_t first, int64_t last, std::byte* buffer) {
  const std::string where = concat("variable '", variable, "', shard ",
                                   slice_text({record.slice().starts().begin(), record.slice().starts().end()},
                                              {record.slice().extents().begin(), record.slice().extents().end()}));
  if (record.offset() + record.bytes() > file_size) {
    throw Error::DataLoss(concat(file.path(), " is ", file_size, " bytes, but ", where, " needs bytes ",
                                 record.offset(), " to ", record.offset() + record.bytes(), ": it is truncated"));
  }
  const int64_t chunk = record.chunk_bytes();
  const int64_t c0 = first / chunk, c1 = last / chunk;
  const int64_t begin = c0 * chunk, end = std::min(record.bytes(), (c1 + 1) * chunk);
  file.read_all(buffer + begin, static_cast<size_t>(end - begin), record.offset() + begin, where);
  for (int64_t c = c0; c <= c1; ++c) {
    const int64_t at = c * chunk, bytes = std::min(chunk, record.bytes() - at);
    const uint64_t actual = XXH64(buffer + at, static_cast<size_t>(bytes), 0);
    if (actual != record.chunk_xxh64(static_cast<int>(c))) {
      throw Error::DataLoss(concat(file.path(), ": ", where, ": bytes ", record.offset() + at, " to ",
                                   record.offset() + at + bytes, " have xxh64 ", std::to_string(actual),
                                   " but the manifest expects ",
                                   std::to_string(record.chunk_xxh64(static_cast<int>(c))), ": the file is corrupt"));
    }
  }
  return end - begin;
}

class FileCache {
 public:
  explicit FileCache(std::string directory) : directory_(std::move(directory)) {}
  std::pair<const File*, int64_t> get(const std::string& name, const std::string& why) {
    auto it = files_.find(name);
    if (it == files_.end()) {
      File file = File::open_for_reading(directory_ + "/" + name, why);
      const int64_t size = file.size();
      it = files_.emplace(name, std::make_pair(std::move(file), size)).first;
    }
    return {&it->second.first, it->second.second};
  }

 private:
  std::string directory_;
  std::map<std::string, std::pair<File, int64_t>> files_;
};

// One attempt at one checkpoint: every local shard staged in memory, nothing written into it.
struct Staged {
  proto::CheckpointManifest manifest;
  std::vector<std::unique_ptr<std::byte[]>> shards;  // per local shard, in variables' order
  int64_t bytes_read = 0;
};

Staged stage(const std::string& path, const std::vector<LocalVariable>& variables) {
  Staged staged;
  read_framed(path + "/MANIFEST", staged.manifest);
  const std::map<std::string, SavedVariable> saved = validated(staged.manifest, path);
  check_same_variables(staged.manifest, variables, path);
  FileCache files(path);
  for (const LocalVariable& variable : variables) {
    const SavedVariable& source = saved.at(variable.name);
    const size_t element = size_of(variable.dtype);
    std::vector<Region> targets;
    const size_t first_shard = staged.shards.size();
    for (const LocalShard& shard : variable.shards) {
      targets.push_back({shard.starts, shard.shape.dims()});
      staged.shards.emplace_back(new std::byte[static_cast<size_t>(shard.shape.numel()) * element]);
    }
    if (targets.empty()) continue;
    for (const SavedShard& from : source.shards) {
      int64_t first = -1, last = -1;  // the byte span of the shard that the targets need
      for (const Region& target : targets) {
        const Region meet = from.region.intersect(target);
        if (meet.empty()) continue;
        std::vector<int64_t> low(meet.starts.size()), high(meet.starts.size());
        for (size_t i = 0; i < low.size(); ++i) {
          low[i] = meet.starts[i] - from.region.starts[i];
          high[i] = low[i] + meet.extents[i] - 1;
        }
        const int64_t a = row_major_index(low, from.region.extents) * static_cast<int64_t>(element);
        const int64_t b = (row_major_index(high, from.region.extents) + 1) * static_cast<int64_t>(element) - 1;
        first = first < 0 ? a : std::min(first, a);
        last = std::max(last, b);
      }
      if (first < 0) continue;
      const proto::ShardRecord& record = *from.record;
      const auto [file, size] = files.get(record.file(), concat("variable '", variable.name, "' has a shard there"));
      std::unique_ptr<std::byte[]> buffer(new std::byte[static_cast<size_t>(record.bytes())]);
      staged.bytes_read += read_chunks(*file, size, record, variable.name, first, last, buffer.get());
      for (size_t t = 0; t < targets.size(); ++t) {
        const Region meet = from.region.intersect(targets[t]);
        if (meet.empty()) continue;
        std::vector<int64_t> in_source(meet.starts.size()), in_target(meet.starts.size());
        for (size_t i = 0; i < meet.starts.size(); ++i) {
          in_source[i] = meet.starts[i] - from.region.starts[i];
          in_target[i] = meet.starts[i] - targets[t].starts[i];
        }
        copy_block(buffer.get(), from.region.shape(), in_source, staged.shards[first_shard + t].get(),
                   targets[t].shape(), in_target, meet.extents, element);
      }
    }
  }
  return staged;
}

}  // namespace

// --- The ranks' channel ---

struct RankChannel::State {
  std::unique_ptr<comm::CollectiveWorkers> workers;
  std::unique_ptr<comm::CpuCommunicator> communicator;
  comm::Transport* transport = nullptr;
  uint64_t transport_group = 0;
  std::mutex mutex;  // one operation at a time
  std::mutex broken_mutex;
  std::string broken;  // under broken_mutex

  std::string why_broken() {
    std::lock_guard<std::mutex> lock(broken_mutex);
    return broken;
  }

  // Runs one operation of the communicator and waits for it, at most `timeout_seconds`.
  void wait_for(const std::string& what, double timeout_seconds, int rank,
                const std::function<void(comm::Communicator::Done)>& start) {
    if (const std::string why = why_broken(); !why.empty())
      throw Error::Aborted(concat(what, ": the ranks' channel broke earlier: ", why));
    auto promise = std::make_shared<std::promise<std::string>>();
    std::future<std::string> done = promise->get_future();
    start([promise](const std::string& error) { promise->set_value(error); });
    if (done.wait_for(std::chrono::duration<double>(timeout_seconds)) != std::future_status::ready) {
      const std::string why = concat("rank ", rank, " waited ", timeout_seconds, " s for the other ranks to ", what);
      {
        std::lock_guard<std::mutex> lock(broken_mutex);
        if (broken.empty()) broken = why;
      }
      communicator->abort(why);
      done.wait();
      throw Error::FailedPrecondition(why);
    }
    const std::string error = done.get();
    if (error.empty()) return;
    if (const std::string why = why_broken(); !why.empty()) throw Error::Aborted(concat(what, ": ", why));
    throw Error::FailedPrecondition(concat(what, ": ", error));
  }
};

namespace {

// `flat` cut into consecutive pieces of `counts[r]` values.
std::vector<std::vector<int64_t>> split_by(const std::vector<int64_t>& flat, const std::vector<size_t>& counts) {
  std::vector<std::vector<int64_t>> pieces;
  auto at = flat.begin();
  for (size_t count : counts) {
    pieces.emplace_back(at, at + static_cast<std::ptrdiff_t>(count));
    at += static_cast<std::ptrdiff_t>(count);
  }
  return pieces;
}

}  // namespace

RankChannel::RankChannel(int ranks, int rank, comm::Transport* transport, int group)
    : ranks_(ranks), rank_(rank), state_(std::make_unique<State>()) {
  if (ranks <= 1) return;
  if (transport == nullptr)
    throw Error::InvalidArgument(concat("a checkpoint over ", ranks, " ranks needs the job's transport"));
  std::vector<int> members(ranks);
  for (int r = 0; r < ranks; ++r) members[r] = r;
  state_->transport = transport;
  state_->transport_group = comm::Transport::new_group();
  state_->workers = std::make_unique<comm::CollectiveWorkers>(1);
  state_->communicator =
      std::make_unique<comm::CpuCommunicator>(comm::CommunicatorOptions{.group = group,
                                                                        .member_ranks = members,
                                                                        .rank = rank,
                                                                        .transport = transport,
                                                                        .tag_space = kChannelTagSpace,
                                                                        .transport_group = state_->transport_group,
                                                                        .workers = state_->workers.get()});
}

RankChannel::~RankChannel() {
  if (!state_->communicator) return;
  state_->communicator->abort("the checkpoint channel closed");
  state_->communicator.reset();
  state_->transport->forget_group(state_->transport_group);
  state_->workers.reset();
}

void RankChannel::abort(const std::string& why) {
  if (!state_->communicator) return;
  {
    std::lock_guard<std::mutex> lock(state_->broken_mutex);
    if (!state_->broken.empty()) return;
    state_->broken = why;
  }
  state_->communicator->abort(why);
}

std::vector<int64_t> RankChannel::all_max(std::vector<int64_t> values, const std::string& what,
                                          double timeout_seconds) {
  if (ranks_ <= 1) return values;
  std::lock_guard<std::mutex> lock(state_->mutex);
  std::vector<int64_t> result(values.size());
  state_->wait_for(what, timeout_seconds, rank_, [&](comm::Communicator::Done done) {
    state_->communicator->all_reduce(rank_, values.data(), result.data(), values.size(), DType::i64,
                                     comm::ReduceOp::max, std::move(done));
  });
  return result;
}

std::vector<std::vector<int64_t>> RankChannel::all_gather(const std::vector<int64_t>& values, const std::string& what,
                                                          double timeout_seconds) {
  if (ranks_ <= 1) return {values};
  std::vector<int64_t> sizes(ranks_, 0);
  sizes[rank_] = static_cast<int64_t>(values.size());
  sizes = all_max(sizes, what, timeout_seconds);
  std::vector<size_t> counts(sizes.begin(), sizes.end());
  int64_t total = 0;
  for (int64_t size : sizes) total += size;
  std::vector<int64_t> gathered(static_cast<size_t>(total));
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->wait_for(what, timeout_seconds, rank_, [&](comm::Communicator::Done done) {
      state_->communicator->all_gather(rank_, values.data(), gathered.data(), counts, DType::i64, std::move(done));
    });
  }
  return split_by(gathered, counts);
}

std::vector<std::vector<int64_t>> RankChannel::all_to_all(const std::vector<std::vector<int64_t>>& to_each,
                                                          const std::vector<size_t>& from_each, const std::string& what,
                                                          double timeout_seconds) {
  if (static_cast<int>(to_each.size()) != ranks_ || static_cast<int>(from_each.size()) != ranks_) {
    throw Error::InvalidArgument(concat(what, ": all_to_all expects one piece per rank (", ranks_, ")"));
  }
  if (ranks_ <= 1) return {to_each[0]};
  std::vector<size_t> send_counts;
  std::vector<int64_t> send;
  for (const std::vector<int64_t>& piece : to_each) {
    send_counts.push_back(piece.size());
    send.insert(send.end(), piece.begin(), piece.end());
  }
  size_t total = 0;
  for (size_t count : from_each) total += count;
  std::vector<int64_t> received(total);
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->wait_for(what, timeout_seconds, rank_, [&](comm::Communicator::Done done) {
      state_->communicator->all_to_all(rank_, send.data(), received.data(), send_counts, from_each, DType::i64,
                                       std::move(done));
    });
  }
  return split_by(received, from_each);
}

// --- Saving ---

std::vector<LocalVariable> variables_of(const Graph& graph) {
  std::vector<LocalVariable> variables;
  for (const Node& node : graph.nodes()) {
    if (node.op != "variable") continue;
    variables.push_back({.name = node.attrs.get_string("name"),
                         .shape = node.outputs[0].shape,
                         .dtype = node.outputs[0].dtype,
                         .trainable = node.attrs.get_bool("trainable"),
                         .layout = "",
                         .shards = {}});
  }
  return variables;
}

Snapshot take_snapshot(const std::vector<LocalVariable>& variables, int64_t step, std::map<std::string, int64_t> data,
                       Snapshot* recycled) {
  Snapshot snapshot{.step = step, .data = std::move(data), .variables = variables, .bytes = {}, .sizes = {}};
  size_t next = 0;
  for (LocalVariable& variable : snapshot.variables) {
    for (LocalShard& shard : variable.shards) {
      if (shard.writes) {
        const size_t bytes = static_cast<size_t>(shard.shape.numel()) * size_of(variable.dtype);
        std::unique_ptr<std::byte[]> buffer;
        if (recycled != nullptr && next < recycled->bytes.size() && recycled->sizes[next] == bytes) {
          buffer = std::move(recycled->bytes[next]);
        } else {
          buffer.reset(new std::byte[bytes]);
        }
        std::memcpy(buffer.get(), shard.data, bytes);
        snapshot.bytes.push_back(std::move(buffer));
        snapshot.sizes.push_back(bytes);
        ++next;
      }
      shard.data = nullptr;
    }
  }
  return snapshot;
}

namespace {

// This rank's shards: rank-N.bin (the bytes) and rank-N.part (their records), both fsynced.
int64_t write_part(const std::string& directory, const Snapshot& snapshot, int rank, int ranks) {
  proto::CheckpointManifest part;
  part.set_ranks(ranks);
  const std::string file_name = rank_file(rank, "bin");
  File file = File::create(directory + "/" + file_name);
  int64_t offset = 0;
  size_t next = 0;
  for (const LocalVariable& variable : snapshot.variables) {
    proto::VariableRecord* record = nullptr;
    for (const LocalShard& shard : variable.shards) {
      if (!shard.writes) continue;
      const std::byte* bytes = snapshot.bytes.at(next++).get();
      const size_t size = static_cast<size_t>(shard.shape.numel()) * size_of(variable.dtype);
      if (record == nullptr) {
        record = part.add_variables();
        record->set_name(variable.name);
      }
      proto::ShardRecord* out = record->add_shards();
      for (size_t i = 0; i < shard.starts.size(); ++i) {
        out->mutable_slice()->add_starts(shard.starts[i]);
        out->mutable_slice()->add_extents(shard.shape[static_cast<int>(i)]);
      }
      out->set_file(file_name);
      out->set_offset(offset);
      out->set_bytes(static_cast<int64_t>(size));
      out->set_chunk_bytes(kChunkBytes);
      for (size_t at = 0; at < size; at += kChunkBytes) {
        out->add_chunk_xxh64(XXH64(bytes + at, std::min<size_t>(kChunkBytes, size - at), 0));
      }
      out->set_rank(rank);
      out->set_device(shard.device);
      file.write_all(bytes, size, offset);
      offset += static_cast<int64_t>(size);
    }
  }
  file.sync();
  write_framed(directory + "/" + rank_file(rank, "part"), part);
  return offset;
}

// Rank 0: every rank's records into one MANIFEST, checked to cover each variable exactly.
void write_manifest(const std::string& directory, const Snapshot& snapshot, const Graph& graph, int ranks) {
  proto::CheckpointManifest manifest;
  manifest.set_format_version(kFormatVersion);
  manifest.mutable_position()->set_steps(snapshot.step);
  for (const auto& [key, value] : snapshot.data) (*manifest.mutable_position()->mutable_data())[key] = value;
  manifest.mutable_random()->set_graph_seed(graph.seed());
  manifest.mutable_random()->set_counter(snapshot.step);
  for (const Node& node : graph.nodes()) {
    if (node.op != "dropout") continue;
    proto::DropoutSeed* seed = manifest.mutable_random()->add_dropout();
    seed->set_node(node.name);
    seed->set_seed(node.attrs.get_int("seed"));
  }
  manifest.set_variables_fingerprint(variables_fingerprint(snapshot.variables));
  manifest.set_graph_fingerprint(graph_fingerprint(graph));
  manifest.set_ranks(ranks);
  std::map<std::string, proto::VariableRecord*> by_name;
  for (const LocalVariable& variable : snapshot.variables) {
    proto::VariableRecord* record = manifest.add_variables();
    record->set_name(variable.name);
    record->set_dtype(std::string(name_of(variable.dtype)));
    for (int64_t dim : variable.shape) record->add_shape(dim);
    record->set_trainable(variable.trainable);
    record->set_layout(variable.layout);
    by_name[variable.name] = record;
  }
  int64_t bytes = 0;
  for (int r = 0; r < ranks; ++r) {
    const std::string path = directory + "/" + rank_file(r, "part");
    proto::CheckpointManifest part;
    try {
      read_framed(path, part);
    } catch (const Error& error) {
      throw Error::FailedPrecondition(concat("rank ", r, "'s part of the checkpoint cannot be read (", error.what(),
                                             "); the checkpoint root must be on a filesystem every rank sees"));
    }
    for (const proto::VariableRecord& record : part.variables()) {
      auto it = by_name.find(record.name());
      if (it == by_name.end())
        throw Error::FailedPrecondition(
            concat(path, " holds variable '", record.name(), "', which rank 0's graph lacks"));
      for (const proto::ShardRecord& shard : record.shards()) {
        *it->second->add_shards() = shard;
        bytes += shard.bytes();
      }
    }
    std::error_code ignored;
    fs::remove(path, ignored);
  }
  manifest.set_bytes(bytes);
  manifest.set_unix_seconds(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  validated(manifest, directory);  // the shards of every variable cover it exactly, once
  write_framed(directory + "/MANIFEST", manifest);
  sync_directory(directory);
}

// Renames `partial` to `final_path`, atomically replacing a checkpoint of the same step.
void commit(const std::string& partial, const std::string& final_path, const std::string& root) {
  if (::rename(partial.c_str(), final_path.c_str()) != 0) {
    if (errno != ENOTEMPTY && errno != EEXIST) {
      throw Error::FailedPrecondition(concat("cannot rename ", partial, " to ", final_path, ": ", errno_text()));
    }
    // A checkpoint of this step exists (a run resumed and saved it again): swap, then drop the old.
    if (::renameat2(AT_FDCWD, partial.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) != 0) {
      throw Error::FailedPrecondition(concat("cannot exchange ", partial, " with ", final_path, ": ", errno_text()));
    }
    std::error_code ignored;
    fs::remove_all(partial, ignored);  // the old copy of this step
  }
  sync_directory(root);
}

void prune(const std::string& root, int keep) {
  const std::vector<std::string> committed = list(root);
  for (size_t i = static_cast<size_t>(std::max(1, keep)); i < committed.size(); ++i) {
    std::error_code ignored;
    fs::remove_all(committed[i], ignored);
  }
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    if (entry.path().filename().string().rfind(".partial-", 0) == 0) {
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);  // a save that crashed, or was abandoned
    }
  }
}

}  // namespace

CheckpointInfo write(const std::string& root, const Snapshot& snapshot, const Graph& graph, RankChannel& channel,
                     int keep) {
  const int rank = channel.rank(), ranks = channel.ranks();
  // The ranks agree on the partial directory's name: rank 0's nonce.
  int64_t nonce = 0;
  if (rank == 0) nonce = static_cast<int64_t>(std::random_device{}() >> 1) << 20 ^ static_cast<int64_t>(::getpid());
  nonce = channel.all_max({nonce}, "agree on a checkpoint's name")[0];
  char suffix[24];
  std::snprintf(suffix, sizeof suffix, "-%llx", static_cast<unsigned long long>(nonce));
  const std::string partial = concat(root, "/.partial-", step_name(snapshot.step), suffix);
  const std::string final_path = concat(root, "/", step_name(snapshot.step));
  CheckpointInfo info{.path = final_path, .step = snapshot.step, .data = snapshot.data};
  std::string failure;
  try {
    std::error_code error;
    fs::create_directories(partial, error);
    if (error) throw Error::FailedPrecondition(concat("cannot create ", partial, ": ", error.message()));
    info.bytes = write_part(partial, snapshot, rank, ranks);
  } catch (const std::exception& error) {  // Error, and bad_alloc: every rank must reach the agreement
    failure = error.what();
  }
  const auto failed_anywhere = [&](const std::string& what) {
    const int64_t any = channel.all_max({failure.empty() ? 0 : 1}, what)[0];
    if (any == 0) return;
    if (rank == 0) {
      std::error_code ignored;
      fs::remove_all(partial, ignored);
    }
    throw Error::FailedPrecondition(
        failure.empty()
            ? concat("the checkpoint of step ", snapshot.step, " was abandoned: another rank could not ", what)
            : concat("the checkpoint of step ", snapshot.step, " was abandoned: ", failure));
  };
  failed_anywhere("write its shards");
  if (rank == 0) {
    try {
      write_manifest(partial, snapshot, graph, ranks);
      commit(partial, final_path, root);
      prune(root, keep);
    } catch (const std::exception& error) {
      failure = error.what();
    }
  }
  failed_anywhere("commit the checkpoint");
  return info;
}

// --- Loading ---

std::vector<std::string> list(const std::string& root) {
  static const std::regex name("step-([0-9]{1,18})");
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    std::smatch match;
    const std::string file = entry.path().filename().string();
    if (entry.is_directory(error) && std::regex_match(file, match, name))
      found.emplace_back(std::stoll(match[1]), entry.path().string());
  }
  std::sort(found.begin(), found.end(), std::greater<>());
  std::vector<std::string> paths;
  for (auto& [step, path] : found) paths.push_back(std::move(path));
  return paths;
}

namespace {
bool is_checkpoint(const std::string& path) {
  static const std::regex name("step-[0-9]{1,18}");
  std::error_code error;  // unreadable: treated as absent, and named by what reads it next
  return fs::exists(path + "/MANIFEST", error) || std::regex_match(fs::path(path).filename().string(), name);
}
}  // namespace

CheckpointInfo restore(const std::string& path, const std::vector<LocalVariable>& variables, const Graph& graph,
                       RankChannel& channel) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const std::vector<std::string> candidates =
      is_checkpoint(trimmed) ? std::vector<std::string>{trimmed} : list(trimmed);
  // Every rank must take the same path through the candidates: all agree or all refuse.
  const int64_t own = static_cast<int64_t>(candidates.size());
  const std::vector<int64_t> counts = channel.all_max({own, -own}, "list the checkpoints");
  if (counts[0] != -counts[1]) {
    throw Error::FailedPrecondition(concat("the ranks see from ", -counts[1], " to ", counts[0], " checkpoints in ",
                                           trimmed, " (rank ", channel.rank(), " sees ", own,
                                           "): the root must be on a filesystem every rank sees"));
  }
  if (candidates.empty()) {
    throw Error::NotFound(
        concat("no checkpoint in ", trimmed,
               ": expected a checkpoint (a step-N directory with a MANIFEST) or a root holding step-N directories"));
  }
  CheckpointInfo info;
  for (const std::string& candidate : candidates) {
    std::string failure;
    int64_t code = 0;  // 1: damaged (try the previous one), 2: refused (it is not this model's)
    Staged staged;
    try {
      staged = stage(candidate, variables);
    } catch (const Error& error) {
      failure = error.what();
      code = error.code() == ErrorCode::kFailedPrecondition ? 2 : 1;
    } catch (const std::exception& error) {  // bad_alloc, a filesystem error: this one cannot be read
      failure = concat(candidate, ": ", error.what());
      code = 1;
    }
    const int64_t step = code == 0 ? staged.manifest.position().steps() : -1;
    const std::vector<int64_t> agreed = channel.all_max({code, step, -step}, "agree on the checkpoint to restore");
    if (agreed[0] == 2)
      throw Error::FailedPrecondition(failure.empty() ? concat("another rank refused ", candidate) : failure);
    if (agreed[0] == 1) {
      const std::string why = failure.empty() ? "another rank could not read it" : failure;
      LOG(WARNING) << "checkpoint " << candidate << " is damaged, so it is passed over: " << why;
      info.skipped.push_back(concat(candidate, ": ", why));
      continue;
    }
    if (agreed[1] != -agreed[2])
      throw Error::FailedPrecondition(concat("the ranks read ", candidate, " as different steps"));
    size_t next = 0;
    for (const LocalVariable& variable : variables) {
      for (const LocalShard& shard : variable.shards) {
        std::memcpy(shard.data, staged.shards[next++].get(),
                    static_cast<size_t>(shard.shape.numel()) * size_of(variable.dtype));
      }
    }
    if (staged.manifest.random().graph_seed() != graph.seed()) {
      LOG(WARNING) << candidate << " was written by a graph of seed " << staged.manifest.random().graph_seed()
                   << " and this one's is " << graph.seed() << ": dropout draws differ from the run that wrote it";
    }
    if (staged.manifest.graph_fingerprint() != graph_fingerprint(graph)) {
      LOG(INFO) << candidate << " was written by a graph with the same variables and other ops";
    }
    if (!info.skipped.empty()) LOG(WARNING) << "restored the previous complete checkpoint, " << candidate;
    info.path = candidate;
    info.step = step;
    info.bytes = staged.bytes_read;
    for (const auto& [key, value] : staged.manifest.position().data()) info.data[key] = value;
    return info;
  }
  std::string reasons;
  for (const std::string& skipped : info.skipped) reasons += "\n  " + skipped;
  throw Error::DataLoss(concat("no complete checkpoint in ", trimmed, ":", reasons));
}

std::string describe(const std::string& path) {
  proto::CheckpointManifest manifest;
  read_framed(path + "/MANIFEST", manifest);
  validated(manifest, path);
  std::string text =
      concat(path, ": step ", manifest.position().steps(), ", written by ", manifest.ranks(), " rank(s), ",
             manifest.bytes(), " tensor bytes, ", manifest.variables_size(), " variables\n");
  for (const auto& [key, value] : manifest.position().data())
    text += concat("  data position ", key, " = ", value, "\n");
  text += concat("  random: graph seed ", manifest.random().graph_seed(), ", ", manifest.random().dropout_size(),
                 " dropout seeds, counter ", manifest.random().counter(), "\n");
  for (const proto::VariableRecord& variable : manifest.variables()) {
    const Shape shape(std::vector<int64_t>(variable.shape().begin(), variable.shape().end()));
    text += concat(
        "  ", variable.name(), " ", shape, " ", variable.dtype(), variable.trainable() ? " parameter" : " state",
        variable.layout().empty() ? "" : concat(", ", variable.layout()), ", ", variable.shards_size(), " shard(s)\n");
    for (const proto::ShardRecord& shard : variable.shards()) {
      text += concat("    ",
                     slice_text({shard.slice().starts().begin(), shard.slice().starts().end()},
                                {shard.slice().extents().begin(), shard.slice().extents().end()}),
                     " ", shard.file(), " @", shard.offset(), " ", shard.bytes(), " bytes, ", shard.chunk_xxh64_size(),
                     " chunks, from rank ", shard.rank(), " ", shard.device(), "\n");
    }
  }
  return text;
}

int64_t verify(const std::string& path) {
  proto::CheckpointManifest manifest;
  read_framed(path + "/MANIFEST", manifest);
  validated(manifest, path);
  FileCache files(path);
  int64_t bytes = 0;
  for (const proto::VariableRecord& variable : manifest.variables()) {
    for (const proto::ShardRecord& shard : variable.shards()) {
      if (shard.bytes() == 0) continue;
      const auto [file, size] = files.get(shard.file(), concat("variable '", variable.name(), "' has a shard there"));
      std::unique_ptr<std::byte[]> buffer(new std::byte[static_cast<size_t>(shard.bytes())]);
      bytes += read_chunks(*file, size, shard, variable.name(), 0, shard.bytes() - 1, buffer.get());
    }
  }
  return bytes;
}

}  // namespace tessel::checkpoint
