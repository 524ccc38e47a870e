#include <cmath>

#include "nfk/semi_supervised.h"

namespace nfk {

torch::Tensor sample_per_class(const torch::Tensor& labels, int64_t n, uint64_t seed) {
  TORCH_CHECK(n > 0, "nfk: labels per class must be positive, got ", n);
  auto y = labels.to(torch::kLong).cpu();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t classes = y.max().item<int64_t>() + 1;
  std::vector<torch::Tensor> picked;
  for (int64_t c = 0; c < classes; ++c) {
    auto members = (y == c).nonzero().squeeze(1);
    if (members.numel() == 0) continue;  // a class absent from the train set
    TORCH_CHECK(members.numel() >= n, "nfk: class ", c, " has only ", members.numel(),
                " labelled examples, fewer than the ", n, " asked for");
    picked.push_back(
        members.index_select(0, at::randperm(members.numel(), gen, torch::kLong).slice(0, 0, n)));
  }
  return torch::cat(picked);
}

std::vector<SemiSupervisedRow> semi_supervised(const torch::Tensor& train_features,
                                               const torch::Tensor& train_labels,
                                               const torch::Tensor& test_features,
                                               const torch::Tensor& test_labels,
                                               const SemiSupervisedOptions& o) {
  TORCH_CHECK(o.seeds >= 1, "nfk: semi-supervised needs at least one seed");
  TORCH_CHECK(test_features.dim() == 2 && test_labels.dim() == 1 &&
                  test_labels.size(0) == test_features.size(0),
              "nfk: test features must be [M, D] with labels [M]");
  std::vector<SemiSupervisedRow> rows;
  for (int64_t n : o.labels_per_class) {
    SemiSupervisedRow row;
    row.labels_per_class = n;
    for (int64_t s = 0; s < o.seeds; ++s) {
      const uint64_t seed = o.seed + 1000003ULL * static_cast<uint64_t>(s);
      auto idx = sample_per_class(train_labels, n, seed);
      ProbeOptions po = o.probe;
      po.seed = seed;
      auto probe = fit_linear_probe(train_features.index_select(0, idx),
                                    train_labels.index_select(0, idx), po);
      row.accuracies.push_back(accuracy(probe.predict(test_features), test_labels));
    }
    double sum = 0, sq = 0;
    for (double a : row.accuracies) sum += a;
    row.mean = sum / row.accuracies.size();
    for (double a : row.accuracies) sq += (a - row.mean) * (a - row.mean);
    row.std = row.accuracies.size() > 1 ? std::sqrt(sq / (row.accuracies.size() - 1)) : 0.0;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace nfk
