#include "nfk/train.h"

namespace nfk {

double classifier_accuracy(ZooModule& net, const Dataset& data, int64_t batch_size) {
  TORCH_CHECK(data.labels.defined(), "nfk: accuracy needs labels");
  torch::NoGradGuard no_grad;
  net.module->eval();
  int64_t correct = 0;
  const int64_t n = data.inputs.size(0);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    auto pred = net.forward(data.inputs.slice(0, start, end)).argmax(1);
    correct += (pred == data.labels.slice(0, start, end)).sum().item<int64_t>();
  }
  return double(correct) / n;
}

ZooModule train_classifier(const Dataset& train, const Dataset& test,
                           const ClassifierTrainOptions& o, const ProgressFn& progress,
                           ClassifierTrainReport* report) {
  TORCH_CHECK(train.labels.defined(), "nfk: training a classifier needs labelled data");
  TORCH_CHECK(train.inputs.dim() == 4, "nfk: classifier training expects images [N, C, H, W], got ",
              train.inputs.sizes());
  TORCH_CHECK(o.epochs >= 0 && o.batch_size > 0,
              "nfk: epochs must be >= 0 (0: untrained) and batch size positive");
  const int64_t n = train.inputs.size(0);
  const int64_t classes = train.labels.max().item<int64_t>() + 1;
  torch::manual_seed(o.seed);
  nlohmann::json arch_options;
  if (o.arch == "lenet5") {
    arch_options = {{"in_channels", train.inputs.size(1)},
                    {"image_size", train.inputs.size(2)},
                    {"num_classes", classes}};
  } else {
    arch_options = {{"in_features", train.inputs[0].numel()}, {"out_features", classes}};
  }
  ZooModule net = make_zoo_module(o.arch, arch_options);
  torch::optim::Adam opt(net.module->parameters(), torch::optim::AdamOptions(o.learning_rate));
  auto gen = at::detail::createCPUGenerator(o.seed);
  ClassifierTrainReport rep;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    net.module->train();
    auto order = at::randperm(n, gen, torch::kLong);
    double loss_sum = 0;
    for (int64_t start = 0; start < n; start += o.batch_size) {
      const int64_t end = std::min(n, start + o.batch_size);
      auto idx = order.slice(0, start, end);
      auto loss = torch::nn::functional::cross_entropy(net.forward(train.inputs.index_select(0, idx)),
                                                       train.labels.index_select(0, idx));
      opt.zero_grad();
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>() * (end - start);
      if (progress) progress("train", epoch * n + end, o.epochs * n);
    }
    rep.epoch_loss.push_back(loss_sum / n);
  }
  net.module->eval();
  if (test.labels.defined()) rep.test_accuracy = classifier_accuracy(net, test);
  if (report) *report = rep;
  return net;
}

}  // namespace nfk
