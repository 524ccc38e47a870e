#pragma once
/// The one training loop every zoo trainer runs (classifier, GAN, VAE, density): seeded shuffles,
/// epochs of steps, EMA copies, the JSON log, checkpoint and resume — and the hooks that later
/// methods plug into without a loop of their own: extra loss terms (EWC's penalty, a distillation
/// term), gradient transforms (a diagonal or K-FAC preconditioner), epoch-end callbacks
/// (monitoring, sample pictures) and per-task phases (continual learning).
///
/// A family builds its modules and optimizers, registers them, and hands `run` a step function:
///
///   Trainer trainer(loop);
///   trainer.add_module("classifier", &net);
///   trainer.add_optimizer("adam", &opt, &net);
///   trainer.resume();
///   trainer.run(train, [&](Trainer& t, const Batch& b) {
///     auto loss = cross_entropy(net.forward(b.inputs), b.labels);
///     t.optimize("adam", loss, b);  // + loss terms, backward, gradient transforms, step
///     return StepMetrics{{"loss", loss.item<double>()}};
///   });

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nfk/data.h"
#include "nfk/progress.h"
#include "nfk/zoo.h"

namespace nfk {

/// What every training run shares: where its state lives and how long it runs.
struct TrainRun {
  std::string out_dir;  // models, checkpoint/, train_log.json and images go here
  int64_t epochs = 5;   // total epochs (a resumed run continues up to this count)
  int64_t batch_size = 64;
  uint64_t seed = 0;             // initialisation, shuffling, noise: all derived from it
  int64_t checkpoint_every = 1;  // epochs between checkpoints
  bool resume = true;            // continue from out_dir/checkpoint if it exists
  torch::Device device = torch::kCPU;
};

/// Saves a checkpoint atomically per file: each module as a zoo archive, each optimizer's state,
/// then `state.json` {epoch, log} last, which marks the checkpoint complete.
void save_checkpoint(const std::string& dir, int64_t epoch,
                     const std::map<std::string, const ZooModule*>& modules,
                     const std::map<std::string, torch::optim::Optimizer*>& optimizers,
                     const nlohmann::json& log);

/// Restores a checkpoint into already-built modules and optimizers (same architectures).
/// Returns the epoch it was taken after (0 if `dir` holds no complete checkpoint) and its log.
int64_t load_checkpoint(const std::string& dir, const std::map<std::string, ZooModule*>& modules,
                        const std::map<std::string, torch::optim::Optimizer*>& optimizers,
                        nlohmann::json* log);

/// A CPU generator for (seed, stream, epoch): shuffles and noise of an epoch depend on nothing
/// else, so a resumed run repeats the uninterrupted run's numbers exactly.
at::Generator epoch_generator(uint64_t seed, uint64_t stream, int64_t epoch);

class Trainer;

/// How the loop runs, beyond what every run shares (TrainRun: out_dir, epochs, batch size, seed,
/// checkpoint_every, resume, device).
struct TrainLoopOptions {
  TrainRun run;
  uint64_t shuffle_stream = 0;  // epoch_generator stream of the epoch's shuffle (and step noise)
  bool drop_last = false;       // skip a last partial batch; then every step weighs the same
  bool batch_to_device = true;  // false: Batch tensors stay on the CPU (the step moves them)
  std::string checkpoint_dir;   // "" : run.out_dir/checkpoint
  bool checkpoints = true;      // false: nothing is written (in-memory runs, toys)
};

/// One step's examples. `inputs` [B, ...] and `labels` [B] (undefined if the set has none) are on
/// the run's device (the CPU without batch_to_device); `indices` [B] int64 (CPU) are their rows in
/// the training set. `generator` is the epoch's generator after the shuffle: a step draws its noise
/// from it (resumable).
struct Batch {
  torch::Tensor inputs, labels, indices;
  at::Generator generator;
  int64_t epoch = 0;  // 0-based epoch of the run
  int64_t step = 0;   // 0-based step within the epoch
};

/// Per-step numbers to log (name → value). The epoch's entry holds each name's mean over the
/// epoch's steps, weighted by the step's examples (equal weights with drop_last).
using StepMetrics = std::map<std::string, double>;

/// One optimisation step on a batch: forward, Trainer::optimize for each optimizer, metrics.
using StepFn = std::function<StepMetrics(Trainer& trainer, const Batch& batch)>;

/// An extra term of the loss of the optimizers it applies to, added before backward: a scalar,
/// differentiable in `model`'s parameters (the module the optimizer trains). Its per-step values
/// are logged as `loss_<name>` (summed over the optimizers it applies to). Example, an L2 pull
/// to an anchor: λ/2 Σ (θ − θ*)².
struct LossTerm {
  std::string name;
  std::function<torch::Tensor(const ZooModule& model, const Batch& batch)> fn;
  std::string optimizer;  // "" : every optimizer
};

/// Changes the gradients (param.grad(), in place) of `model`, after backward and before the
/// optimizer step. Example, a diagonal preconditioner: g_i ← g_i / (F_i + λ).
struct GradientTransform {
  std::string name;
  std::function<void(const ZooModule& model, const Batch& batch)> fn;
  std::string optimizer;  // "" : every optimizer
};

/// Runs at the start of each epoch (0-based `epoch`), before the shuffle's batches.
using EpochBeginFn = std::function<void(Trainer& trainer, int64_t epoch)>;

/// Runs after epochs whose count (1-based `epochs_done`) is a multiple of `every`, before the
/// epoch's `entry` goes to the log and the checkpoint is taken; it may add fields to `entry`
/// (test metrics, monitoring) or write files (sample pictures, snapshots).
struct EpochEndHook {
  std::string name;
  std::function<void(Trainer& trainer, int64_t epochs_done, nlohmann::json& entry)> fn;
  int64_t every = 1;
};

/// Everything a caller plugs into the loop. Hooks run in order; a family's own come first
/// (except train_gan's snapshots, which run last).
struct TrainHooks {
  std::vector<LossTerm> loss_terms;
  std::vector<GradientTransform> gradient_transforms;
  std::vector<EpochBeginFn> epoch_begin;
  std::vector<EpochEndHook> epoch_end;
};

class Trainer {
 public:
  explicit Trainer(TrainLoopOptions options, TrainHooks hooks = {});

  /// Registers a module: checkpointed under `name` (name.zoo) and reachable by hooks.
  void add_module(const std::string& name, ZooModule* module);
  /// Registers an optimizer of `trains`'s parameters: checkpointed as name.optim; the loss terms
  /// and gradient transforms of Trainer::optimize(name, ...) see `trains`.
  void add_optimizer(const std::string& name, torch::optim::Optimizer* optimizer,
                     ZooModule* trains);
  /// Keeps `ema` an exponential moving average of `source`: copied now, then after every step
  /// ema ← decay · ema + (1 − decay) · source (parameters; buffers are copied).
  void add_ema(ZooModule* ema, const ZooModule* source, double decay);

  /// Restores the latest checkpoint (if options.run.resume and one exists) into the registered
  /// modules and optimizers, and the log with it. Returns the number of finished epochs.
  int64_t resume();

  /// Runs epochs from the finished count up to options.run.epochs on `train` (inputs [N, ...],
  /// labels [N] or undefined): shuffle by epoch_generator(seed, shuffle_stream, epoch), `step`
  /// per batch, EMA updates, epoch-end hooks, log entry {"epoch", metrics...}, checkpoints.
  /// Returns the log. Progress reports examples seen as ("train", done, total).
  const nlohmann::json& run(const Dataset& train, const StepFn& step,
                            const ProgressFn& progress = {});

  /// zero_grad, loss + the loss terms for `optimizer`, backward, the gradient transforms, step.
  /// `loss` is a scalar. Returns the total that was differentiated.
  torch::Tensor optimize(const std::string& optimizer, const torch::Tensor& loss,
                         const Batch& batch);

  /// The JSON log: the caller sets its header fields; run appends to "epochs" and the wall time
  /// of each epoch's steps to "epoch_seconds".
  nlohmann::json& log() { return log_; }
  TrainHooks& hooks() { return hooks_; }
  const TrainLoopOptions& options() const { return options_; }
  /// The registered module `name` (TORCH_CHECKs that it exists).
  ZooModule& module(const std::string& name) const;
  /// Finished epochs (after resume or run).
  int64_t epochs_done() const { return epochs_done_; }
  /// Points checkpoints at another folder and the epoch target at `epochs`, keeping modules,
  /// optimizers, hooks and log (used between the tasks of run_tasks).
  void restart(const std::string& checkpoint_dir, int64_t epochs);

 private:
  void update_emas();
  void save();

  struct OptimizerEntry {
    torch::optim::Optimizer* optimizer;
    ZooModule* trains;
  };
  struct EmaEntry {
    ZooModule* ema;
    const ZooModule* source;
    double decay;
  };
  TrainLoopOptions options_;
  TrainHooks hooks_;
  std::map<std::string, ZooModule*> modules_;
  std::map<std::string, OptimizerEntry> optimizers_;
  std::vector<EmaEntry> emas_;
  nlohmann::json log_ = {{"epochs", nlohmann::json::array()}};
  int64_t epochs_done_ = 0;
  std::map<std::string, double> term_sums_;  // this step's loss-term values, by log key
};

/// One task of a continual-learning sequence.
struct TrainTask {
  std::string name;
  Dataset train;
};

/// Runs after task `t` is trained (before task t + 1): it sees the trained model through the
/// trainer and may add hooks for the tasks after it (e.g. an EWC loss term from its Fisher).
/// Must depend only on the model and data: a resumed run re-runs it on the restored model.
using TaskPhaseFn = std::function<void(Trainer& trainer, int64_t task, const TrainTask& done)>;

/// Trains `tasks` in order with the same modules and optimizers, options.run.epochs epochs each,
/// checkpointing task t in checkpoint_dir/task_<t> (so a killed sequence resumes where it
/// stopped), calling `after_task` after each. Each task's log goes to log()["tasks"][t].
void run_tasks(Trainer& trainer, const std::vector<TrainTask>& tasks, const StepFn& step,
               const TaskPhaseFn& after_task, const ProgressFn& progress = {});

}  // namespace nfk
