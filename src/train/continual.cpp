// One network through a sequence of tasks with a continual-learning penalty
// (include/nfk/continual.h).
#include "nfk/continual.h"

#include <chrono>

#include "nfk/trainer.h"

namespace nfk {
namespace {

// The task's logits: its classes (task-incremental) or all of them.
torch::Tensor task_logits(const ZooModule& net, const torch::Tensor& x,
                          const std::vector<int64_t>& classes) {
  auto logits = net.forward(x);
  if (classes.empty()) return logits;
  return logits.index_select(1, torch::tensor(classes, torch::kLong).to(logits.device()));
}

// Labels in the task's numbering (positions in `classes`), or unchanged.
torch::Tensor task_labels(const torch::Tensor& y, const std::vector<int64_t>& classes) {
  return classes.empty() ? y : labels_in_subset(y, classes);
}

double accuracy(const ZooModule& net, const Dataset& d, const std::vector<int64_t>& classes) {
  torch::NoGradGuard no_grad;
  net.module->eval();
  int64_t correct = 0;
  const int64_t n = d.inputs.size(0);
  for (int64_t s = 0; s < n; s += 1024) {
    const int64_t e = std::min(n, s + 1024);
    auto pred = task_logits(net, d.inputs.slice(0, s, e), classes).argmax(1);
    correct += (pred == task_labels(d.labels.slice(0, s, e), classes)).sum().item<int64_t>();
  }
  return n > 0 ? static_cast<double>(correct) / n : 0;
}

}  // namespace

ContinualResult run_continual(const std::vector<ContinualTask>& tasks,
                              const ContinualTrainOptions& o, const EwcOptions& penalty,
                              const ProgressFn& progress) {
  TORCH_CHECK(!tasks.empty(), "nfk: continual learning needs at least one task");
  TORCH_CHECK(o.epochs >= 1 && o.batch_size >= 1 && o.learning_rate > 0,
              "nfk: continual learning needs epochs >= 1, batch size >= 1 and a positive rate");
  torch::manual_seed(o.seed);
  int64_t classes = 0;
  for (const auto& t : tasks) classes = std::max(classes, t.train.labels.max().item<int64_t>() + 1);
  ZooModule net = make_zoo_module("mlp", {{"in_features", tasks[0].train.inputs[0].numel()},
                                          {"hidden", o.hidden},
                                          {"activation", o.activation},
                                          {"out_features", classes}});
  torch::optim::Adam opt(net.module->parameters(), torch::optim::AdamOptions(o.learning_rate));
  EwcPenalty ewc(penalty);
  TrainLoopOptions loop;
  loop.run.epochs = o.epochs;
  loop.run.batch_size = o.batch_size;
  loop.run.seed = o.seed;
  loop.checkpoints = false;
  TrainHooks hooks;
  hooks.loss_terms.push_back(ewc.loss_term());
  hooks.epoch_begin.push_back([&](Trainer&, int64_t) { net.module->train(); });
  Trainer trainer(loop, hooks);
  trainer.add_module("mlp", &net);
  trainer.add_optimizer("adam", &opt, &net);

  ContinualResult result;
  size_t current = 0;
  auto step = [&](Trainer& t, const Batch& b) {
    const auto& cls = tasks[current].classes;
    auto loss = torch::nn::functional::cross_entropy(task_logits(net, b.inputs, cls),
                                                     task_labels(b.labels, cls));
    t.optimize("adam", loss, b);
    return StepMetrics{{"loss", loss.item<double>()}};
  };
  auto clock = std::chrono::steady_clock::now();
  auto after_task = [&](Trainer&, int64_t t, const TrainTask&) {
    const auto& task = tasks[static_cast<size_t>(t)];
    ewc.consolidate(net, {task.train.inputs, task.train.labels}, task.classes);
    std::vector<double> test_row, validation_row;
    for (const auto& other : tasks) {
      test_row.push_back(accuracy(net, other.test, other.classes));
      validation_row.push_back(accuracy(net, other.validation, other.classes));
    }
    result.test_accuracy.push_back(test_row);
    result.validation_accuracy.push_back(validation_row);
    auto now = std::chrono::steady_clock::now();
    result.task_seconds.push_back(std::chrono::duration<double>(now - clock).count());
    clock = now;
    current = static_cast<size_t>(t) + 1;
  };
  std::vector<TrainTask> train_tasks;
  for (const auto& t : tasks) train_tasks.push_back({t.name, t.train});
  // One progress stage per task, so that its rate and ETA restart with it.
  ProgressFn task_progress;
  if (progress) {
    task_progress = [&](const std::string&, int64_t done, int64_t total) {
      progress("task " + std::to_string(current + 1) + "/" + std::to_string(tasks.size()), done,
               total);
    };
  }
  run_tasks(trainer, train_tasks, step, after_task, task_progress);
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  result.average_test_accuracy = mean(result.test_accuracy.back());
  result.average_validation_accuracy = mean(result.validation_accuracy.back());
  return result;
}

}  // namespace nfk
