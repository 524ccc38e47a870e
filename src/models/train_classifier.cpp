#include <filesystem>

#include "detail/atomic_file.h"
#include "nfk/train.h"

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
                                const ClassifierTrainOptions& o, const ProgressFn& progress) {
  TORCH_CHECK(train.labels.defined(), "nfk: training a classifier needs labelled data");
  TORCH_CHECK(train.inputs.dim() == 4, "nfk: classifier training expects images [N, C, H, W], got ",
              train.inputs.sizes());
  TORCH_CHECK(run.epochs >= 0 && run.batch_size > 0,
              "nfk: epochs must be >= 0 (0: untrained) and batch size positive");
  const int64_t n = train.inputs.size(0);
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
  torch::optim::Adam opt(net.module->parameters(), torch::optim::AdamOptions(o.learning_rate));

  const std::string ckpt = run.out_dir + "/checkpoint";
  nlohmann::json log = {
      {"family", "classifier"}, {"arch", o.arch}, {"epochs", nlohmann::json::array()}};
  int64_t first_epoch = 0;
  if (run.resume)
    first_epoch = load_checkpoint(ckpt, {{"classifier", &net}}, {{"adam", &opt}}, &log);

  for (int64_t epoch = first_epoch; epoch < run.epochs; ++epoch) {
    net.module->train();
    auto gen = epoch_generator(run.seed, /*stream=*/0, epoch);
    auto order = at::randperm(n, gen, torch::kLong);
    double loss_sum = 0;
    for (int64_t start = 0; start < n; start += run.batch_size) {
      const int64_t end = std::min(n, start + run.batch_size);
      auto idx = order.slice(0, start, end);
      auto x = train.inputs.index_select(0, idx).to(run.device);
      auto y = train.labels.index_select(0, idx).to(run.device);
      auto loss = torch::nn::functional::cross_entropy(net.forward(x), y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>() * (end - start);
      if (progress)
        progress("train", (epoch - first_epoch) * n + end, (run.epochs - first_epoch) * n);
    }
    nlohmann::json entry = {{"epoch", epoch + 1}, {"loss", loss_sum / n}};
    if (test.labels.defined()) entry["test_accuracy"] = classifier_accuracy(net, test);
    log["epochs"].push_back(entry);
    if ((epoch + 1) % run.checkpoint_every == 0 || epoch + 1 == run.epochs) {
      save_checkpoint(ckpt, epoch + 1, {{"classifier", &net}}, {{"adam", &opt}}, log);
    }
  }
  net.module->eval();
  if (test.labels.defined()) log["test_accuracy"] = classifier_accuracy(net, test);
  std::filesystem::create_directories(run.out_dir);
  save_zoo_module(run.out_dir + "/classifier.pt", net);
  detail::write_file_atomic(run.out_dir + "/train_log.json", log.dump(2) + "\n");
  return log;
}

}  // namespace nfk
