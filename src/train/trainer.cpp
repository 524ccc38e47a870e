// The shared training loop: one place for shuffling, steps, EMA, the log and checkpoints.
#include "nfk/trainer.h"

#include <chrono>
#include <utility>

namespace nfk {

Trainer::Trainer(TrainLoopOptions options, TrainHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)) {
  const auto& run = options_.run;
  TORCH_CHECK(run.epochs >= 0 && run.batch_size > 0,
              "nfk: epochs must be >= 0 (0: untrained) and batch size positive");
  TORCH_CHECK(!options_.checkpoints || run.checkpoint_every > 0,
              "nfk: checkpoint_every must be positive, got ", run.checkpoint_every);
  if (options_.checkpoint_dir.empty()) options_.checkpoint_dir = run.out_dir + "/checkpoint";
}

void Trainer::add_module(const std::string& name, ZooModule* module) {
  TORCH_CHECK(module && module->module, "nfk::Trainer: module `", name, "` is empty");
  TORCH_CHECK(modules_.emplace(name, module).second, "nfk::Trainer: module `", name,
              "` registered twice");
}

void Trainer::add_optimizer(const std::string& name, torch::optim::Optimizer* optimizer,
                            ZooModule* trains) {
  TORCH_CHECK(optimizer && trains, "nfk::Trainer: optimizer `", name, "` needs its module");
  TORCH_CHECK(optimizers_.emplace(name, OptimizerEntry{optimizer, trains}).second,
              "nfk::Trainer: optimizer `", name, "` registered twice");
}

void Trainer::add_ema(ZooModule* ema, const ZooModule* source, double decay) {
  TORCH_CHECK(ema && source, "nfk::Trainer: EMA needs both modules");
  TORCH_CHECK(decay >= 0 && decay <= 1, "nfk::Trainer: EMA decay must be in [0, 1], got ", decay);
  emas_.push_back({ema, source, /*decay=*/0});
  update_emas();  // start equal
  emas_.back().decay = decay;
}

ZooModule& Trainer::module(const std::string& name) const {
  auto it = modules_.find(name);
  TORCH_CHECK(it != modules_.end(), "nfk::Trainer: no module `", name, "`");
  return *it->second;
}

void Trainer::restart(const std::string& checkpoint_dir, int64_t epochs) {
  TORCH_CHECK(epochs >= 0, "nfk::Trainer: epochs must be >= 0, got ", epochs);
  options_.checkpoint_dir = checkpoint_dir;
  options_.run.epochs = epochs;
  epochs_done_ = 0;
}

// ema ← decay · ema + (1 − decay) · source, parameters; buffers (batch-norm statistics) copied.
void Trainer::update_emas() {
  torch::NoGradGuard no_grad;
  for (const auto& e : emas_) {
    auto pe = e.ema->module->parameters(), ps = e.source->module->parameters();
    for (size_t i = 0; i < pe.size(); ++i) pe[i].mul_(e.decay).add_(ps[i], 1 - e.decay);
    auto be = e.ema->module->buffers(), bs = e.source->module->buffers();
    for (size_t i = 0; i < be.size(); ++i) be[i].copy_(bs[i]);
  }
}

int64_t Trainer::resume() {
  if (!options_.checkpoints || !options_.run.resume) return epochs_done_;
  std::map<std::string, torch::optim::Optimizer*> optimizers;
  for (const auto& [name, entry] : optimizers_) optimizers[name] = entry.optimizer;
  nlohmann::json log;
  const int64_t done = load_checkpoint(options_.checkpoint_dir, modules_, optimizers, &log);
  if (done > 0) {
    log_ = std::move(log);
    epochs_done_ = done;
  }
  return epochs_done_;
}

void Trainer::save() {
  std::map<std::string, const ZooModule*> modules(modules_.begin(), modules_.end());
  std::map<std::string, torch::optim::Optimizer*> optimizers;
  for (const auto& [name, entry] : optimizers_) optimizers[name] = entry.optimizer;
  save_checkpoint(options_.checkpoint_dir, epochs_done_, modules, optimizers, log_);
}

torch::Tensor Trainer::optimize(const std::string& name, const torch::Tensor& loss,
                                const Batch& batch) {
  auto it = optimizers_.find(name);
  TORCH_CHECK(it != optimizers_.end(), "nfk::Trainer::optimize: no optimizer `", name, "`");
  TORCH_CHECK(loss.numel() == 1, "nfk::Trainer::optimize: the loss must be a scalar, got ",
              loss.sizes());
  const ZooModule& model = *it->second.trains;
  torch::Tensor total = loss;  // no terms: exactly the family's loss, as before the hooks
  for (const auto& term : hooks_.loss_terms) {
    if (!term.optimizer.empty() && term.optimizer != name) continue;
    auto value = term.fn(model, batch);
    TORCH_CHECK(value.numel() == 1, "nfk: loss term `", term.name, "` must be a scalar, got ",
                value.sizes());
    term_sums_["loss_" + term.name] += value.item<double>();
    total = total + value.reshape({});
  }
  auto& optimizer = *it->second.optimizer;
  optimizer.zero_grad();
  total.backward();
  for (const auto& transform : hooks_.gradient_transforms) {
    if (transform.optimizer.empty() || transform.optimizer == name) transform.fn(model, batch);
  }
  optimizer.step();
  return total;
}

const nlohmann::json& Trainer::run(const Dataset& train, const StepFn& step,
                                   const ProgressFn& progress) {
  TORCH_CHECK(step, "nfk::Trainer::run: no step function");
  const auto& run = options_.run;
  const int64_t first = epochs_done_;
  if (first >= run.epochs) return log_;
  TORCH_CHECK(train.inputs.defined() && train.inputs.dim() >= 1 && train.inputs.size(0) > 0,
              "nfk: the training set is empty");
  const int64_t n = train.inputs.size(0), b = run.batch_size;
  TORCH_CHECK(!options_.drop_last || n >= b, "nfk: the training set (", n,
              ") is smaller than one batch");
  const bool labelled = train.labels.defined();
  if (!log_.contains("epochs")) log_["epochs"] = nlohmann::json::array();

  if (!log_.contains("epoch_seconds")) log_["epoch_seconds"] = nlohmann::json::array();

  for (int64_t epoch = first; epoch < run.epochs; ++epoch) {
    for (const auto& begin : hooks_.epoch_begin) begin(*this, epoch);
    const auto started = std::chrono::steady_clock::now();
    Batch batch;
    batch.generator = epoch_generator(run.seed, options_.shuffle_stream, epoch);
    batch.epoch = epoch;
    auto order = at::randperm(n, batch.generator, torch::kLong);
    // Epoch means weighted by examples; with drop_last every step weighs 1 (the same mean).
    std::map<std::string, double> sums;
    double weight = 0;
    for (int64_t start = 0; start < n; start += b, ++batch.step) {
      const int64_t end = std::min(n, start + b);
      if (options_.drop_last && end - start < b) break;
      batch.indices = order.slice(0, start, end);
      const auto device = options_.batch_to_device ? run.device : torch::Device(torch::kCPU);
      batch.inputs = train.inputs.index_select(0, batch.indices).to(device);
      if (labelled) batch.labels = train.labels.index_select(0, batch.indices).to(device);
      term_sums_.clear();
      StepMetrics metrics = step(*this, batch);
      update_emas();
      for (const auto& [key, value] : term_sums_) metrics[key] += value;
      const double w = options_.drop_last ? 1.0 : static_cast<double>(end - start);
      for (const auto& [key, value] : metrics) sums[key] += value * w;
      weight += w;
      if (progress) progress("train", (epoch - first) * n + end, (run.epochs - first) * n);
    }
    // Wall time of the epoch's steps (not its hooks), kept apart from "epochs": a resumed run's
    // curve equals the uninterrupted one's, its clock does not.
    log_["epoch_seconds"].push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    nlohmann::json entry = {{"epoch", epoch + 1}};
    for (const auto& [key, sum] : sums) entry[key] = sum / weight;
    for (const auto& hook : hooks_.epoch_end) {
      if (hook.every > 0 && (epoch + 1) % hook.every == 0) hook.fn(*this, epoch + 1, entry);
    }
    log_["epochs"].push_back(entry);
    epochs_done_ = epoch + 1;
    if (options_.checkpoints &&
        (epochs_done_ % run.checkpoint_every == 0 || epochs_done_ == run.epochs)) {
      save();
    }
  }
  return log_;
}

void run_tasks(Trainer& trainer, const std::vector<TrainTask>& tasks, const StepFn& step,
               const TaskPhaseFn& after_task, const ProgressFn& progress) {
  const std::string base = trainer.options().checkpoint_dir;
  const int64_t epochs = trainer.options().run.epochs;
  auto& log = trainer.log();
  if (!log.contains("tasks")) log["tasks"] = nlohmann::json::array();
  for (size_t t = 0; t < tasks.size(); ++t) {
    trainer.restart(base + "/task_" + std::to_string(t), epochs);
    trainer.resume();  // a finished task restores its final state, so after_task sees it again
    trainer.run(tasks[t].train, step, progress);
    auto& tasks_log = trainer.log()["tasks"];
    tasks_log.push_back({{"task", t},
                         {"name", tasks[t].name},
                         {"epochs", log["epochs"]},
                         {"epoch_seconds", log["epoch_seconds"]}});
    trainer.log()["epochs"] = nlohmann::json::array();
    trainer.log()["epoch_seconds"] = nlohmann::json::array();
    if (after_task) after_task(trainer, static_cast<int64_t>(t), tasks[t]);
  }
}

}  // namespace nfk
