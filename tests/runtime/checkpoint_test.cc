// Checkpoints in one process (runtime/checkpoint.h): the four example layouts save and restore
// onto each other and onto other device counts and meshes; the same layout resumes bit for bit;
// damaged checkpoints are refused with their file and variable and the previous one is used;
// another model is refused by variable. Multi-process saves, kills and resumes are in
// tests/launch/checkpoint_test.sh.
#include "runtime/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "apps/models/parallel.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "tests/test_support.h"

namespace tessel {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/tessel-checkpoint-test-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Every variable of the graph (parameters and AdamW's moments), by name.
std::map<std::string, HostTensor> all_variables(Graph& g, const std::function<HostTensor(const std::string&)>& read) {
  std::map<std::string, HostTensor> values;
  for (const Node& node : g.nodes()) {
    if (node.op == "variable") values[node.attrs.get_string("name")] = read(node.attrs.get_string("name"));
  }
  return values;
}

// The largest difference relative to each tensor's largest magnitude (at least 1e-3).
double largest_difference(const std::map<std::string, HostTensor>& a, const std::map<std::string, HostTensor>& b,
                          std::string* where) {
  double worst = 0;
  EXPECT_EQ(a.size(), b.size());
  for (const auto& [name, x] : a) {
    const HostTensor& y = b.at(name);
    EXPECT_EQ(x.shape(), y.shape()) << name;
    double scale = 1e-3;
    for (int64_t i = 0; i < y.numel(); ++i) scale = std::max(scale, std::abs(static_cast<double>(y.get(i))));
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double error = std::abs(x.get(i) - y.get(i)) / scale;
      if (error > worst) worst = error, *where = name;
    }
  }
  return worst;
}

bool same_bits(const std::map<std::string, HostTensor>& a, const std::map<std::string, HostTensor>& b) {
  for (const auto& [name, x] : a) {
    const HostTensor& y = b.at(name);
    if (x.nbytes() != y.nbytes() || std::memcmp(x.raw(), y.raw(), x.nbytes()) != 0) {
      ADD_FAILURE() << name << " differs: " << x.get(0) << " " << y.get(0) << " " << x.get(x.numel() - 1) << " "
                    << y.get(y.numel() - 1);
      return false;
    }
  }
  return true;
}

struct Layout {
  std::string example;
  int devices;
  std::string label() const { return concat(example, " over ", devices); }
};

struct Trained {
  models::ParallelExample example;
  std::unique_ptr<Session> session;
};

Trained make(const Layout& layout) {
  Trained t{models::build_parallel_example(layout.example, {.devices = layout.devices}), nullptr};
  t.session = std::make_unique<Session>(*t.example.graph, std::vector<Tensor>{t.example.loss},
                                        SessionOptions{.placement = t.example.placement});
  return t;
}

void train(Trained& t, int64_t steps) {
  t.session->run(steps, [&](int64_t step) -> std::optional<Feeds> { return t.example.feeds(step); });
}

std::map<std::string, HostTensor> variables_of(Trained& t) {
  return all_variables(*t.example.graph, [&](const std::string& name) { return t.session->variable(name); });
}

// The uninterrupted one-device run: the interpreter, `steps` steps.
std::map<std::string, HostTensor> reference(int64_t steps) {
  models::ParallelExample e = models::build_parallel_example("data-parallel", {.devices = 1});
  Interpreter interpreter(*e.graph);
  for (int64_t s = 0; s < steps; ++s) interpreter.train_step(e.feeds(s), {e.loss});
  return all_variables(*e.graph, [&](const std::string& name) { return interpreter.variable(name); });
}

TEST(Checkpoint, TheSameLayoutResumesBitForBit) {
  for (const std::string& name : models::parallel_example_names()) {
    SCOPED_TRACE(name);
    TempDir root;
    Trained a = make({name, 4});
    train(a, 6);
    a.session->save(root.path());
    const CheckpointInfo saved = a.session->wait_for_save();
    EXPECT_EQ(saved.step, 6);
    EXPECT_EQ(saved.path, root / "step-000000000006");
    train(a, 4);
    Trained b = make({name, 4});
    const CheckpointInfo restored = b.session->restore(root.path());
    EXPECT_EQ(restored.step, 6);
    EXPECT_EQ(b.session->steps_done(), 6);
    train(b, 4);
    EXPECT_EQ(b.session->steps_done(), 10);
    EXPECT_TRUE(same_bits(variables_of(a), variables_of(b)));
  }
}

// Saved under each layout (and by the interpreter), restored under each other one and under
// other device counts and mesh shapes: training on equals the uninterrupted one-device run.
TEST(Checkpoint, EveryLayoutLoadsOntoEveryOther) {
  const std::map<std::string, HostTensor> expected = reference(10);
  const std::vector<Layout> sources = {{"data-parallel", 4}, {"tensor-parallel", 4}, {"pipeline", 4}, {"hybrid", 4}};
  const std::vector<Layout> targets = {{"data-parallel", 4}, {"tensor-parallel", 4}, {"pipeline", 4}, {"hybrid", 4},
                                       {"data-parallel", 1}, {"tensor-parallel", 3}, {"hybrid", 8},   {"pipeline", 2}};
  for (const Layout& source : sources) {
    TempDir root;
    {
      Trained a = make(source);
      train(a, 5);
      a.session->save(root.path());
      a.session->wait_for_save();
    }
    for (const Layout& target : targets) {
      SCOPED_TRACE(concat(source.label(), " -> ", target.label()));
      Trained b = make(target);
      const CheckpointInfo info = b.session->restore(root.path());
      EXPECT_EQ(info.step, 5);
      EXPECT_TRUE(info.skipped.empty());
      train(b, 5);
      std::string where;
      const double worst = largest_difference(variables_of(b), expected, &where);
      EXPECT_LE(worst, 1e-5) << "in " << where;
    }
  }
}

TEST(Checkpoint, TheInterpreterSavesAndLoadsLikeAnyLayout) {
  TempDir root;
  models::ParallelExample e = models::build_parallel_example("data-parallel", {.devices = 1});
  Session one(*e.graph, {e.loss}, {.use_interpreter = true});
  one.run(5, [&](int64_t step) -> std::optional<Feeds> { return e.feeds(step); });
  one.save(root.path(), {{"epoch", 2}});
  EXPECT_EQ(one.wait_for_save().step, 5);
  Trained b = make({"hybrid", 4});
  const CheckpointInfo info = b.session->restore(root.path());
  EXPECT_EQ(info.data, (std::map<std::string, int64_t>{{"epoch", 2}}));
  train(b, 5);
  std::string where;
  EXPECT_LE(largest_difference(variables_of(b), reference(10), &where), 1e-5) << where;

  Session back(*e.graph, {e.loss}, {.use_interpreter = true});  // and from a layout into the interpreter
  Trained c = make({"tensor-parallel", 4});
  train(c, 3);
  TempDir other;
  c.session->save(other.path());
  c.session->wait_for_save();
  EXPECT_EQ(back.restore(other.path()).step, 3);
  EXPECT_EQ(back.steps_done(), 3);
  EXPECT_TRUE(
      same_bits(all_variables(*e.graph, [&](const std::string& n) { return back.variable(n); }), variables_of(c)));
}

// A broadcast variable is written once; a split one once per slice; nothing is ever P.
TEST(Checkpoint, BroadcastCopiesAreWrittenOnceAndSplitsOncePerSlice) {
  for (const std::string& name : models::parallel_example_names()) {
    SCOPED_TRACE(name);
    TempDir root;
    Trained a = make({name, 4});
    a.session->save(root.path());
    const CheckpointInfo info = a.session->wait_for_save();
    int64_t whole = 0;  // bytes of every variable, once
    for (const Node& node : a.example.graph->nodes()) {
      if (node.op == "variable") whole += node.outputs[0].shape.numel() * 4;
    }
    EXPECT_EQ(info.bytes, whole);
    const std::string text = checkpoint::describe(info.path);
    EXPECT_NE(text.find("l1/w [32, 128] f32 parameter"), std::string::npos) << text;
    EXPECT_EQ(text.find("P("), std::string::npos) << text;
  }
}

// Each rank reads only the chunks covering the slices it owns: here a "rank" that owns rows
// 0 to 255 of a [1024, 1024] variable reads a quarter of it.
TEST(Checkpoint, ARankReadsOnlyTheChunksOfItsSlices) {
  TempDir root;
  Graph g(3);
  Tensor w = g.param("w", {1024, 1024}, init::normal(1.0));
  Tensor x = g.input("x", {2, 1024});
  Tensor loss = mean(matmul(x, w));
  g.minimize(loss, SGD{.lr = 0.1});
  Session session(g, {loss});
  session.save(root.path());
  EXPECT_EQ(session.wait_for_save().bytes, 1024 * 1024 * 4);
  const HostTensor full = session.variable("w");

  std::vector<checkpoint::LocalVariable> variables = checkpoint::variables_of(g);
  ASSERT_EQ(variables.size(), 1u);
  HostTensor rows(Shape{256, 1024}, DType::f32), columns(Shape{1024, 2}, DType::f32);
  variables[0].shards.push_back(
      {.device = "cpu:0", .starts = {256, 0}, .shape = rows.shape(), .data = static_cast<std::byte*>(rows.raw())});
  checkpoint::RankChannel alone(1, 0, nullptr);
  CheckpointInfo info = checkpoint::restore(root.path(), variables, g, alone);
  EXPECT_EQ(info.bytes, 256 * 1024 * 4);  // 4 of the 16 chunks
  EXPECT_TRUE(same_bits({{"w", block_of(full, {256, 0}, rows.shape())}}, {{"w", rows}}));
  // Two columns touch every row: every chunk is read.
  variables[0].shards = {
      {.device = "cpu:0", .starts = {0, 5}, .shape = columns.shape(), .data = static_cast<std::byte*>(columns.raw())}};
  info = checkpoint::restore(root.path(), variables, g, alone);
  EXPECT_EQ(info.bytes, 1024 * 1024 * 4);
  EXPECT_TRUE(same_bits({{"w", block_of(full, {0, 5}, columns.shape())}}, {{"w", columns}}));
}

void flip_byte(const std::string& path, int64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(offset);
  char c = 0;
  file.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  file.seekp(offset);
  file.write(&c, 1);
}

// Two checkpoints, of steps 3 and 6; the newer one is then damaged.
struct TwoCheckpoints {
  TempDir root;
  Trained t = make({"tensor-parallel", 4});
  std::map<std::string, HostTensor> at_step_3;
  TwoCheckpoints() {
    train(t, 3);
    at_step_3 = variables_of(t);
    t.session->save(root.path());
    train(t, 3);
    t.session->save(root.path());
    t.session->wait_for_save();
  }
  std::string newer() const { return root / "step-000000000006"; }
  // Restoring the root falls back to step 3 and says why.
  void expect_fallback(const std::vector<std::string>& fragments) {
    Trained fresh = make({"data-parallel", 2});
    const CheckpointInfo info = fresh.session->restore(root.path());
    EXPECT_EQ(info.step, 3);
    EXPECT_EQ(info.path, root / "step-000000000003");
    ASSERT_EQ(info.skipped.size(), 1u);
    for (const std::string& fragment : fragments)
      EXPECT_NE(info.skipped[0].find(fragment), std::string::npos) << info.skipped[0];
    std::string where;
    EXPECT_EQ(largest_difference(variables_of(fresh), at_step_3, &where), 0) << where;
  }
};

TEST(Checkpoint, AFlippedByteIsRefusedAndThePreviousCheckpointUsed) {
  TwoCheckpoints c;
  flip_byte(c.newer() + "/rank-00000.bin", 100);  // inside l1/w, the first shard written
  EXPECT_TESSEL_ERROR(checkpoint::verify(c.newer()), ErrorCode::kDataLoss, "rank-00000.bin", "variable 'l1/w'",
                      "the manifest expects", "corrupt");
  Trained fresh = make({"data-parallel", 4});
  EXPECT_TESSEL_ERROR(fresh.session->restore(c.newer()), ErrorCode::kDataLoss, "rank-00000.bin", "variable 'l1/w'",
                      "corrupt");
  c.expect_fallback({"step-000000000006", "corrupt", "l1/w"});
}

TEST(Checkpoint, ATruncatedFileIsRefusedAndThePreviousCheckpointUsed) {
  TwoCheckpoints c;
  const std::string file = c.newer() + "/rank-00000.bin";
  fs::resize_file(file, fs::file_size(file) - 10);
  EXPECT_TESSEL_ERROR(checkpoint::verify(c.newer()), ErrorCode::kDataLoss, "rank-00000.bin", "truncated");
  c.expect_fallback({"rank-00000.bin", "truncated"});
}

TEST(Checkpoint, AMissingFileIsRefusedAndThePreviousCheckpointUsed) {
  TwoCheckpoints c;
  fs::remove(c.newer() + "/rank-00000.bin");
  EXPECT_TESSEL_ERROR(checkpoint::verify(c.newer()), ErrorCode::kDataLoss, "rank-00000.bin", "missing", "variable '");
  c.expect_fallback({"rank-00000.bin", "missing"});
}

TEST(Checkpoint, ADamagedManifestIsRefusedAndThePreviousCheckpointUsed) {
  {
    TwoCheckpoints c;
    flip_byte(c.newer() + "/MANIFEST", 40);
    EXPECT_TESSEL_ERROR(checkpoint::verify(c.newer()), ErrorCode::kDataLoss, "MANIFEST", "corrupt");
    c.expect_fallback({"MANIFEST", "corrupt"});
  }
  {
    TwoCheckpoints c;
    fs::resize_file(c.newer() + "/MANIFEST", 20);
    c.expect_fallback({"MANIFEST", "shorter than the 32-byte header"});
  }
  {
    TwoCheckpoints c;
    fs::remove(c.newer() + "/MANIFEST");
    c.expect_fallback({"MANIFEST", "missing"});
  }
}

TEST(Checkpoint, NoIntactCheckpointIsAnErrorListingEach) {
  TwoCheckpoints c;
  flip_byte(c.newer() + "/rank-00000.bin", 100);
  flip_byte(c.root / "step-000000000003/rank-00000.bin", 100);
  Trained fresh = make({"data-parallel", 4});
  EXPECT_TESSEL_ERROR(fresh.session->restore(c.root.path()), ErrorCode::kDataLoss, "no complete checkpoint in",
                      "step-000000000006", "step-000000000003");
  TempDir empty;
  EXPECT_TESSEL_ERROR(fresh.session->restore(empty.path()), ErrorCode::kNotFound, "no checkpoint in", empty.path());
}

TEST(Checkpoint, AnotherModelIsRefusedNamingTheVariable) {
  TempDir root;
  Trained a = make({"data-parallel", 4});
  a.session->save(root.path());
  a.session->wait_for_save();
  {
    models::ParallelExample wider = models::build_parallel_example("data-parallel", {.hidden = 64, .devices = 4});
    Session other(*wider.graph, {wider.loss}, {.placement = wider.placement});
    EXPECT_TESSEL_ERROR(other.restore(root.path()), ErrorCode::kFailedPrecondition, "variable 'l1/w' is [32, 64] f32",
                        "but [32, 128] f32 in the checkpoint");
  }
  {
    Graph g(1);  // SGD: no moments
    Tensor x = g.input("x", {4, 32});
    Tensor w = g.param("l1/w", {32, 128});
    Tensor loss = mean(matmul(x, w));
    g.minimize(loss, SGD{});
    Session other(g, {loss});
    EXPECT_TESSEL_ERROR(other.restore(root.path()), ErrorCode::kFailedPrecondition, "cannot load", "variable");
  }
}

TEST(Checkpoint, KeepsTheNewestAndReplacesASavedStep) {
  TempDir root;
  models::ParallelExample e = models::build_parallel_example("hybrid", {.devices = 4});
  Session session(*e.graph, {e.loss}, {.placement = e.placement, .keep_checkpoints = 2});
  for (int i = 0; i < 3; ++i) {
    session.run(2, [&](int64_t step) -> std::optional<Feeds> { return e.feeds(step); });
    session.save(root.path());
  }
  session.wait_for_save();
  EXPECT_EQ(checkpoint::list(root.path()),
            (std::vector<std::string>{root / "step-000000000006", root / "step-000000000004"}));
  session.restore(root / "step-000000000004");
  session.save(root.path());  // step 4 again, with the same values
  session.wait_for_save();
  EXPECT_EQ(checkpoint::list(root.path()),
            (std::vector<std::string>{root / "step-000000000006", root / "step-000000000004"}));
  EXPECT_EQ(checkpoint::verify(root / "step-000000000004"), checkpoint::verify(root / "step-000000000006"));
  for (const auto& entry : fs::directory_iterator(root.path())) {
    EXPECT_EQ(entry.path().filename().string().rfind(".partial", 0), std::string::npos) << entry.path();
  }
}

TEST(Checkpoint, CheckpointEveryStepsSavesInTheBackgroundAndResumes) {
  TempDir root;
  const std::map<std::string, HostTensor> expected = reference(10);
  {
    models::ParallelExample e = models::build_parallel_example("pipeline", {.devices = 4});
    int64_t samples = 0;
    Session session(
        *e.graph, {e.loss},
        {.placement = e.placement, .checkpoint_dir = root.path(), .checkpoint_every = 3, .data_position = [&] {
           return std::map<std::string, int64_t>{{"samples", samples}};
         }});
    const auto outputs = session.run(
        8, [&](int64_t step) -> std::optional<Feeds> { return e.feeds(step); },
        [&](int64_t, const std::vector<HostTensor>&) { samples += 64; });
    EXPECT_EQ(outputs.size(), 8u);
    EXPECT_EQ(session.wait_for_save().step, 6);
  }
  EXPECT_EQ(checkpoint::list(root.path()),
            (std::vector<std::string>{root / "step-000000000006", root / "step-000000000003"}));
  Trained b = make({"data-parallel", 4});
  const CheckpointInfo info = b.session->restore(root.path());
  EXPECT_EQ(info.step, 6);
  EXPECT_EQ(info.data.at("samples"), 6 * 64);
  train(b, 4);
  std::string where;
  EXPECT_LE(largest_difference(variables_of(b), expected, &where), 1e-5) << where;
}

// Dropout's draws are a function of (seed, step, element): a restored run draws the masks the
// uninterrupted run drew at the same steps, and the seeds are in the manifest.
TEST(Checkpoint, DropoutDrawsGoOnFromTheRestoredStep) {
  const auto build = [](Graph& g) {
    Tensor x = g.input("x", {8, 16});
    Tensor w = g.param("w", {16, 16}, init::normal(0.3));
    Tensor loss = mean(dropout(relu(matmul(x, w)), 0.5, 99));
    g.minimize(loss, AdamW{.lr = 1e-2});
    return loss;
  };
  const Feeds feeds{{"x", testing::random_tensor(Shape{8, 16}, 5)}};
  const auto feed = [&](int64_t) -> std::optional<Feeds> { return feeds; };
  TempDir root;
  Graph a(11);
  Tensor loss_a = build(a);
  Session straight(a, {loss_a}, {.placement = Placement::cpu(2)});
  straight.run(3, feed);
  straight.save(root.path());
  straight.wait_for_save();
  const auto later = straight.run(4, feed);
  Graph b(11);
  Tensor loss_b = build(b);
  Session resumed(b, {loss_b}, {.placement = Placement::cpu(2)});
  resumed.restore(root.path());
  const auto again = resumed.run(4, feed);
  for (size_t i = 0; i < later.size(); ++i) EXPECT_EQ(later[i][0].get(0), again[i][0].get(0)) << "step " << i + 3;
  EXPECT_TRUE(same_bits({{"w", straight.variable("w")}}, {{"w", resumed.variable("w")}}));
  const std::string text = checkpoint::describe(root / "step-000000000003");
  EXPECT_NE(text.find("random: graph seed 11, 1 dropout seeds, counter 3"), std::string::npos) << text;
}

TEST(Checkpoint, BadArgumentsAreNamed) {
  Trained a = make({"data-parallel", 2});
  EXPECT_TESSEL_ERROR(a.session->wait_for_save(), ErrorCode::kFailedPrecondition, "no save is in flight");
  EXPECT_TESSEL_ERROR(a.session->save(""), ErrorCode::kInvalidArgument, "empty path");
  a.session->save("/proc/tessel-cannot-write-here");
  EXPECT_TESSEL_ERROR(a.session->wait_for_save(), ErrorCode::kFailedPrecondition, "/proc/tessel-cannot-write-here");
}

}  // namespace
}  // namespace tessel
