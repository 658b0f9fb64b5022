// tessel-example: trains one of the parallel examples (apps/models/parallel.h) over CPU
// devices in this process, and the same graph on one device through the reference
// interpreter, side by side: the losses and the parameters must agree.
//
//   tessel-example tensor-parallel [--steps 100] [--every 10] [--workers 1] [--devices N] [--plan]
//
// Placements follow the job: the example is laid over --devices devices, by default 4 when the
// job's ranks divide 4 (one process: 4 devices; 2 ranks: 2 each) and one per rank otherwise, so
// `tessel-launch --nproc-per-node 8` trains over 8 devices.
//
// Exits 0 when every parameter matches the one-device run within --tolerance relative (1e-4 by
// default), 1 otherwise.
//
// Started by tessel-launch (TESSEL_RANK set), each process is one rank of a job: the example's
// devices are spread over the ranks, and each rank checks its own shards against the
// interpreter (which every rank runs on its own).
//
//   tessel-launch --nproc-per-node 2 -- tessel-example data-parallel
//
// Recovery: under tessel-launch --nnodes MIN:MAX the job survives lost ranks (runtime/session.h,
// SessionOptions::job); --snapshot-every K keeps the in-memory snapshots every K steps (by
// default as often as costs under 5% of the steps). With a sample log, every process then writes FILE.memberM, with a
// line "resumed at step S" at each recovery (the steps after S run again).
//
// Checkpoints: --checkpoint-dir DIR --checkpoint-every K saves every K steps (in the
// background); --resume restores the newest complete checkpoint in DIR, onto this run's layout
// whatever layout wrote it, and trains on to --steps. --sample-log FILE appends, as each step
// completes, the samples it trained on ("step 12 samples 768-831"; sample i of step s is row i
// of its batch, s * batch + i). --no-check trains without the one-device run beside it.
// --save-parameters FILE writes, as training ends, this rank's shards of every parameter into
// FILE.rankR, one element a line: "NAME INDEX VALUE", INDEX its place in the whole parameter
// (row-major), so runs of any layouts compare line by line.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "apps/cli/flags.h"
#include "apps/cli/metrics.h"
#include "apps/models/parallel.h"
#include "comm/job.h"
#include "core/logging.h"
#include "graph/plan_inspect.h"
#include "proto/plan.pb.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"

int main(int argc, char** argv) {
  using namespace tessel;
  init_logging(argv[0]);
  std::string name;
  int64_t steps = 100, every = 10, workers = 1, devices = 0, hidden = 128, checkpoint_every = 0, snapshot_every = 0;
  bool show_plan = false, resume = false, no_check = false;
  double tolerance = 1e-4;
  std::string checkpoint_dir, sample_log, parameters_file;
  const int64_t big = int64_t{1} << 40;
  std::string names;
  for (const std::string& example : models::parallel_example_names()) names += (names.empty() ? "" : ", ") + example;
  CLI::App app("trains a parallel example beside the same graph on one device", "tessel-example");
  cli::style(app);
  app.add_option("NAME", name, "the example: " + names)->required();
  app.add_option("--steps", steps, "training steps")->check(cli::integer_in(1, big));
  app.add_option("--every", every, "steps between progress lines")->check(cli::integer_in(1, big));
  app.add_option("--workers", workers, "actors that run at once, per device")->check(cli::integer_in(1, 256));
  app.add_option("--devices", devices, "devices (default: 4 when the job's ranks divide 4, else one per rank)")
      ->check(cli::integer_in(1, 1 << 16));
  app.add_option("--hidden", hidden, "the MLP's hidden width")->check(cli::integer_in(1, 1 << 20));
  app.add_option("--checkpoint-dir", checkpoint_dir, "where checkpoints go")
      ->type_name("DIR")
      ->check([](const std::string& text) { return text.empty() ? std::string("expected a directory, got ''") : ""; });
  app.add_option("--checkpoint-every", checkpoint_every, "saves every K steps, in the background")
      ->check(cli::integer_in(1, big));
  app.add_flag("--resume", resume, "restores the newest complete checkpoint in --checkpoint-dir");
  app.add_option("--snapshot-every", snapshot_every, "steps between in-memory snapshots (0: as often as costs under 5%)")
      ->check(cli::integer_in(0, big));
  app.add_option("--sample-log", sample_log, "appends the samples each step trained on to FILE")->type_name("FILE");
  app.add_flag("--no-check", no_check, "trains without the one-device run beside it");
  app.add_option("--tolerance", tolerance, "the largest relative difference from one device")
      ->check(cli::number_in(1e-300, 1e300));
  app.add_option("--save-parameters", parameters_file, "writes this rank's parameter shards into FILE.rankR")
      ->type_name("FILE")
      ->check([](const std::string& text) { return text.empty() ? std::string("expected a file name, got ''") : ""; });
  app.add_flag("--plan", show_plan, "prints the plan");
  std::string metrics_path;
  app.add_option("--metrics", metrics_path, "writes each step's loss (and the one-device loss) and time as JSON Lines")
      ->type_name("FILE");
  cli::add_trace_flag(app);
  cli::parse(app, argc, argv);
  const bool check = !no_check;
  if ((resume || checkpoint_every > 0) && checkpoint_dir.empty()) {
    std::fprintf(stderr, "tessel-example: --resume and --checkpoint-every need --checkpoint-dir\n");
    return 2;
  }
  try {
    std::optional<comm::JobConfig> config = comm::job_config_from_environment();
    std::unique_ptr<comm::Job> job = config ? std::make_unique<comm::Job>(*config) : nullptr;
    const int ranks = job ? job->world_size() : 1, rank = job ? job->rank() : 0;
    if (devices == 0) devices = 4 % ranks == 0 ? 4 : ranks;
    const models::ExampleSize size{.hidden = hidden, .devices = static_cast<int>(devices)};
    models::ParallelExample example = models::build_parallel_example(name, size);
    Graph& g = *example.graph;
    // With recovery on (tessel-launch --nnodes MIN:MAX), every process logs its own samples, and
    // the steps it runs again after a recovery.
    const bool recovery = job && job->recovery();
    std::FILE* samples = nullptr;
    if (!sample_log.empty() && (rank == 0 || recovery)) {
      const std::string path = recovery ? concat(sample_log, ".member", job->member()) : sample_log;
      samples = std::fopen(path.c_str(), "a");
      if (samples == nullptr) throw Error::FailedPrecondition(concat("cannot open --sample-log ", path));
    }
    // After a recovery: this rank's restored shards against a one-device run of as many steps.
    std::unique_ptr<Session> session;
    const auto check_restored = [&](const MembershipChange& change) {
      Interpreter fresh(g);
      for (int64_t step = 0; step < change.resumed_at; ++step) fresh.train_step(example.feeds(step), {example.loss});
      double worst = 0;
      for (const Tensor& param : g.params()) {
        const std::string variable = g.node(param.node()).attrs.get_string("name");
        const HostTensor b = fresh.variable(variable);
        double scale = 1e-3;
        for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(b.get(i)));
        for (const VariableShardValue& shard : session->local_shards(variable)) {
          const HostTensor expected = block_of(b, shard.starts, shard.value.shape());
          for (int64_t i = 0; i < expected.numel(); ++i)
            worst = std::max(worst, std::abs(shard.value.get(i) - expected.get(i)) / scale);
        }
      }
      std::printf("restored state at step %lld, now rank %d of %d: largest difference from one device %.2e: %s\n",
                  static_cast<long long>(change.resumed_at), change.rank, change.ranks, worst,
                  worst <= tolerance ? "the same numbers" : "DIFFERENT");
      std::fflush(stdout);
    };
    session = std::make_unique<Session>(g, std::vector<Tensor>{example.loss},
                                        SessionOptions{.worker_threads = static_cast<int>(workers),
                                                       .placement = example.placement,
                                                       .checkpoint_dir = checkpoint_dir,
                                                       .checkpoint_every = checkpoint_every,
                                                       .job = job.get(),
                                                       .snapshot_every = snapshot_every,
                                                       .on_membership_change = [&](const MembershipChange& change) {
                                                         if (samples != nullptr) {
                                                           std::fprintf(samples, "resumed at step %lld\n",
                                                                        static_cast<long long>(change.resumed_at));
                                                           std::fflush(samples);
                                                         }
                                                         if (check) check_restored(change);
                                                       }});
    Interpreter reference(g);
    int64_t reference_steps = 0;  // steps the one-device run has trained
    std::map<int64_t, HostTensor> reference_losses;
    if (resume) {
      const CheckpointInfo restored = session->restore(checkpoint_dir);
      for (const std::string& skipped : restored.skipped)
        std::printf("passed over damaged checkpoint %s\n", skipped.c_str());
      if (rank == 0) {
        std::printf("resumed from %s at step %lld (%lld bytes read by rank 0)\n", restored.path.c_str(),
                    static_cast<long long>(restored.step), static_cast<long long>(restored.bytes));
      }
      // The one-device reference is the uninterrupted run: it trains the steps the checkpoint holds.
      for (; check && reference_steps < restored.step; ++reference_steps) {
        reference.train_step(example.feeds(reference_steps), {example.loss});
      }
    }
    const proto::Plan& plan = session->plan();
    if (show_plan && rank == 0) std::fputs(describe_plan(plan).c_str(), stdout);
    int actors = 0, transfers = 0, collectives = 0;
    const proto::RankPlan& share = share_of(plan, rank);
    for (const proto::DevicePlan& device : share.devices()) {
      actors += device.actors_size();
      for (const proto::ActorDef& actor : device.actors()) {
        transfers += actor.kind() == proto::SEND;
        collectives += actor.kind() == proto::COLLECTIVE;
      }
    }
    std::string devices;
    for (const proto::DevicePlan& device : share.devices()) devices += " " + device.device();
    if (rank == 0) std::printf("%s: %s\n", example.name.c_str(), example.summary.c_str());
    std::printf(
        "plan: rank %d of %d runs%s: %d actors, %d collectives, %d sends to other ranks; boxing moves %lld bytes "
        "per step (table lower bound %lld)\n",
        rank, ranks, devices.c_str(), actors, collectives, transfers, static_cast<long long>(plan.boxing_bytes()),
        static_cast<long long>(plan.boxing_lower_bound()));
    bool header = false;
    const int64_t first = session->steps_done();
    const auto started = std::chrono::steady_clock::now();
    cli::MetricsLog metrics(metrics_path);
    session->run(
        std::max<int64_t>(0, steps - first), [&](int64_t step) -> std::optional<Feeds> { return example.feeds(step); },
        [&](int64_t step, const std::vector<HostTensor>& fetched) {
          // A step run again after a recovery was trained by the one-device run already.
          for (; check && reference_steps <= step; ++reference_steps) {
            reference_losses[reference_steps] = reference.train_step(example.feeds(reference_steps), {example.loss})[0];
          }
          const HostTensor expected = check ? reference_losses.at(step) : fetched[0];
          if (samples != nullptr) {
            std::fprintf(samples, "step %lld samples %lld-%lld\n", static_cast<long long>(step),
                         static_cast<long long>(step * size.batch),
                         static_cast<long long>((step + 1) * size.batch - 1));
            std::fflush(samples);
          }
          if (!fetched[0].defined()) return;  // another rank holds the loss
          if (!header) std::printf("%6s  %14s  %14s\n", "step", "loss (devices)", "loss (1 device)"), header = true;
          metrics.write({{"step", static_cast<double>(step + 1)},
                         {"loss", fetched[0].get(0)},
                         {"loss_one_device", check ? expected.get(0) : NAN},
                         {"time", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()}});
          if (step % every == 0 || step + 1 == steps) {
            std::printf("%6lld  %14.7f  %14.7f\n", static_cast<long long>(step), fetched[0].get(0), expected.get(0));
          }
        });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if ((job ? job->rank() : 0) == 0 && steps > first) {
      std::printf("trained %lld steps in %.3f s: %.3f ms per step\n", static_cast<long long>(steps - first), seconds,
                  1e3 * seconds / static_cast<double>(steps - first));
    }
    double worst = 0;
    std::string worst_name;
    int shards = 0;
    for (const Tensor& param : check ? g.params() : std::vector<Tensor>{}) {
      const std::string variable = g.node(param.node()).attrs.get_string("name");
      const HostTensor b = reference.variable(variable);
      double scale = 1e-3;
      for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(b.get(i)));
      for (const VariableShardValue& shard : session->local_shards(variable)) {
        ++shards;
        const HostTensor expected = block_of(b, shard.starts, shard.value.shape());
        for (int64_t i = 0; i < expected.numel(); ++i) {
          const double error = std::abs(shard.value.get(i) - expected.get(i)) / scale;
          if (error > worst) worst = error, worst_name = variable + " on " + shard.device;
        }
      }
    }
    if (!parameters_file.empty()) {
      const std::string path = concat(parameters_file, ".rank", job ? job->rank() : 0);
      std::FILE* out = std::fopen(path.c_str(), "w");
      if (out == nullptr) throw Error::FailedPrecondition(concat("cannot write --save-parameters ", path));
      for (const Tensor& param : g.params()) {
        const std::string variable = g.node(param.node()).attrs.get_string("name");
        const Shape whole = g.node(param.node()).outputs[0].shape;
        for (const VariableShardValue& shard : session->local_shards(variable)) {
          const Shape& shape = shard.value.shape();
          for (int64_t i = 0; i < shard.value.numel(); ++i) {
            int64_t index = 0, rest = i;  // i's coordinates in the shard, moved by its starts, in the whole
            std::vector<int64_t> at(shape.rank());
            for (int axis = shape.rank() - 1; axis >= 0; --axis)
              at[axis] = rest % shape.dims()[axis], rest /= shape.dims()[axis];
            for (int axis = 0; axis < shape.rank(); ++axis)
              index = index * whole.dims()[axis] + at[axis] + shard.starts[axis];
            std::fprintf(out, "%s %lld %.9g\n", variable.c_str(), static_cast<long long>(index), shard.value.get(i));
          }
        }
      }
      std::fclose(out);
    }
    const bool same = worst <= tolerance;
    if (!check)
      std::printf("trained to step %lld (--no-check: not compared with one device)\n", static_cast<long long>(steps));
    if (check)
      std::printf(
          "parameters after %lld steps (%d shards on rank %d): largest difference from one device %.2e "
          "(relative, in %s): %s\n",
          static_cast<long long>(steps), shards, job ? job->rank() : 0, worst,
          worst_name.empty() ? "-" : worst_name.c_str(), same ? "the same numbers" : "DIFFERENT");
    std::fflush(stdout);
    if (samples != nullptr) std::fclose(samples);
    session.reset();  // drains (and finishes a save in flight): its transfers end on every rank before the job does
    if (job) job->finish();
    return same ? 0 : 1;
  } catch (const Error& error) {
    std::fprintf(stderr, "tessel-example: %s\n", error.what());
    return 1;
  }
}
