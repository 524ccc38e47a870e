// Classifier training: cross-entropy with Adam on the shared loop.
#include <chrono>
#include <filesystem>

#include "nfk/output_files.h"
#include "nfk/train.h"
#include "nfk/trainer.h"

namespace nfk {

double classifier_accuracy(const ZooModule& net, const Dataset& data, int64_t batch_size) {
  TORCH_CHECK(data.labels.defined(), "nfk: accuracy needs labels");
  torch::NoGradGuard no_grad;
  net.module->eval();
  const auto device = net.module->parameters().front().device();
  int64_t correct = 0;
  const int64_t n = data.inputs.size(0);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    auto pred = net.forward(data.inputs.slice(0, start, end).to(device)).argmax(1).cpu();
    correct += (pred == data.labels.slice(0, start, end)).sum().item<int64_t>();
  }
  return double(correct) / n;
}

nlohmann::json train_classifier(const Dataset& train, const Dataset& test, const TrainRun& run,
                                const ClassifierTrainOptions& o, const ProgressFn& progress,
                                const TrainHooks& hooks) {
  TORCH_CHECK(train.labels.defined(), "nfk: training a classifier needs labelled data");
  TORCH_CHECK(train.inputs.dim() == 4, "nfk: classifier training expects images [N, C, H, W], got ",
              train.inputs.sizes());
  TORCH_CHECK(run.epochs >= 0 && run.batch_size > 0,
              "nfk: epochs must be >= 0 (0: untrained) and batch size positive");
  const int64_t classes = train.labels.max().item<int64_t>() + 1;
  torch::manual_seed(run.seed);
  nlohmann::json arch_options;
  if (o.arch == "lenet5") {
    arch_options = {{"in_channels", train.inputs.size(1)},
                    {"image_size", train.inputs.size(2)},
                    {"num_classes", classes}};
  } else if (o.arch == "wrn") {
    arch_options = {{"in_channels", train.inputs.size(1)},
                    {"image_size", train.inputs.size(2)},
                    {"num_classes", classes},
                    {"depth", o.wrn_depth},
                    {"widen_factor", o.wrn_widen_factor}};
  } else {
    arch_options = {{"in_features", train.inputs[0].numel()}, {"out_features", classes}};
  }
  ZooModule net = make_zoo_module(o.arch, arch_options);
  net.module->to(run.device);
  TORCH_CHECK(o.optimizer == "adam" || o.optimizer == "sgd" || o.optimizer == "ngd-diag" ||
                  o.optimizer == "kfac",
              "nfk: unknown optimizer `", o.optimizer, "`; use adam, sgd, ngd-diag or kfac");
  const bool adam = o.optimizer == "adam";
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (adam) {
    opt = std::make_unique<torch::optim::Adam>(net.module->parameters(),
                                               torch::optim::AdamOptions(o.learning_rate));
  } else {
    opt = std::make_unique<torch::optim::SGD>(
        net.module->parameters(), torch::optim::SGDOptions(o.learning_rate).momentum(o.momentum));
  }
  std::unique_ptr<NaturalGradient> natural;
  TrainLoopOptions loop;
  loop.run = run;
  TrainHooks all = hooks;
  if (o.optimizer == "ngd-diag" || o.optimizer == "kfac") {
    auto n = o.natural;
    n.form = o.optimizer == "kfac" ? FisherForm::kKfac : FisherForm::kDiag;
    n.learning_rate = o.learning_rate;
    n.seed = run.seed;
    natural = std::make_unique<NaturalGradient>(n);
    // First, so that the user's transforms see the natural gradient.
    all.gradient_transforms.insert(all.gradient_transforms.begin(), natural->transform());
  }
  const std::string opt_name = adam ? "adam" : o.optimizer;
  all.epoch_begin.insert(all.epoch_begin.begin(), [&](Trainer&, int64_t) { net.module->train(); });
  if (test.labels.defined()) {
    all.epoch_end.insert(all.epoch_end.begin(),
                         {"test_accuracy", [&](Trainer&, int64_t, nlohmann::json& entry) {
                            entry["test_accuracy"] = classifier_accuracy(net, test);
                          }});
  }
  Trainer trainer(loop, all);
  trainer.add_module("classifier", &net);
  trainer.add_optimizer(opt_name, opt.get(), &net);
  trainer.log() = {{"family", "classifier"},
                   {"arch", o.arch},
                   {"optimizer", o.optimizer},
                   {"epochs", nlohmann::json::array()}};
  trainer.resume();
  TORCH_CHECK(o.eval_every >= 0 && (o.eval_every == 0 || test.labels.defined()),
              "nfk: evaluations every ", o.eval_every, " steps need a labelled test set");
  const int64_t examples = train.inputs.size(0), batch = run.batch_size;
  const int64_t steps_per_epoch =  // as the loop steps
      loop.drop_last ? examples / batch : (examples + batch - 1) / batch;
  double train_seconds = 0;  // steps only, this process
  auto step = [&](Trainer& t, const Batch& b) {
    const auto t0 = std::chrono::steady_clock::now();
    auto loss = torch::nn::functional::cross_entropy(net.forward(b.inputs), b.labels);
    t.optimize(opt_name, loss, b);
    StepMetrics metrics{{"loss", loss.item<double>()}};
    train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t done = b.epoch * steps_per_epoch + b.step + 1;
    if (o.eval_every > 0 && done % o.eval_every == 0) {
      net.module->eval();
      t.log()["evaluations"].push_back(
          {{"step", done},
           {"epoch", static_cast<double>(done) / static_cast<double>(steps_per_epoch)},
           {"train_seconds", train_seconds},
           {"test_accuracy", classifier_accuracy(net, test)}});
      net.module->train();
    }
    return metrics;
  };
  nlohmann::json log = trainer.run(train, step, progress);
  net.module->eval();
  if (test.labels.defined()) log["test_accuracy"] = classifier_accuracy(net, test);
  std::filesystem::create_directories(run.out_dir);
  save_zoo_module(run.out_dir + "/classifier.zoo", net);
  write_file_atomic(run.out_dir + "/train_log.json", log.dump(2) + "\n");
  return log;
}

}  // namespace nfk
