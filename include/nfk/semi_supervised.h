#pragma once
/// The semi-supervised protocol of the NFK paper (§4): few labels per class, a linear probe on
/// a representation learned without labels, over several seeded draws.

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "nfk/probe.h"

namespace nfk {

/// Semi-supervised protocol (NFK paper §4): the representation is learned without labels; a
/// linear probe then sees n labelled examples per class, drawn with `seeds` different seeds.
struct SemiSupervisedOptions {
  std::vector<int64_t> labels_per_class = {10, 50, 100};
  int64_t seeds = 5;
  uint64_t seed = 0;
  ProbeOptions probe;  // with l2_grid set, l2 is cross-validated on the few labels themselves
};

struct SemiSupervisedRow {
  int64_t labels_per_class = 0;
  std::vector<double> accuracies;  // one per seed
  double mean = 0, std = 0;        // std: sample standard deviation over seeds
};

std::vector<SemiSupervisedRow> semi_supervised(const torch::Tensor& train_features,
                                               const torch::Tensor& train_labels,
                                               const torch::Tensor& test_features,
                                               const torch::Tensor& test_labels,
                                               const SemiSupervisedOptions& options);

/// n examples of each class drawn without replacement (seeded) → indices [n·C] int64.
torch::Tensor sample_per_class(const torch::Tensor& labels, int64_t n, uint64_t seed);

}  // namespace nfk
