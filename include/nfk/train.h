#pragma once
/// Training of zoo models (native LibTorch), seeded and reproducible.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nfk/data.h"
#include "nfk/progress.h"
#include "nfk/zoo.h"

namespace nfk {

struct ClassifierTrainOptions {
  std::string arch = "lenet5";  // "lenet5" or "mlp"
  int64_t epochs = 1;
  int64_t batch_size = 64;
  double learning_rate = 1e-3;  // Adam
  uint64_t seed = 0;
};

struct ClassifierTrainReport {
  std::vector<double> epoch_loss;  // mean cross-entropy per epoch
  double test_accuracy = -1;       // on `test`, if it has labels
};

/// Trains a zoo classifier by cross-entropy with Adam on `train` (inputs [N, C, H, W], labels
/// [N]); shuffling and initialisation are seeded. Reports "train" progress per example.
/// Example: `auto net = nfk::train_classifier(train, test, {}, {}, &report);`
ZooModule train_classifier(const Dataset& train, const Dataset& test,
                           const ClassifierTrainOptions& options, const ProgressFn& progress = {},
                           ClassifierTrainReport* report = nullptr);

/// Accuracy of a zoo classifier on a labelled data set.
double classifier_accuracy(ZooModule& net, const Dataset& data, int64_t batch_size = 512);

}  // namespace nfk
